DROP FUNCTION seen_by_snapshot(bigint, text);
DROP FUNCTION list_snapshot();
