DROP TABLE ticket_activities;
DROP TABLE ticket_comments;
DROP INDEX tickets_open_per_requester_idx;
DROP INDEX tickets_account_requester_updated_idx;
DROP INDEX tickets_account_assignee_updated_idx;
DROP INDEX tickets_account_assignee_created_idx;
CREATE INDEX tickets_account_assignee_idx ON tickets (account_id, assignee_id)
    WHERE assignee_id IS NOT NULL;
DROP INDEX tickets_account_priority_updated_idx;
DROP INDEX tickets_account_priority_created_idx;
DROP INDEX tickets_account_status_updated_idx;
DROP INDEX tickets_account_status_created_idx;
DROP INDEX tickets_account_updated_idx;
DROP INDEX tickets_account_created_idx;
CREATE INDEX tickets_account_created_idx ON tickets (account_id, created_at DESC, id DESC);
ALTER TABLE tickets
    DROP CONSTRAINT tickets_account_id_id_key,
    DROP COLUMN deleted_at,
    DROP COLUMN version;
