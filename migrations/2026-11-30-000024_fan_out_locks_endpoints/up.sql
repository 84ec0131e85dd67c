-- The fan-out locks each endpoint it writes a delivery for (FOR KEY SHARE, the lock the
-- delivery's foreign key takes anyway) in the statement that chooses them. An endpoint being
-- deleted is waited for, and once its deletion commits it is no longer chosen: the event's
-- statement goes on without it. Chosen without the lock, the deleted endpoint failed the
-- delivery's foreign key check after the wait, and with it the write that recorded the event
-- (a ticket, a comment, a charge), answered INTERNAL.
CREATE OR REPLACE FUNCTION events_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (account_id, endpoint_id, event_id, event_seq, event_type)
    SELECT NEW.account_id, e.id, NEW.id, NEW.seq, NEW.type
    FROM webhook_endpoints e
    WHERE e.account_id = NEW.account_id
      AND (NEW.endpoint_id IS NULL OR e.id = NEW.endpoint_id)
      AND (NEW.endpoint_id IS NOT NULL OR cardinality(e.event_types) = 0
           OR NEW.type = ANY (e.event_types))
    FOR KEY SHARE OF e;
    RETURN NULL;
END
$$;
