DROP INDEX tickets_custom_fields_idx;
DROP INDEX tickets_tags_idx;
ALTER TABLE tickets
    DROP CONSTRAINT tickets_group_fkey,
    DROP COLUMN group_id,
    DROP COLUMN custom_fields,
    DROP COLUMN tags;
DROP TABLE group_members;
DROP TABLE groups;
DROP EXTENSION IF EXISTS btree_gin;
