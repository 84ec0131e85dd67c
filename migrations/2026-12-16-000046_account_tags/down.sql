DROP TRIGGER tickets_count_tags_deletes ON tickets;
DROP TRIGGER tickets_count_tags_updates ON tickets;
DROP TRIGGER tickets_count_tags_inserts ON tickets;
DROP FUNCTION tickets_count_tags();
DROP TABLE account_tags;
