-- SearchTickets as a customer: their own tickets only (the service adds the requester), first
-- page of 20, as the service issues it (src/db/models/ticket.rs, TicketRow::search; captured by
-- bench/run --read-volume into bench/results/rv-search-customer.sql.txt): the planner's estimate
-- of the text's matches among the customer's tickets first (a hundred tickets: always ranked,
-- the newest-first branch is there for fidelity), then the search. The first statements
-- pick the search text (the service scenario's mix) and one of the customers it calls as. Sent
-- unnamed, as diesel sends a raw SQL query: planned for its text each time (pgbench -M extended).
\set n random(1, :searches)
SELECT q FROM bench_searches WHERE n = :n \gset
\set c random(1, :search_customers)
SELECT user_id FROM bench_search_customers WHERE n = :c \gset
SELECT ticket_search_matches_estimate(:account_id, :user_id, websearch_to_tsquery('english', :q)) AS estimate \gset
\if :estimate <= 2000
SELECT s.*, ts_headline('english', s.subject || E'\n' || s.description || E'\n' || s.public_comments, websearch_to_tsquery('english', :q), 'StartSel=, StopSel=, MaxWords=35, MinWords=15, MaxFragments=2, FragmentDelimiter=" … "') AS headline FROM (SELECT t.id, t.account_id, t.subject, t.description, t.priority, t.status, t.requester_id, t.assignee_id, t.created_at, t.updated_at, t.version, t.deleted_at, t.public_comments, u.email, ts_rank(t.search_document, websearch_to_tsquery('english', :q)) AS relevance FROM tickets t JOIN users u ON u.id = t.requester_id WHERE t.account_id = :account_id AND t.deleted_at IS NULL AND t.search_document @@ websearch_to_tsquery('english', :q) AND t.requester_id = :user_id) s ORDER BY s.relevance DESC, s.id LIMIT 21;
\else
SELECT s.*, ts_headline('english', s.subject || E'\n' || s.description || E'\n' || s.public_comments, websearch_to_tsquery('english', :q), 'StartSel=, StopSel=, MaxWords=35, MinWords=15, MaxFragments=2, FragmentDelimiter=" … "') AS headline FROM (SELECT t.id, t.account_id, t.subject, t.description, t.priority, t.status, t.requester_id, t.assignee_id, t.created_at, t.updated_at, t.version, t.deleted_at, t.public_comments, u.email, ts_rank(t.search_document, websearch_to_tsquery('english', :q)) AS relevance FROM tickets t JOIN users u ON u.id = t.requester_id WHERE t.account_id = :account_id AND t.deleted_at IS NULL AND t.search_document @@ websearch_to_tsquery('english', :q) AND t.requester_id = :user_id) s ORDER BY s.created_at DESC, s.id DESC LIMIT 21;
\endif
