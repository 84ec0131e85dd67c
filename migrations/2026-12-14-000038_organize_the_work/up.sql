-- Organize the work (issue 68, docs/tickets.md): the ticket grows the columns its views filter on,
-- as columns rather than side tables, so the filter language compiles to indexed SQL over them.

-- Lets one GIN index lead with account_id, so a tag or field filter reads one account's entries
-- and not every account's (trusted since PostgreSQL 13: the migrating role needs no superuser).
CREATE EXTENSION IF NOT EXISTS btree_gin;

-- Teams of agents. A ticket can be assigned to a group, and to an agent who belongs to it.
CREATE TABLE groups (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 1000),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- A deleted group keeps its row: tickets and audit records that name it stay readable.
    deleted_at timestamptz,
    -- Target of the tenant-consistent foreign keys below.
    CONSTRAINT groups_account_id_id_key UNIQUE (account_id, id)
);
-- CreateGroup/UpdateGroup: a live group's name is unique in its account, whatever its case.
CREATE UNIQUE INDEX groups_account_name_idx ON groups (account_id, lower(name))
    WHERE deleted_at IS NULL;

CREATE TABLE group_members (
    account_id uuid NOT NULL,
    group_id uuid NOT NULL,
    user_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, group_id, user_id),
    CONSTRAINT group_members_group_fkey FOREIGN KEY (account_id, group_id)
        REFERENCES groups (account_id, id),
    CONSTRAINT group_members_user_fkey FOREIGN KEY (account_id, user_id)
        REFERENCES users (account_id, id)
);
-- "Which groups is this agent in" (a user's groups, views shared with an agent's groups).
CREATE INDEX group_members_user_idx ON group_members (account_id, user_id);

ALTER TABLE tickets
    -- Normalized by the service (domain/tag.rs): lower case, at most 20, no duplicates.
    ADD COLUMN tags text[] NOT NULL DEFAULT '{}'
        CONSTRAINT tickets_tags_limit CHECK (cardinality(tags) <= 20),
    -- The values of the account's custom fields, keyed by field key (domain/custom_field.rs).
    ADD COLUMN custom_fields jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT tickets_custom_fields_object CHECK (jsonb_typeof(custom_fields) = 'object'),
    ADD COLUMN group_id uuid,
    ADD CONSTRAINT tickets_group_fkey FOREIGN KEY (account_id, group_id)
        REFERENCES groups (account_id, id);

-- The filter `tags: "vip"` (ListTickets, views, rules), compiled to `tags @> ARRAY['vip']`.
CREATE INDEX tickets_tags_idx ON tickets USING gin (account_id, tags)
    WHERE deleted_at IS NULL;
-- The filter `custom_fields.plan = "pro"`, compiled to `custom_fields @> '{"plan":"pro"}'`.
CREATE INDEX tickets_custom_fields_idx ON tickets USING gin (account_id, custom_fields jsonb_path_ops)
    WHERE deleted_at IS NULL;
