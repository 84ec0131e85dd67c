-- The notifications' admin surface, preferences and suppression (docs/notifications.md).

-- A notification can end without being sent, on purpose: `skipped`, with the reason
-- (`suppressed`: the address is on the account's suppression list; `opted_out`: the recipient
-- turned this optional kind off) and the time. An admin can re-drive it like a dead one.
ALTER TABLE notifications DROP CONSTRAINT notifications_state_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_state_check
    CHECK (state IN ('received', 'sent', 'dead', 'skipped'));
ALTER TABLE notifications
    ADD COLUMN skip_reason text CHECK (skip_reason IN ('suppressed', 'opted_out')),
    ADD COLUMN skipped_at timestamptz;
ALTER TABLE notifications ADD CONSTRAINT notifications_skipped_has_time_and_reason
    CHECK ((state = 'skipped') = (skipped_at IS NOT NULL)
       AND (state = 'skipped') = (skip_reason IS NOT NULL));

-- What a user chose to receive: the desk's public comments on their tickets (optional; every
-- other kind is essential and always sent).
ALTER TABLE users ADD COLUMN comment_notifications boolean NOT NULL DEFAULT true;

-- The addresses an account sends nothing to: a permanent failure (an SMTP 5xx answer), a hard
-- bounce or a complaint reported by the provider's webhook put them here; an admin takes them
-- off. One row per account and address (lower case), the first cause kept.
CREATE TABLE email_suppressions (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    address text NOT NULL
        CHECK (address = lower(address) AND char_length(address) BETWEEN 3 AND 254),
    reason text NOT NULL CHECK (reason IN ('hard_bounce', 'complaint', 'smtp_permanent_failure')),
    -- What reported it: the server's answer, the provider's bounce message (no secrets).
    detail text NOT NULL DEFAULT '' CHECK (char_length(detail) <= 300),
    -- The notification whose delivery revealed it, when known.
    notification_id uuid REFERENCES notifications (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT email_suppressions_account_address_key UNIQUE (account_id, address)
);
-- The admins' list, newest first.
CREATE INDEX email_suppressions_account_created_idx
    ON email_suppressions (account_id, created_at DESC, id DESC);
CREATE INDEX email_suppressions_notification_idx
    ON email_suppressions (notification_id) WHERE notification_id IS NOT NULL;

-- The email provider's webhook deliveries taken, by their `svix-id`: a replay finds its id and
-- changes nothing. Filed under the account of the notification the event names, when it is one.
CREATE TABLE email_events (
    id text PRIMARY KEY CHECK (char_length(id) BETWEEN 1 AND 256),
    event_type text NOT NULL CHECK (char_length(event_type) <= 100),
    account_id uuid REFERENCES accounts (id),
    notification_id uuid REFERENCES notifications (id),
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_events_account_idx ON email_events (account_id) WHERE account_id IS NOT NULL;
CREATE INDEX email_events_notification_idx
    ON email_events (notification_id) WHERE notification_id IS NOT NULL;
