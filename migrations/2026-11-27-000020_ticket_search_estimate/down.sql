DROP FUNCTION ticket_search_matches_estimate(uuid, uuid, tsquery);
