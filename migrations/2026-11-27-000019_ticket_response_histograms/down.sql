-- Back to migration 000017's exact percentiles: their partial indexes again, no histogram.
CREATE INDEX tickets_first_response_idx ON tickets (account_id, created_at)
    INCLUDE (first_agent_response_at) WHERE first_agent_response_at IS NOT NULL;
CREATE INDEX tickets_solved_idx ON tickets (account_id, solved_at)
    INCLUDE (created_at) WHERE solved_at IS NOT NULL;

DROP TRIGGER tickets_roll_up_response_times_deletes ON tickets;
DROP TRIGGER tickets_roll_up_response_times_updates ON tickets;
DROP TRIGGER tickets_roll_up_response_times_inserts ON tickets;
DROP FUNCTION tickets_roll_up_response_times();
DROP TABLE ticket_response_histograms;
DROP FUNCTION ticket_response_bucket(interval);
