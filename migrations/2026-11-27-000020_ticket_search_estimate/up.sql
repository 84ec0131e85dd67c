-- Issue 28 item 5: SearchTickets chooses its order by how many tickets its words match.
--
-- Ranking by ts_rank needs every match's document from the heap before the best page is known:
-- O(matches), about 25 µs a match on the bench's million tickets, so a text matching tens of
-- thousands of tickets cannot answer in 50 ms. A search whose words match more than a few
-- thousand tickets of its scope is answered newest first instead, by walking the scope's
-- created_at index until the page is full: O(page × tickets ÷ matches). Which of the two is
-- decided before the search by the planner's own estimate of the matches (the statistics of
-- search_document, as for any plan), which this function reads from EXPLAIN: planning only,
-- nothing is read from the table (docs/export-and-search.md, "Order").
--
-- VOLATILE because PostgreSQL refuses EXPLAIN in a stable function; the values are quoted into
-- the statement with format's %L, so they are never read as SQL.
CREATE FUNCTION ticket_search_matches_estimate(account uuid, requester uuid, query tsquery)
    RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    plan json;
BEGIN
    EXECUTE format(
        'EXPLAIN (FORMAT JSON) SELECT 1 FROM tickets WHERE account_id = %L AND deleted_at IS NULL '
        'AND search_document @@ %L::tsquery', account, query)
        || CASE WHEN requester IS NULL THEN '' ELSE format(' AND requester_id = %L', requester) END
        INTO plan;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::bigint;
END
$$;
