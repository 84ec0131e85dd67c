UPDATE notifications SET state = 'dead', dead_at = skipped_at, skip_reason = NULL, skipped_at = NULL,
    last_error = 'its link expired before it could be sent'
    WHERE skip_reason = 'link_expired';
ALTER TABLE notifications DROP CONSTRAINT notifications_skip_reason_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_skip_reason_check
    CHECK (skip_reason IN ('suppressed', 'opted_out'));

DROP INDEX password_tokens_notification_idx;
ALTER TABLE password_tokens DROP COLUMN notification_id;
