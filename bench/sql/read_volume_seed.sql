-- bench/run --read-volume, step 1 of 4: prepares the bench account for a million tickets and a
-- million charges written in SQL straight into the bench database (psql variables: account_id,
-- extra_customers). Steps: this file; read_volume_rows.sql, run by two sessions at once, each
-- writing its share of the tickets and charges; read_volume_indexes.sql (the secondary
-- indexes again, two sessions); read_volume_check.sql after VACUUM ANALYZE.
--
-- Everything goes through the tables' own triggers: the rollups (revenue_daily,
-- ticket_counts_daily, ticket_counts_open, ticket_response_histograms), solved_at, change_txid and the generated
-- search_document are what the service would have after the same inserts. Only the secondary
-- indexes of tickets and charges are dropped for the load and built again afterwards from their
-- own definitions (pg_get_indexdef): one sort per index instead of a million insertions each,
-- and the same indexes in the end.
--
-- Text: a vocabulary of 5,000 words whose rank r is drawn log-uniformly (r = floor(5001^u)),
-- i.e. P(r) ~ ln(1 + 1/r): Zipf's law with exponent 1, as in running English. Ranks 1 to 30 are
-- English stop words ("the", "to", "my"...), about 40 % of the words, which the english
-- configuration drops as it would from real tickets; ranks 31 to 230 are support-desk words
-- ("printer", "password", "invoice"...); the rest are made-up words of three syllables, which
-- it keeps as they are. So the commonest searchable word is in about one ticket in eight, word
-- 100 in a few percent, word 1,000 in a few thousand tickets, the last ones in a few hundred.
\set ON_ERROR_STOP 1
SET synchronous_commit = off;
SET maintenance_work_mem = '256MB';
SELECT setseed(0.28);

DROP TABLE IF EXISTS bench_words;
CREATE TABLE bench_words (word_rank int PRIMARY KEY, word text NOT NULL);
INSERT INTO bench_words
SELECT ordinality, word FROM unnest(string_to_array(
  'the to and a i is it my of in for on this that not with have but we be can was you when me '
  'after so are at or '
  'printer password login error email account invoice refund payment card order delivery '
  'shipping update install screen browser laptop phone network connection server slow crash '
  'reset access customer billing subscription plan upgrade download upload file attachment '
  'report export import settings profile address notification message chat support agent '
  'ticket request issue problem broken missing wrong charge receipt credit debit bank transfer '
  'wifi router cable battery charger keyboard mouse monitor display driver software license '
  'activation key code token session timeout cookie cache sync backup restore storage disk '
  'memory freeze restart shutdown boot window mac linux android iphone tablet app mobile '
  'desktop version release bug feature integration webhook api calendar meeting schedule '
  'contract quote discount coupon promotion trial cancel renewal expired overdue reminder '
  'warehouse package tracking courier return exchange damaged replacement warranty repair '
  'technician appointment visit manager team permission role admin user group folder share '
  'link invite sign signup verify verification captcha spam blocked locked unlock security '
  'breach phishing virus firewall vpn proxy dns domain certificate ssl https redirect page '
  'form field button search filter sort column table chart dashboard analytics metric '
  'latency outage incident', ' ')) WITH ORDINALITY AS w(word, ordinality);
-- Ranks 231 to 5,000: three syllables each, distinct by construction.
INSERT INTO bench_words
SELECT r, s[1 + (r / 400) % 20] || s[1 + (r / 20) % 20] || s[1 + r % 20]
FROM generate_series((SELECT max(word_rank) + 1 FROM bench_words), 5000) AS r,
     (SELECT string_to_array('bak,dov,fim,gur,hoz,jat,kev,lom,mip,nux,pog,qaf,rib,sut,tov,vek,wom,yab,zun,cir', ',') AS s) syllables;

-- Pools of text drawn from the vocabulary, which tickets combine at random: 50,000 subjects of
-- 4 to 10 words and 100,000 fragments of 8 to 30 words; a description is two fragments, a public
-- comment one. Drawing words for every ticket would cost more than the tickets' own tsvectors.
CREATE OR REPLACE FUNCTION bench_text(words text[], n int) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT string_agg(words[floor(exp(random() * ln(array_length(words, 1) + 1)))::int], ' ')
  FROM generate_series(1, n)
$$;
DROP TABLE IF EXISTS bench_subjects, bench_fragments;
CREATE TABLE bench_subjects AS
SELECT n, initcap(bench_text(words, 4 + (random() * 6 + 0 * n)::int)) AS text
FROM generate_series(1, 50000) AS n,
     (SELECT array_agg(word ORDER BY word_rank) AS words FROM bench_words) v;
ALTER TABLE bench_subjects ADD PRIMARY KEY (n);
CREATE TABLE bench_fragments AS
SELECT n, bench_text(words, 8 + (random() * 22 + 0 * n)::int) AS text
FROM generate_series(1, 100000) AS n,
     (SELECT array_agg(word ORDER BY word_rank) AS words FROM bench_words) v;
ALTER TABLE bench_fragments ADD PRIMARY KEY (n);
ANALYZE bench_subjects, bench_fragments;

-- Customers with no password (never logged in): the requesters of most tickets. The customers
-- loadgen setup created (and logged in) raise their share too.
INSERT INTO users (id, account_id, email, display_name, role)
SELECT gen_random_uuid(), :'account_id', 'bulk-' || n || '@read-volume.example.com', '', 'customer'
FROM generate_series(1, :extra_customers) AS n;
DROP TABLE IF EXISTS bench_requesters, bench_dropped_indexes;
CREATE TABLE bench_requesters AS
SELECT row_number() OVER (ORDER BY id) AS n, id FROM users
WHERE account_id = :'account_id' AND role = 'customer';
ALTER TABLE bench_requesters ADD PRIMARY KEY (n);
ANALYZE bench_requesters;

-- The secondary indexes, dropped for the load and rebuilt by read_volume_indexes.sql.
CREATE TABLE bench_dropped_indexes AS
SELECT c.relname AS table_name, i.relname AS index_name, pg_get_indexdef(i.oid) AS definition
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class c ON c.oid = x.indrelid
WHERE c.relname IN ('tickets', 'charges') AND c.relnamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid);
SELECT format('DROP INDEX %I', index_name) FROM bench_dropped_indexes \gexec

