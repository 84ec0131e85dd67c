-- Attachments (docs/attachments.md): the files of tickets and comments. The bytes live in object
-- storage under `object_key`; a row is PENDING from CreateUpload until CompleteUpload has checked
-- the stored object, then READY (visible in lists, downloadable).
CREATE TABLE attachments (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    ticket_id uuid NOT NULL,
    -- The comment the file belongs to, when it belongs to one.
    comment_id uuid REFERENCES ticket_comments (id),
    -- Attached to an internal note: never shown to customers.
    internal boolean NOT NULL DEFAULT false,
    -- Who asked for the upload: a user or an API key.
    uploader_user_id uuid,
    uploader_api_key_id uuid REFERENCES api_keys (id),
    -- The cleaned file name (no path separators, control or bidirectional characters).
    filename text NOT NULL CHECK (char_length(filename) BETWEEN 1 AND 255),
    content_type text NOT NULL CHECK (char_length(content_type) BETWEEN 3 AND 100),
    -- What the client declared; CompleteUpload checks the stored object against both.
    size_bytes bigint NOT NULL CHECK (size_bytes > 0),
    sha256 bytea NOT NULL CHECK (octet_length(sha256) = 32),
    -- `<account>/<random>`, chosen by the service.
    object_key text NOT NULL UNIQUE,
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'ready')),
    -- When the upload URL expires; a row still pending some time after is swept with its object.
    upload_expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    CONSTRAINT attachments_ticket_fkey FOREIGN KEY (account_id, ticket_id)
        REFERENCES tickets (account_id, id),
    CONSTRAINT attachments_uploader_fkey FOREIGN KEY (account_id, uploader_user_id)
        REFERENCES users (account_id, id),
    CONSTRAINT attachments_ready_completed CHECK ((state = 'ready') = (completed_at IS NOT NULL))
);

CREATE INDEX attachments_ticket_idx ON attachments (account_id, ticket_id, created_at, id);
CREATE INDEX attachments_comment_idx ON attachments (account_id, comment_id, created_at, id)
    WHERE comment_id IS NOT NULL;
CREATE INDEX attachments_pending_idx ON attachments (upload_expires_at) WHERE state = 'pending';

-- Objects to delete from storage: written in the transaction that deletes an attachment (or
-- sweeps an abandoned upload), deleted by the attachment sweeper once the store confirms. A key
-- is leased by moving `due_at` forward, so no transaction stays open across the storage call.
CREATE TABLE storage_deletions (
    object_key text PRIMARY KEY,
    due_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX storage_deletions_due_idx ON storage_deletions (due_at);
