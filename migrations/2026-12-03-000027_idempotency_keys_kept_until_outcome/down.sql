UPDATE idempotency_keys SET expires_at = created_at + interval '1 day' WHERE expires_at IS NULL;

ALTER TABLE idempotency_keys ALTER COLUMN expires_at SET NOT NULL;
