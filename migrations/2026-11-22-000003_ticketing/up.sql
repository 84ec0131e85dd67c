-- Optimistic concurrency (the etag is the version) and the monotonic order of cache entries;
-- soft delete.
ALTER TABLE tickets
    ADD COLUMN version bigint NOT NULL DEFAULT 1,
    ADD COLUMN deleted_at timestamptz,
    -- Target of the tenant-consistent foreign keys of comments and activity.
    ADD CONSTRAINT tickets_account_id_id_key UNIQUE (account_id, id);

-- Every list is served by an index; deleted tickets are in none of them.
DROP INDEX tickets_account_created_idx;
CREATE INDEX tickets_account_created_idx ON tickets (account_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX tickets_account_updated_idx ON tickets (account_id, updated_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX tickets_account_status_created_idx
    ON tickets (account_id, status, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX tickets_account_status_updated_idx
    ON tickets (account_id, status, updated_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX tickets_account_priority_created_idx
    ON tickets (account_id, priority, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX tickets_account_priority_updated_idx
    ON tickets (account_id, priority, updated_at DESC, id DESC) WHERE deleted_at IS NULL;
DROP INDEX tickets_account_assignee_idx;
CREATE INDEX tickets_account_assignee_created_idx
    ON tickets (account_id, assignee_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX tickets_account_assignee_updated_idx
    ON tickets (account_id, assignee_id, updated_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX tickets_account_requester_updated_idx
    ON tickets (account_id, requester_id, updated_at DESC, id DESC) WHERE deleted_at IS NULL;
-- The open-ticket limit counts a requester's open tickets.
CREATE INDEX tickets_open_per_requester_idx ON tickets (account_id, requester_id)
    WHERE deleted_at IS NULL AND status NOT IN ('solved', 'closed');

CREATE TABLE ticket_comments (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    ticket_id uuid NOT NULL,
    -- A user, or else the API key, that wrote it.
    author_user_id uuid,
    author_api_key_id uuid REFERENCES api_keys (id),
    body text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 10000),
    public boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ticket_comments_ticket_fkey FOREIGN KEY (account_id, ticket_id)
        REFERENCES tickets (account_id, id),
    CONSTRAINT ticket_comments_author_fkey FOREIGN KEY (account_id, author_user_id)
        REFERENCES users (account_id, id),
    CONSTRAINT ticket_comments_one_author CHECK (
        (author_user_id IS NULL) <> (author_api_key_id IS NULL)
    )
);

-- ListComments: a ticket's comments, oldest first.
CREATE INDEX ticket_comments_ticket_idx ON ticket_comments (account_id, ticket_id, created_at, id);

-- The audit trail: one row per change, written in the change's own transaction.
CREATE TABLE ticket_activities (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    ticket_id uuid NOT NULL,
    actor_user_id uuid,
    actor_api_key_id uuid REFERENCES api_keys (id),
    action text NOT NULL CHECK (action IN (
        'created', 'updated', 'assigned', 'resolved', 'reopened', 'closed', 'commented', 'deleted'
    )),
    -- {"field": {"old": "...", "new": "..."}, ...}
    changes jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ticket_activities_ticket_fkey FOREIGN KEY (account_id, ticket_id)
        REFERENCES tickets (account_id, id),
    CONSTRAINT ticket_activities_actor_fkey FOREIGN KEY (account_id, actor_user_id)
        REFERENCES users (account_id, id),
    CONSTRAINT ticket_activities_one_actor CHECK (
        (actor_user_id IS NULL) <> (actor_api_key_id IS NULL)
    )
);

-- ListTicketActivity: a ticket's records, newest first.
CREATE INDEX ticket_activities_ticket_idx
    ON ticket_activities (account_id, ticket_id, created_at DESC, id DESC);
