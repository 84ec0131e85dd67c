-- bench/run --read-volume, step 1b (after read_volume_seed.sql, before read_volume_rows.sql):
-- what issue 68 organizes tickets by (psql variables: account_id, beside_accounts,
-- beside_tickets). Every account, the bench account and the :beside_accounts accounts beside
-- it, defines the same 20 custom fields (bench_fields: every kind); read_volume_rows.sql gives
-- each ticket values for 10 of them and 3 tags, a fifth of them a group and a third an
-- assignee, as this file does for the :beside_tickets tickets of each account beside. The
-- indexes are still dropped (read_volume_seed.sql), so the tickets beside cost their rows only.
\set ON_ERROR_STOP 1
SET synchronous_commit = off;
SELECT setseed(0.68);

-- The catalogue: position, key, kind, options (choice kinds), pattern (the pattern kind).
DROP TABLE IF EXISTS bench_fields, bench_tags;
CREATE TABLE bench_fields (position int PRIMARY KEY, key text NOT NULL, kind text NOT NULL,
                           choices text[] NOT NULL DEFAULT '{}', pattern text);
INSERT INTO bench_fields VALUES
  (0, 'plan', 'single_choice', '{free,pro,ent}', NULL),
  (1, 'seats', 'integer', '{}', NULL),
  (2, 'vip', 'checkbox', '{}', NULL),
  (3, 'amount', 'decimal', '{}', NULL),
  (4, 'due', 'date', '{}', NULL),
  (5, 'areas', 'multiple_choice', '{billing,login,mobile,api,reports}', NULL),
  (6, 'order_ref', 'text', '{}', NULL),
  (7, 'region', 'single_choice', '{eu,us,apac}', NULL),
  (8, 'channel', 'single_choice', '{web,email,phone,chat}', NULL),
  (9, 'product', 'single_choice', '{core,mobile,api,reports,billing}', NULL),
  (10, 'severity', 'single_choice', '{s1,s2,s3,s4}', NULL),
  (11, 'renewal', 'date', '{}', NULL),
  (12, 'licenses', 'integer', '{}', NULL),
  (13, 'escalated', 'checkbox', '{}', NULL),
  (14, 'refund_amount', 'decimal', '{}', NULL),
  (15, 'platforms', 'multiple_choice', '{ios,android,web,desktop}', NULL),
  (16, 'account_ref', 'text', '{}', NULL),
  (17, 'language', 'single_choice', '{en,de,fr,es,it,nl}', NULL),
  (18, 'notes', 'long_text', '{}', NULL),
  (19, 'sku', 'pattern', '{}', '^SKU-[0-9]{4}$');

-- A value of `field` drawn from r in [0, 1), in the stored shape the service writes
-- (domain/custom_field.rs: decimals without trailing zeros, multiple choices as arrays).
CREATE OR REPLACE FUNCTION bench_field_value(kind text, choices text[], r float8)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE kind
    WHEN 'single_choice' THEN to_jsonb(choices[1 + floor(r * cardinality(choices))::int])
    WHEN 'multiple_choice' THEN to_jsonb(ARRAY(
      SELECT choices[i] FROM generate_series(1, cardinality(choices)) AS i
      WHERE (floor(r * 1024)::int >> i) & 1 = 1 OR i = 1 + floor(r * cardinality(choices))::int
      ORDER BY i))
    WHEN 'integer' THEN to_jsonb(floor(r * 100)::int)
    WHEN 'checkbox' THEN to_jsonb(r < 0.1)
    WHEN 'decimal' THEN to_jsonb(rtrim(rtrim(to_char(r * 500, 'FM9990.00'), '0'), '.'))
    WHEN 'date' THEN to_jsonb(to_char(date '2026-01-01' + floor(r * 365)::int, 'YYYY-MM-DD'))
    WHEN 'pattern' THEN to_jsonb('SKU-' || lpad(floor(r * 10000)::int::text, 4, '0'))
    WHEN 'long_text' THEN to_jsonb('A longer note, number ' || floor(r * 1000)::int)
    ELSE to_jsonb('REF-' || floor(r * 100000)::int)
  END
$$;

-- The values of 10 of the 20 fields: every other field from a drawn offset, each value drawn.
CREATE OR REPLACE FUNCTION bench_field_values(offset_draw float8) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
  SELECT jsonb_object_agg(f.key, bench_field_value(f.kind, f.choices, random()))
  FROM bench_fields f
  WHERE f.position IN (SELECT (floor(offset_draw * 20)::int + 2 * k) % 20
                       FROM generate_series(0, 9) AS k)
