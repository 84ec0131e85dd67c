-- Reconciliation against the provider's ledger (docs/billing.md, "Reconciliation"): each run
-- compares the charges and refunds of a period with the provider's lists, repairs drift through
-- the charge's own transitions and records what it found.
CREATE TABLE reconciliation_runs (
    id uuid PRIMARY KEY,
    -- The period compared: charges and refunds created from period_start until period_end.
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL CHECK (period_end > period_start),
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- running → completed, or failed (the provider or the database gave up mid-run).
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
    error text,
    charges_checked integer NOT NULL DEFAULT 0 CHECK (charges_checked >= 0),
    refunds_checked integer NOT NULL DEFAULT 0 CHECK (refunds_checked >= 0),
    payments_listed integer NOT NULL DEFAULT 0 CHECK (payments_listed >= 0),
    findings integer NOT NULL DEFAULT 0 CHECK (findings >= 0),
    repaired integer NOT NULL DEFAULT 0 CHECK (repaired >= 0),
    CONSTRAINT reconciliation_runs_finished CHECK ((status = 'running') = (finished_at IS NULL))
);

CREATE INDEX reconciliation_runs_started_idx ON reconciliation_runs (started_at DESC, id DESC);

-- One row per difference found. A repair is written in the same transaction as the charge's
-- transition and its audit row, so a difference is repaired (and recorded) at most once.
CREATE TABLE reconciliation_findings (
    id uuid PRIMARY KEY,
    run_id uuid NOT NULL REFERENCES reconciliation_runs (id),
    kind text NOT NULL CHECK (kind IN (
        'refunded_at_provider', 'paid_at_provider', 'declined_at_provider',
        'unknown_to_provider', 'amount_mismatch', 'unknown_payment', 'refund_mismatch'
    )),
    -- The account of the charge; NULL for a provider payment no account of ours knows.
    account_id uuid REFERENCES accounts (id),
    charge_id uuid,
    refund_id uuid,
    -- The provider's object (`pi_...`, `re_...`), when it has one.
    provider_object_id text,
    -- {"service": ..., "provider": ...}: what each side said.
    details jsonb NOT NULL DEFAULT '{}',
    -- What was done: the transition applied (`succeeded`, `failed`, `refunded`...), or
    -- `needs_attention` / `reported` when the service only reports it.
    action text NOT NULL,
    repaired boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reconciliation_findings_charge_fkey FOREIGN KEY (account_id, charge_id)
        REFERENCES charges (account_id, id)
);

-- ListReconciliationFindings: an account's findings newest first, per run.
CREATE INDEX reconciliation_findings_account_idx
    ON reconciliation_findings (account_id, created_at DESC, id DESC);
CREATE INDEX reconciliation_findings_run_idx
    ON reconciliation_findings (run_id, created_at DESC, id DESC);
CREATE INDEX reconciliation_findings_charge_idx
    ON reconciliation_findings (charge_id) WHERE charge_id IS NOT NULL;

-- A run reads the charges and refunds of a period in every account, oldest first.
CREATE INDEX charges_created_idx ON charges (created_at, id);
CREATE INDEX refunds_created_idx ON refunds (created_at, id);

-- The audit row of a repair names the run that made it.
ALTER TABLE charge_activities
    ADD COLUMN reconciliation_run_id uuid REFERENCES reconciliation_runs (id);
