DROP TRIGGER ticket_comments_index_public ON ticket_comments;
DROP FUNCTION ticket_comments_index_public();
DROP INDEX tickets_search_idx;
DROP INDEX tickets_account_change_idx;
ALTER TABLE tickets DROP COLUMN search_document;
DROP TRIGGER tickets_note_change ON tickets;
DROP FUNCTION tickets_note_change();
ALTER TABLE tickets DROP COLUMN public_comments, DROP COLUMN change_txid;
