-- Nothing to restore: the forgotten entries were deletions of objects their attachments still hold.
SELECT 1;
