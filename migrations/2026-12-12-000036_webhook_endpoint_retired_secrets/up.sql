-- Every secret a rotation retired, each with its own expiry: a second (third...) rotation within
-- the overlap no longer replaces the one "previous" slot, so a receiver still on an earlier
-- secret keeps verifying until the expiry its rotation promised. Deliveries are signed with the
-- endpoint's current secret and every retired one whose expiry (PostgreSQL's clock) is ahead;
-- RotateWebhookEndpointSecret refuses a rotation while five still sign (docs/webhooks.md,
-- "Rotation"). Rows past their expiry are deleted by the endpoint's next rotation, and with the
-- endpoint.
--
-- Expand/contract: webhook_endpoints.previous_secret_ciphertext and previous_secret_expires_at
-- stay, written as before (the secret retired last and its expiry), so the version still serving
-- during a rollout, or after a rollback, signs as it did. previous_secret_expires_at is also what
-- the API shows as previous_secret_expire_time. A later release drops previous_secret_ciphertext.
CREATE TABLE webhook_endpoint_secrets (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- Sealed as webhook_endpoints.secret_ciphertext is (src/outbound/secrets.rs).
    secret_ciphertext bytea NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT now(),
    -- It signs while this is after now().
    expires_at timestamptz NOT NULL
);

CREATE INDEX webhook_endpoint_secrets_endpoint_idx
    ON webhook_endpoint_secrets (endpoint_id, expires_at);

-- The previous secrets that still sign keep signing until the expiry they were promised.
INSERT INTO webhook_endpoint_secrets (endpoint_id, secret_ciphertext, retired_at, expires_at)
SELECT id, previous_secret_ciphertext, updated_at, previous_secret_expires_at
FROM webhook_endpoints
WHERE previous_secret_ciphertext IS NOT NULL AND previous_secret_expires_at > now();
