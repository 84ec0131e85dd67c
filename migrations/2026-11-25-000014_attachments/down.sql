DROP TABLE storage_deletions;
DROP TABLE attachments;
