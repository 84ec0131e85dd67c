-- Webhook events whose fields name charges of different accounts, or a charge the named payment
-- does not belong to (docs/webhooks.md, "Quarantine"). Such an event is applied to no charge and
-- filed under no account: its row in webhook_events is `processed` with outcome `quarantined`
-- and no account, and this table says why, for operators (`supportdesk quarantined-webhooks`).
CREATE TABLE webhook_event_quarantines (
    event_id text PRIMARY KEY REFERENCES webhook_events (id),
    -- accounts_disagree: the charge in the object's metadata and the payment's charge belong to
    --   different accounts;
    -- charges_disagree: they are different charges of one account;
    -- payment_not_of_named_charge: the metadata names one of our charges, the payment belongs to
    --   none of ours.
    reason text NOT NULL CHECK (reason IN (
        'accounts_disagree', 'charges_disagree', 'payment_not_of_named_charge'
    )),
    -- The charge the metadata names, and the payment's own charge when it is ours.
    named_account_id uuid NOT NULL REFERENCES accounts (id),
    named_charge_id uuid NOT NULL,
    payment_id text NOT NULL,
    payment_account_id uuid REFERENCES accounts (id),
    payment_charge_id uuid,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_event_quarantines_payment_charge CHECK (
        (payment_account_id IS NULL) = (payment_charge_id IS NULL)
        AND (reason = 'payment_not_of_named_charge') = (payment_charge_id IS NULL)
    )
);

CREATE INDEX webhook_event_quarantines_time_idx ON webhook_event_quarantines (quarantined_at DESC);
