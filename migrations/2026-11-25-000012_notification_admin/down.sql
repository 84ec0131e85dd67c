DROP TABLE email_events;
DROP TABLE email_suppressions;
ALTER TABLE users DROP COLUMN comment_notifications;
DELETE FROM notifications WHERE state = 'skipped';
ALTER TABLE notifications DROP CONSTRAINT notifications_skipped_has_time_and_reason;
ALTER TABLE notifications DROP COLUMN skip_reason, DROP COLUMN skipped_at;
ALTER TABLE notifications DROP CONSTRAINT notifications_state_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_state_check
    CHECK (state IN ('received', 'sent', 'dead'));
