-- Issue 28: the change feed (ListTicketChanges) and full-text search (SearchTickets).
--
-- Both are kept current by the database itself, so every writer of tickets (the RPCs, a batch
-- import's multi-row INSERT, a hand-written UPDATE) gets them for free:
--
-- * change_txid: the id of the (top-level) transaction that last wrote the row, as a bigint
--   (pg_current_xact_id(), epoch included, so it never wraps). A default on insert, a trigger on
--   update. The feed returns only rows written by transactions older than the oldest one still
--   running (pg_snapshot_xmin of the reading statement's snapshot): such a transaction can no
--   longer commit, so a row that appears later always sorts after the feed's cursor. Nothing is
--   skipped when transactions commit out of order; they are only waited for.
-- * public_comments: the text of the ticket's public comments, appended by a trigger on
--   ticket_comments in the comment's own transaction. Internal notes are never added.
-- * search_document: a stored generated column over subject (weight A), description (B) and the
--   public comments (C), with a GIN index.

ALTER TABLE tickets
    ADD COLUMN change_txid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    ADD COLUMN public_comments text NOT NULL DEFAULT '';

CREATE FUNCTION tickets_note_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_txid := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$;

CREATE TRIGGER tickets_note_change BEFORE UPDATE ON tickets
    FOR EACH ROW EXECUTE FUNCTION tickets_note_change();

-- The feed of one account, oldest change first; deleted tickets included (their deletion is a
-- change the feed reports).
CREATE INDEX tickets_account_change_idx ON tickets (account_id, change_txid, id);

-- Comments written before this migration join the search document.
UPDATE tickets SET public_comments = coalesce((
    SELECT string_agg(body, E'\n' ORDER BY created_at, id)
    FROM ticket_comments
    WHERE ticket_comments.account_id = tickets.account_id
      AND ticket_comments.ticket_id = tickets.id
      AND ticket_comments.public
), '');

ALTER TABLE tickets
    ADD COLUMN search_document tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', subject), 'A')
        || setweight(to_tsvector('english', description), 'B')
        || setweight(to_tsvector('english', public_comments), 'C')
    ) STORED;

CREATE INDEX tickets_search_idx ON tickets USING gin (search_document)
    WHERE deleted_at IS NULL;

CREATE FUNCTION ticket_comments_index_public() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.public THEN
        UPDATE tickets
        SET public_comments = CASE WHEN public_comments = '' THEN NEW.body
                                   ELSE public_comments || E'\n' || NEW.body END
        WHERE account_id = NEW.account_id AND id = NEW.ticket_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER ticket_comments_index_public AFTER INSERT ON ticket_comments
    FOR EACH ROW EXECUTE FUNCTION ticket_comments_index_public();
