-- Custom fields (issue 68, docs/tickets.md "Custom fields"): the catalogue of typed fields an
-- account's admins define for its tickets. The values live on the ticket
-- (`tickets.custom_fields`, migration 38), keyed by the field's key; this table says what each
-- key holds and who may see and change it.
CREATE TABLE custom_fields (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    -- Immutable: stored values and filters name the field by it (domain/custom_field.rs).
    key text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_]{0,39}$'),
    title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 100),
    -- Immutable: changing a field's type would strand the values stored under the old one.
    kind text NOT NULL CHECK (kind IN ('text', 'long_text', 'integer', 'decimal', 'checkbox',
        'date', 'single_choice', 'multiple_choice', 'pattern')),
    -- The options of a choice kind, in their order; empty for the other kinds. An option
    -- removed here stays on the tickets that carry it (readable) and takes no new writes.
    choices text[] NOT NULL DEFAULT '{}' CHECK (cardinality(choices) <= 200),
    -- The regular expression of the pattern kind; NULL for the other kinds.
    pattern text CHECK (char_length(pattern) <= 500),
    description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 500),
    customer_visible boolean NOT NULL DEFAULT false,
    -- Only a field a customer sees can be one a customer sets.
    customer_editable boolean NOT NULL DEFAULT false
        CHECK (NOT customer_editable OR customer_visible),
    required_to_solve boolean NOT NULL DEFAULT false,
    -- Where the field is shown among the account's fields (ascending; ties by key).
    position integer NOT NULL DEFAULT 0 CHECK (position BETWEEN 0 AND 10000),
    -- A retired field keeps its row and the values on tickets, readable, and takes no new
    -- writes. A retired field's key is not freed: a new field under it would read old values
    -- as its own.
    retired_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT custom_fields_kind_shape CHECK (
        (kind IN ('single_choice', 'multiple_choice')) = (cardinality(choices) > 0)
        AND (kind = 'pattern') = (pattern IS NOT NULL))
);
-- CreateCustomField: a key is unique in its account (retired or not); also the catalogue's
-- one read per ticket write (`account_id = $1`).
CREATE UNIQUE INDEX custom_fields_account_key_idx ON custom_fields (account_id, key);
