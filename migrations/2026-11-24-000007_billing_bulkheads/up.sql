-- Billing under a slow or refusing provider (docs/billing.md, "Exactly once, in phases").
--
-- The right to call the provider for a pending charge or refund is a *send lease* committed
-- before the call, not a row lock held across it: no pooled connection waits on the provider,
-- and still one call at a time per charge across requests, instances and the completer.
-- The completer works from `next_attempt_at` (the next due first, with backoff per row) and
-- marks what it cannot settle for an operator's attention instead of calling it a decline.
ALTER TABLE charges
    -- Why a failed charge failed: the card was declined, the provider refused the request as
    -- invalid (never sent again), or it was given up without the provider having charged it.
    ADD COLUMN failure_kind text CHECK (failure_kind IN ('declined', 'refused', 'abandoned')),
    -- The request field a refusal names (`amount`, `payment_method`, `currency`).
    ADD COLUMN failure_param text,
    ADD COLUMN send_lease_token uuid,
    ADD COLUMN send_lease_until timestamptz,
    ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN last_attempt_error text,
    ADD COLUMN attention_reason text,
    ADD COLUMN attention_since timestamptz;

UPDATE charges
SET failure_kind = CASE WHEN failure_code = 'abandoned' THEN 'abandoned' ELSE 'declined' END
WHERE status = 'failed';

ALTER TABLE charges
    ADD CONSTRAINT charges_failure_has_kind CHECK ((status = 'failed') = (failure_kind IS NOT NULL)),
    ADD CONSTRAINT charges_lease_whole CHECK ((send_lease_token IS NULL) = (send_lease_until IS NULL)),
    ADD CONSTRAINT charges_attention_whole CHECK ((attention_reason IS NULL) = (attention_since IS NULL));

ALTER TABLE refunds
    ADD COLUMN send_lease_token uuid,
    ADD COLUMN send_lease_until timestamptz,
    ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN last_attempt_error text,
    ADD COLUMN attention_reason text,
    ADD COLUMN attention_since timestamptz,
    ADD CONSTRAINT refunds_lease_whole CHECK ((send_lease_token IS NULL) = (send_lease_until IS NULL)),
    ADD CONSTRAINT refunds_attention_whole CHECK ((attention_reason IS NULL) = (attention_since IS NULL));

-- The completer: the next due first.
DROP INDEX charges_pending_idx;
CREATE INDEX charges_pending_due_idx ON charges (next_attempt_at) WHERE status = 'pending';
DROP INDEX refunds_pending_idx;
CREATE INDEX refunds_pending_due_idx ON refunds (next_attempt_at) WHERE status = 'pending';
-- Operators: what waits for attention.
CREATE INDEX charges_attention_idx ON charges (account_id, attention_since)
    WHERE attention_reason IS NOT NULL;

-- A new audit action: a charge or refund marked for an operator's attention.
ALTER TABLE charge_activities DROP CONSTRAINT charge_activities_action_check;
ALTER TABLE charge_activities ADD CONSTRAINT charge_activities_action_check CHECK (action IN (
    'created', 'succeeded', 'failed', 'refund_requested', 'refunded', 'refund_failed',
    'disputed', 'needs_attention'
));
