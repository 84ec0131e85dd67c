-- SearchTickets as an agent (the admin): the whole account, first page of 20 (21 rows: one
-- more, to know whether there is a next), no filters, as the service issues it
-- (src/db/models/ticket.rs, TicketRow::search; bench/run --read-volume captures the service's
-- own text into bench/results/rv-search-agent.sql.txt to compare): the planner's estimate of the
-- text's matches first, then best match first when it is at most 2,000 (MAX_MATCHES_RANKED in
-- src/domain/ticket_export.rs), else newest first. Statements on a pooled connection, no
-- transaction, sent unnamed (diesel does not keep a raw SQL query prepared): planned for their
-- text each time, hence pgbench -M extended. The first statement only picks the search text:
-- the same mix as the service's scenario (bench_searches, drawn by bench/run; bench/README.md).
\set n random(1, :searches)
SELECT q FROM bench_searches WHERE n = :n \gset
SELECT ticket_search_matches_estimate(:account_id, NULL, websearch_to_tsquery('english', :q)) AS estimate \gset
\if :estimate <= 2000
SELECT s.*, ts_headline('english', s.subject || E'\n' || s.description || E'\n' || s.public_comments, websearch_to_tsquery('english', :q), 'StartSel=, StopSel=, MaxWords=35, MinWords=15, MaxFragments=2, FragmentDelimiter=" … "') AS headline FROM (SELECT t.id, t.account_id, t.subject, t.description, t.priority, t.status, t.requester_id, t.assignee_id, t.created_at, t.updated_at, t.version, t.deleted_at, t.public_comments, u.email, ts_rank(t.search_document, websearch_to_tsquery('english', :q)) AS relevance FROM tickets t JOIN users u ON u.id = t.requester_id WHERE t.account_id = :account_id AND t.deleted_at IS NULL AND t.search_document @@ websearch_to_tsquery('english', :q)) s ORDER BY s.relevance DESC, s.id LIMIT 21;
\else
SELECT s.*, ts_headline('english', s.subject || E'\n' || s.description || E'\n' || s.public_comments, websearch_to_tsquery('english', :q), 'StartSel=, StopSel=, MaxWords=35, MinWords=15, MaxFragments=2, FragmentDelimiter=" … "') AS headline FROM (SELECT t.id, t.account_id, t.subject, t.description, t.priority, t.status, t.requester_id, t.assignee_id, t.created_at, t.updated_at, t.version, t.deleted_at, t.public_comments, u.email, ts_rank(t.search_document, websearch_to_tsquery('english', :q)) AS relevance FROM tickets t JOIN users u ON u.id = t.requester_id WHERE t.account_id = :account_id AND t.deleted_at IS NULL AND t.search_document @@ websearch_to_tsquery('english', :q)) s ORDER BY s.created_at DESC, s.id DESC LIMIT 21;
\endif
