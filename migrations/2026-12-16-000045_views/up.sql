-- Saved views (docs/tickets.md, "Views"): a ticket filter, order and read mask, kept as the text
-- the caller wrote (parsed when saved, and again whenever run, `me` being whoever runs it).
CREATE TABLE views (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    filter text NOT NULL DEFAULT '' CHECK (char_length(filter) <= 2000),
    order_by text NOT NULL DEFAULT '',
    -- The read mask's paths; empty: every field.
    read_mask text[] NOT NULL DEFAULT '{}',
    scope text NOT NULL CHECK (scope IN ('personal', 'group', 'account')),
    -- Set iff scope = 'group'.
    group_id uuid,
    owner_id uuid NOT NULL,
    position integer NOT NULL DEFAULT 0,
    -- The etag (`v<version>`), raised by every change.
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT views_group_iff_group_scope CHECK ((scope = 'group') = (group_id IS NOT NULL)),
    CONSTRAINT views_group_fkey FOREIGN KEY (account_id, group_id)
        REFERENCES groups (account_id, id),
    CONSTRAINT views_owner_fkey FOREIGN KEY (account_id, owner_id)
        REFERENCES users (account_id, id)
);
-- ListViews and CountViews with no ids: the views of one account a caller may see, in side-panel
-- order (position, name), read from one account's rows.
CREATE INDEX views_account_position_idx ON views (account_id, position, name, id);
