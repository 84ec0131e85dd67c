-- Users who can log in have an argon2id password hash (PHC string); customers added from a
-- ticket's requester email have none until one is set. Deactivated users cannot log in or call.
ALTER TABLE users
    ADD COLUMN password_hash text,
    ADD COLUMN active boolean NOT NULL DEFAULT true;

-- ListUsers: newest first within an account.
CREATE INDEX users_account_created_idx ON users (account_id, created_at DESC, id DESC);

-- Keys internal services call with. Only a SHA-256 of the secret is kept: the secret is 256
-- random bits, so a slow hash would add nothing but latency to every call.
CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    prefix text NOT NULL,
    secret_hash bytea NOT NULL UNIQUE,
    roles text[] NOT NULL
        CHECK (cardinality(roles) > 0 AND roles <@ ARRAY['admin', 'agent']::text[]),
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz,
    CONSTRAINT api_keys_creator_fkey FOREIGN KEY (account_id, created_by)
        REFERENCES users (account_id, id)
);

-- ListApiKeys: newest first within an account.
CREATE INDEX api_keys_account_created_idx ON api_keys (account_id, created_at DESC, id DESC);

-- A customer's ticket list: their tickets, newest first. Supersedes the plain foreign-key index.
CREATE INDEX tickets_account_requester_created_idx
    ON tickets (account_id, requester_id, created_at DESC, id DESC);
DROP INDEX tickets_account_requester_idx;
