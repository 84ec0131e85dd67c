ALTER TABLE notifications DROP COLUMN unconfirmed_sends, DROP COLUMN handed_over_attempt;
