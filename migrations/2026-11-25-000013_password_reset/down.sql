ALTER TABLE notifications DROP COLUMN dedupe_key;
DELETE FROM notifications
WHERE kind IN ('password_reset', 'invitation', 'charge_receipt', 'refund_notice');
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('ticket_created', 'comment_added', 'ticket_solved'));
DROP TABLE revoked_sessions;
DROP TABLE password_tokens;
