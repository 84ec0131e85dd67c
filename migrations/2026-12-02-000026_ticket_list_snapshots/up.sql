-- The snapshot a first page of tickets by update time was read in, and whether a later page's
-- ticket had its last change seen by it (docs/tickets.md, "Paging while tickets change"), as
-- functions of text and bigint: a query calling them by name stays a prepared statement the
-- service keeps (one round trip), where the same SQL written inline with casts to pg_snapshot
-- and xid8 would not.
-- STABLE: the statement's own snapshot, the one its rows are read in.
CREATE FUNCTION list_snapshot() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT pg_current_snapshot()::text $$;

CREATE FUNCTION seen_by_snapshot(change_txid bigint, snapshot text) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT pg_visible_in_snapshot(change_txid::text::xid8, snapshot::pg_snapshot) $$;
