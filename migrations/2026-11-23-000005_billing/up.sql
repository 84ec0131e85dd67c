-- Charges of an account's customers, made through the payment provider in phases (docs/billing.md):
-- a charge is inserted PENDING and committed before the provider is called, so a crash between
-- the call and the record leaves a row the completer finds and finishes.
CREATE TABLE charges (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    customer_id uuid NOT NULL,
    ticket_id uuid,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    amount_refunded_minor bigint NOT NULL DEFAULT 0
        CHECK (amount_refunded_minor BETWEEN 0 AND amount_minor),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    payment_method text NOT NULL CHECK (char_length(payment_method) BETWEEN 1 AND 255),
    status text NOT NULL CHECK (status IN (
        'pending', 'succeeded', 'failed', 'partially_refunded', 'refunded'
    )),
    -- The provider's payment id (`pi_...`), known once the provider answered.
    provider_payment_id text,
    failure_code text,
    decline_code text,
    -- Optimistic concurrency: the etag is the version.
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT charges_account_id_id_key UNIQUE (account_id, id),
    CONSTRAINT charges_customer_fkey FOREIGN KEY (account_id, customer_id)
        REFERENCES users (account_id, id),
    CONSTRAINT charges_ticket_fkey FOREIGN KEY (account_id, ticket_id)
        REFERENCES tickets (account_id, id),
    -- Only a charge the provider answered for can have succeeded or been refunded.
    CONSTRAINT charges_final_has_payment CHECK (
        status IN ('pending', 'failed') OR provider_payment_id IS NOT NULL
    )
);

-- ListCharges: newest first within an account, keyset-paginated on (created_at, id), per filter.
CREATE INDEX charges_account_created_idx ON charges (account_id, created_at DESC, id DESC);
CREATE INDEX charges_account_customer_created_idx
    ON charges (account_id, customer_id, created_at DESC, id DESC);
CREATE INDEX charges_account_status_created_idx
    ON charges (account_id, status, created_at DESC, id DESC);
CREATE INDEX charges_account_ticket_created_idx
    ON charges (account_id, ticket_id, created_at DESC, id DESC) WHERE ticket_id IS NOT NULL;
-- The completer: pending charges, oldest first.
CREATE INDEX charges_pending_idx ON charges (created_at) WHERE status = 'pending';

-- Refunds of a charge, inserted PENDING before the provider is called, like charges.
CREATE TABLE refunds (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    charge_id uuid NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    provider_refund_id text,
    failure_code text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT refunds_charge_fkey FOREIGN KEY (account_id, charge_id)
        REFERENCES charges (account_id, id)
);

CREATE INDEX refunds_charge_idx ON refunds (account_id, charge_id, created_at);
CREATE INDEX refunds_pending_idx ON refunds (created_at) WHERE status = 'pending';

-- The audit trail of charges: one row per transition, written in the transition's transaction.
CREATE TABLE charge_activities (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    charge_id uuid NOT NULL,
    -- A user or an API key; neither for the completer.
    actor_user_id uuid,
    actor_api_key_id uuid REFERENCES api_keys (id),
    action text NOT NULL CHECK (action IN (
        'created', 'succeeded', 'failed', 'refund_requested', 'refunded', 'refund_failed'
    )),
    -- {"field": {"old": "...", "new": "..."}, ...}
    changes jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT charge_activities_charge_fkey FOREIGN KEY (account_id, charge_id)
        REFERENCES charges (account_id, id),
    CONSTRAINT charge_activities_actor_fkey FOREIGN KEY (account_id, actor_user_id)
        REFERENCES users (account_id, id),
    CONSTRAINT charge_activities_at_most_one_actor CHECK (
        actor_user_id IS NULL OR actor_api_key_id IS NULL
    )
);

CREATE INDEX charge_activities_charge_idx
    ON charge_activities (account_id, charge_id, created_at DESC, id DESC);

-- A key claimed by a request that commits before its effect is complete (a charge sent to the
-- provider in phases) records where it stopped; NULL for keys whose outcome is final.
ALTER TABLE idempotency_keys ADD COLUMN recovery_point text;
