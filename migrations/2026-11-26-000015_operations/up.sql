-- Long-running operations (docs/operations.md): one row per operation, account-scoped, durable
-- across restarts. A worker claims a row with FOR UPDATE SKIP LOCKED and holds it by a lease;
-- a crashed instance's lease expires and another worker resumes from the checkpoint
-- (`rows_read`), which is committed in the same transaction as the batch it counts.
CREATE TABLE operations (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('import_tickets')),
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- Who started it (the audit actor of what it writes).
    actor_user_id uuid,
    actor_api_key_id uuid,
    -- The input: its format and content; the content is dropped once the operation is done.
    format text NOT NULL CHECK (format IN ('ndjson', 'csv')),
    content text,
    rows_total bigint NOT NULL DEFAULT 0 CHECK (rows_total >= 0),
    -- The checkpoint: rows settled (imported or refused) by committed batches.
    rows_read bigint NOT NULL DEFAULT 0 CHECK (rows_read >= 0),
    rows_imported bigint NOT NULL DEFAULT 0 CHECK (rows_imported >= 0),
    rows_failed bigint NOT NULL DEFAULT 0 CHECK (rows_failed >= 0),
    -- The first refused rows, [{"row","field","reason"}], bounded by IMPORT_MAX_ROW_ERRORS.
    row_errors jsonb NOT NULL DEFAULT '[]',
    cancel_requested boolean NOT NULL DEFAULT false,
    -- A failed operation's google.rpc.Status code and message.
    error_code integer,
    error_message text,
    lease_owner uuid,
    lease_expires_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    done_at timestamptz,
    CHECK ((state IN ('succeeded', 'failed', 'cancelled')) = (done_at IS NOT NULL)),
    CHECK ((state = 'failed') = (error_code IS NOT NULL))
);

-- ListOperations: an account's operations, newest first.
CREATE INDEX operations_account_created_idx ON operations (account_id, created_at DESC, id DESC);

-- The workers' claim: unfinished operations, oldest first.
CREATE INDEX operations_unfinished_idx ON operations (created_at, id)
    WHERE state IN ('queued', 'running');
