ALTER TABLE notifications DROP COLUMN trace_context;
