-- A notification whose message was handed to the provider without an answer (an SMTP relay that
-- kept the data and never replied to its end, an API request whose answer never came, a worker
-- killed while it waited) may have been delivered: the provider was never asked again blindly.
-- `handed_over_attempt` is the attempt that handed the message over, written before the body
-- goes and cleared when that attempt records what it learned; `unconfirmed_sends` counts the
-- hand-overs whose outcome stayed unknown (counted by the attempt that gave up waiting, or by
-- the next claim for a worker that died). After the second, the message is not sent again.
ALTER TABLE notifications
    ADD COLUMN handed_over_attempt integer,
    ADD COLUMN unconfirmed_sends integer NOT NULL DEFAULT 0
        CONSTRAINT notifications_unconfirmed_sends_check CHECK (unconfirmed_sends >= 0);
