CREATE INDEX tickets_account_requester_idx ON tickets (account_id, requester_id);
DROP INDEX tickets_account_requester_created_idx;
DROP TABLE api_keys;
DROP INDEX users_account_created_idx;
ALTER TABLE users DROP COLUMN active, DROP COLUMN password_hash;
