DROP INDEX notifications_provider_message_idx;
ALTER TABLE notifications DROP COLUMN provider_message_id;
