-- Accounts are the tenants: every other row belongs to exactly one.
CREATE TABLE accounts (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- People of an account: agents and admins who work tickets, customers who raise them.
CREATE TABLE users (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    -- Stored lower-cased by the service, so the unique key below is case-insensitive.
    email text NOT NULL,
    display_name text NOT NULL DEFAULT '',
    role text NOT NULL CHECK (role IN ('admin', 'agent', 'customer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_account_email_key UNIQUE (account_id, email),
    -- Target of the tenant-consistent foreign keys below: a ticket's people are in its account.
    CONSTRAINT users_account_id_id_key UNIQUE (account_id, id)
);

CREATE TABLE tickets (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    subject text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 200),
    description text NOT NULL CHECK (char_length(description) BETWEEN 1 AND 5000),
    priority text NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    status text NOT NULL CHECK (status IN ('new', 'open', 'pending', 'solved', 'closed')),
    requester_id uuid NOT NULL,
    assignee_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tickets_requester_fkey FOREIGN KEY (account_id, requester_id)
        REFERENCES users (account_id, id),
    CONSTRAINT tickets_assignee_fkey FOREIGN KEY (account_id, assignee_id)
        REFERENCES users (account_id, id)
);

-- ListTickets: newest first within an account, keyset-paginated on (created_at, id).
CREATE INDEX tickets_account_created_idx ON tickets (account_id, created_at DESC, id DESC);
-- Foreign keys, so deleting or checking a user never scans tickets.
CREATE INDEX tickets_account_requester_idx ON tickets (account_id, requester_id);
CREATE INDEX tickets_account_assignee_idx ON tickets (account_id, assignee_id)
    WHERE assignee_id IS NOT NULL;
