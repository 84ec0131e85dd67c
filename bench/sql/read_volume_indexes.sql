-- bench/run --read-volume, step 3 of 4 (read_volume_seed.sql says the whole): builds again the
-- secondary indexes of tickets and charges that step 1 dropped, from their own definitions:
-- this session's share (:part of 2, by position).
\set ON_ERROR_STOP 1
SET maintenance_work_mem = '256MB';
SELECT definition FROM (
  SELECT definition, row_number() OVER (ORDER BY table_name, index_name) AS position
  FROM bench_dropped_indexes
) ordered
WHERE position % 2 = :part \gexec
