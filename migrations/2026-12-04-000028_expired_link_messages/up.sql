-- A password-reset or invitation message whose link expired before it could be sent (an outage
-- of the mail provider longer than the link's life) is skipped at claim time, not sent: the
-- token names its message, and the claim reads the token's expiry by PostgreSQL's clock.
-- Tokens issued before this migration name none and are sent as before.
ALTER TABLE password_tokens ADD COLUMN notification_id uuid;
CREATE UNIQUE INDEX password_tokens_notification_idx
    ON password_tokens (notification_id) WHERE notification_id IS NOT NULL;

ALTER TABLE notifications DROP CONSTRAINT notifications_skip_reason_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_skip_reason_check
    CHECK (skip_reason IN ('suppressed', 'opted_out', 'link_expired'));
