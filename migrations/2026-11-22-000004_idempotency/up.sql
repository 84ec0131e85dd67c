-- The outcome of every request sent with an Idempotency-Key, stored in the request's own
-- transaction: a retry with the same key replays it instead of running again.
CREATE TABLE idempotency_keys (
    id uuid PRIMARY KEY,
    -- Who sent it: `user:<id>`, `key:<id>`, or `anonymous` (RPCs without credentials); user and
    -- API key ids are unique across accounts, so the caller implies the account.
    caller text NOT NULL,
    -- The full RPC name: a key is scoped to one RPC.
    rpc text NOT NULL,
    key text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    -- SHA-256 of the request message: the same key with another request is refused.
    request_hash bytea NOT NULL,
    -- The gRPC status code of the outcome (0 for OK), its message and its encoded details.
    status_code integer NOT NULL,
    status_message text NOT NULL DEFAULT '',
    status_details bytea,
    -- The encoded response message of a success, and the response metadata it carried.
    response_body bytea,
    response_metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    CONSTRAINT idempotency_keys_scope_key UNIQUE (caller, rpc, key)
);

-- The sweeper deletes expired keys oldest first, in small batches.
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
