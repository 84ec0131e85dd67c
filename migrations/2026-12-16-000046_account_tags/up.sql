-- The account's tags with counts (ListTags, docs/tickets.md "Tags"): per account and tag, how many
-- live (not deleted) tickets carry it, kept exact by statement-level triggers on tickets with
-- transition tables, in the transaction of the ticket write, as the dashboard's rollups are
-- (migration 000017): one aggregated upsert per statement, its rows taken in key order, so two
-- writers never lock the same counters in opposite orders; a statement that moves no tag (most
-- updates) writes nothing (`HAVING` drops zero deltas). A tag whose count falls to 0 keeps its row
-- (so a concurrent upsert never races a delete) and is left out of the list by the partial index.
-- `COLLATE "C"`: tags are compared byte-wise, so a prefix is a range of the primary key.
CREATE TABLE account_tags (
    account_id uuid NOT NULL REFERENCES accounts (id),
    tag text COLLATE "C" NOT NULL,
    -- No CHECK (ticket_count >= 0): a decrement arrives as an upsert whose proposed row is negative.
    ticket_count bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, tag)
);

-- ListTags without a prefix: the account's tags by count, most used first, then by name
-- (keyset pagination on (ticket_count, tag)).
CREATE INDEX account_tags_by_count_idx ON account_tags (account_id, ticket_count DESC, tag)
    WHERE ticket_count > 0;

-- Backfill, before the triggers exist.
INSERT INTO account_tags (account_id, tag, ticket_count)
SELECT account_id, tag, count(*)
FROM tickets, unnest(tags) AS tag
WHERE deleted_at IS NULL
GROUP BY 1, 2;

CREATE FUNCTION tickets_count_tags() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO account_tags AS a (account_id, tag, ticket_count)
        SELECT account_id, tag, count(*) FROM new_rows, unnest(tags) AS tag
        WHERE deleted_at IS NULL
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (account_id, tag)
        DO UPDATE SET ticket_count = a.ticket_count + excluded.ticket_count;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO account_tags AS a (account_id, tag, ticket_count)
        SELECT account_id, tag, sum(n) FROM (
            SELECT account_id, tag, 1 AS n FROM new_rows, unnest(tags) AS tag
            WHERE deleted_at IS NULL
            UNION ALL
            SELECT account_id, tag, -1 FROM old_rows, unnest(tags) AS tag
            WHERE deleted_at IS NULL
        ) deltas
        GROUP BY 1, 2 HAVING sum(n) <> 0 ORDER BY 1, 2
        ON CONFLICT (account_id, tag)
        DO UPDATE SET ticket_count = a.ticket_count + excluded.ticket_count;
    ELSE
        -- A deleted row (tickets are soft-deleted; this is for psql).
        INSERT INTO account_tags AS a (account_id, tag, ticket_count)
        SELECT account_id, tag, -count(*) FROM old_rows, unnest(tags) AS tag
        WHERE deleted_at IS NULL
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (account_id, tag)
        DO UPDATE SET ticket_count = a.ticket_count + excluded.ticket_count;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tickets_count_tags_inserts AFTER INSERT ON tickets
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_count_tags();
CREATE TRIGGER tickets_count_tags_updates AFTER UPDATE ON tickets
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_count_tags();
CREATE TRIGGER tickets_count_tags_deletes AFTER DELETE ON tickets
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_count_tags();
