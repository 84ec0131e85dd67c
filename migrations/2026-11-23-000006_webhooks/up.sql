-- Payment webhooks (docs/webhooks.md): every event the provider delivers is stored once, keyed by
-- the provider's event id, before it is acknowledged; workers then take it from this table as a
-- queue (FOR UPDATE SKIP LOCKED, with a lease) and apply it to the charge it names.
CREATE TABLE webhook_events (
    -- The provider's event id (`evt_...`). The primary key is the deduplication: a second delivery
    -- of an event inserts nothing (INSERT ... ON CONFLICT DO NOTHING), whatever the timing.
    id text PRIMARY KEY CHECK (char_length(id) BETWEEN 1 AND 255),
    -- `payment_intent.succeeded`, `charge.refunded`, ... (also types the service ignores).
    event_type text NOT NULL CHECK (char_length(event_type) BETWEEN 1 AND 255),
    -- The exact bytes the provider signed.
    payload bytea NOT NULL,
    -- The event's `created` (the provider's clock).
    provider_created_at timestamptz NOT NULL,
    -- The account and charge the event concerns, once known (from the signed metadata at receipt,
    -- or when a worker finds the charge); NULL for events about payments that are not ours.
    account_id uuid REFERENCES accounts (id),
    charge_id uuid,
    -- received: waiting for (or being processed by) a worker; processed: applied (or ignored, see
    -- outcome); dead: failed `attempts` times, waiting for an operator to re-drive it.
    state text NOT NULL DEFAULT 'received' CHECK (state IN ('received', 'processed', 'dead')),
    -- Processing attempts since the event was received or last re-driven.
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- A received event is due once this time has passed (backoff after a failed attempt).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- The lease of the worker processing it: until then no other worker takes it; a worker that
    -- dies leaves the event to be taken again when the lease expires.
    lease_expires_at timestamptz,
    -- Why the last attempt failed (no secrets, no payload).
    last_error text,
    -- What processing did: `applied`, `no_change`, `ignored_type`, `unknown_payment`, ...
    outcome text,
    -- How often an operator re-drove the event out of the dead-letter state.
    redrive_count integer NOT NULL DEFAULT 0 CHECK (redrive_count >= 0),
    received_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    dead_at timestamptz,
    CONSTRAINT webhook_events_charge_fkey FOREIGN KEY (account_id, charge_id)
        REFERENCES charges (account_id, id),
    CONSTRAINT webhook_events_processed_has_time CHECK (
        (state = 'processed') = (processed_at IS NOT NULL)
    ),
    CONSTRAINT webhook_events_dead_has_time CHECK ((state = 'dead') = (dead_at IS NOT NULL))
);

-- The queue: received events, soonest due first.
CREATE INDEX webhook_events_due_idx ON webhook_events (next_attempt_at) WHERE state = 'received';
-- ListWebhookEvents: an account's events by state, newest first, keyset-paginated.
CREATE INDEX webhook_events_account_state_idx
    ON webhook_events (account_id, state, received_at DESC, id DESC);

-- Events name the provider's payment (`pi_...`): a dispute is matched to its charge by it, at
-- receipt and by the workers.
CREATE INDEX charges_provider_payment_idx ON charges (provider_payment_id)
    WHERE provider_payment_id IS NOT NULL;

-- Disputes (chargebacks) opened at the provider on a charge, learnt from
-- `charge.dispute.created` (a charge may be disputed more than once).
CREATE TABLE charge_disputes (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    charge_id uuid NOT NULL,
    -- The provider's dispute id (`dp_...`): one row per dispute, whatever the deliveries.
    provider_dispute_id text NOT NULL UNIQUE,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- The provider's reason (`fraudulent`, `product_not_received`, ...).
    reason text NOT NULL,
    -- The provider's dispute status when it was recorded (`needs_response`, ...).
    status text NOT NULL,
    -- When the provider opened it.
    opened_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT charge_disputes_charge_fkey FOREIGN KEY (account_id, charge_id)
        REFERENCES charges (account_id, id)
);

CREATE INDEX charge_disputes_charge_idx ON charge_disputes (account_id, charge_id, opened_at);

-- Transitions learnt from the provider's events are audited like the service's own, with the
-- event that caused them.
ALTER TABLE charge_activities ADD COLUMN webhook_event_id text REFERENCES webhook_events (id);
ALTER TABLE charge_activities DROP CONSTRAINT charge_activities_action_check;
ALTER TABLE charge_activities ADD CONSTRAINT charge_activities_action_check CHECK (action IN (
    'created', 'succeeded', 'failed', 'refund_requested', 'refunded', 'refund_failed', 'disputed'
));
