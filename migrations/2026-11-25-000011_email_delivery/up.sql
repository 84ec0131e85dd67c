-- Email delivery through an API provider (docs/notifications.md, "Providers"): the provider's own
-- id of a sent message, which its later events (a bounce, a complaint) name. NULL for SMTP, which
-- gives none, and for every notification not sent yet.
ALTER TABLE notifications
    ADD COLUMN provider_message_id text
        CHECK (char_length(provider_message_id) BETWEEN 1 AND 256);

-- A provider's event names its message by this id: finding the notification is one index probe.
CREATE UNIQUE INDEX notifications_provider_message_idx
    ON notifications (provider_message_id) WHERE provider_message_id IS NOT NULL;
