-- A key with no expiry (NULL) is one whose request stopped at a billing recovery point: its
-- charge or refund has no recorded outcome yet, and a retry, however late, must resume it rather
-- than charge or refund a second time. Other phased requests (a direct upload's first phase)
-- keep their expiry: what they left behind is swept, and so is their key.
ALTER TABLE idempotency_keys ALTER COLUMN expires_at DROP NOT NULL;

UPDATE idempotency_keys SET expires_at = NULL
WHERE recovery_point LIKE 'charge_created:%' OR recovery_point LIKE 'refund_created:%';