$$;

-- 300 tags: a popular ten, then ninety common, then two hundred rare; a ticket takes one of
-- each band, so its three are distinct and `tags: vip` matches about a tenth of the tickets.
CREATE TABLE bench_tags (n int PRIMARY KEY, tag text NOT NULL);
INSERT INTO bench_tags
SELECT n, CASE WHEN n <= 10 THEN (ARRAY['vip', 'refund', 'billing', 'spam', 'bug', 'login',
                                        'shipping', 'feedback', 'outage', 'invoice'])[n]
               ELSE 'topic-' || n END
FROM generate_series(1, 300) AS n;
CREATE OR REPLACE FUNCTION bench_ticket_tags(r1 float8, r2 float8, r3 float8) RETURNS text[]
LANGUAGE sql STABLE AS $$
  SELECT ARRAY[(SELECT tag FROM bench_tags WHERE n = 1 + floor(r1 * 10)::int),
               (SELECT tag FROM bench_tags WHERE n = 11 + floor(r2 * 90)::int),
               (SELECT tag FROM bench_tags WHERE n = 101 + floor(r3 * 200)::int)]
$$;

-- The catalogue of the bench account, its group (the admin a member) and its agent: the admin.
INSERT INTO custom_fields (id, account_id, key, title, kind, choices, pattern, position)
SELECT gen_random_uuid(), :'account_id', key, initcap(replace(key, '_', ' ')), kind, choices,
       pattern, position
FROM bench_fields;
DROP TABLE IF EXISTS bench_organize;
CREATE TABLE bench_organize AS
SELECT gen_random_uuid() AS group_id,
       (SELECT id FROM users WHERE account_id = :'account_id' AND role = 'admin' LIMIT 1) AS admin_id;
INSERT INTO groups (id, account_id, name) SELECT group_id, :'account_id', 'Billing' FROM bench_organize;
INSERT INTO group_members (account_id, group_id, user_id)
SELECT :'account_id', group_id, admin_id FROM bench_organize;

-- The accounts beside it: each with the catalogue, a requester, and :beside_tickets tickets.
DROP TABLE IF EXISTS bench_beside;
CREATE TABLE bench_beside AS
SELECT n, gen_random_uuid() AS account_id, gen_random_uuid() AS requester_id
FROM generate_series(1, :beside_accounts) AS n;
INSERT INTO accounts (id, name, slug)
SELECT account_id, 'Beside ' || n, 'beside-' || n FROM bench_beside;
INSERT INTO users (id, account_id, email, display_name, role)
SELECT requester_id, account_id, 'requester@beside-' || n || '.example.com', '', 'customer'
FROM bench_beside;
INSERT INTO custom_fields (id, account_id, key, title, kind, choices, pattern, position)
SELECT gen_random_uuid(), b.account_id, f.key, initcap(replace(f.key, '_', ' ')), f.kind,
       f.choices, f.pattern, f.position
FROM bench_beside b CROSS JOIN bench_fields f;
INSERT INTO tickets (id, account_id, subject, description, priority, status, requester_id,
                     created_at, updated_at, solved_at, tags, custom_fields)
SELECT gen_random_uuid(), b.account_id, 'Beside ' || g, 'A ticket of an account beside',
       (ARRAY['low', 'normal', 'normal', 'normal', 'high', 'urgent'])[1 + floor(d.p * 6)::int],
       st.status, b.requester_id, d.created_at, d.created_at,
       CASE WHEN st.status IN ('solved', 'closed') THEN d.created_at + interval '1 hour' END,
       bench_ticket_tags(d.t1, d.t2, d.t3), bench_field_values(d.o)
FROM bench_beside b
CROSS JOIN LATERAL (
  SELECT g, now() - interval '365 days' * random() AS created_at, random() AS p, random() AS s,
         random() AS t1, random() AS t2, random() AS t3, random() AS o
  FROM generate_series(1, :beside_tickets) AS g
  OFFSET 0
) d
CROSS JOIN LATERAL (SELECT (ARRAY['new', 'open', 'pending', 'solved', 'closed'])
                           [1 + floor(d.s * 5)::int] AS status) st;
ANALYZE bench_fields, bench_tags, bench_organize, bench_beside;
