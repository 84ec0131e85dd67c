CREATE OR REPLACE FUNCTION events_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (account_id, endpoint_id, event_id, event_seq, event_type)
    SELECT NEW.account_id, e.id, NEW.id, NEW.seq, NEW.type
    FROM webhook_endpoints e
    WHERE e.account_id = NEW.account_id
      AND (NEW.endpoint_id IS NULL OR e.id = NEW.endpoint_id)
      AND (NEW.endpoint_id IS NOT NULL OR cardinality(e.event_types) = 0
           OR NEW.type = ANY (e.event_types));
    RETURN NULL;
END
$$;
