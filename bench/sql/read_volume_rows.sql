-- bench/run --read-volume, step 2 of 4 (read_volume_seed.sql says the whole): one session's
-- share of the rows, numbers :first to :last of :tickets tickets and of :charges charges (psql
-- variables, with account_id). Two sessions run it at once on the two halves: the statement
-- triggers roll each statement's rows up in one upsert per rollup, so the halves only meet on
-- the rollup rows, at the end of each statement.
\set ON_ERROR_STOP 1
SET synchronous_commit = off;

-- Ticket n is created at now() - 365 days × (1 - n / :tickets): the year, oldest first. 5 % new,
-- 10 % open, 5 % pending, 40 % solved, 40 % closed; solved ones were solved 1 to 96 hours after
-- creation (the import path: an inserter may supply solved_at); 80 % were first answered by an
-- agent 5 minutes to 24 hours after creation. Priorities: low 1/6, normal 1/2, high 1/6, urgent
-- 1/6 (roughly). Subject: one of the 50,000 pooled subjects; description: two pooled fragments;
-- a fifth of the tickets have a public comment (public_comments, as the comment trigger leaves
-- it). Requesters: the account's customers at random. Issue 68 (read_volume_organize.sql): 3
-- tags (one of each band), values for 10 of the 20 custom fields, a fifth in the group, a third
-- assigned to the admin (its only agent).
INSERT INTO tickets (id, account_id, subject, description, priority, status, requester_id,
                     created_at, updated_at, public_comments, solved_at, first_agent_response_at,
                     tags, custom_fields, group_id, assignee_id)
SELECT gen_random_uuid(), :'account_id', subject.text, first.text || ' ' || second.text,
       (ARRAY['low', 'normal', 'normal', 'normal', 'high', 'urgent'])[1 + floor(d.p * 6)::int],
       status, requester.id, created_at, created_at, coalesce(comment.text, ''),
       CASE WHEN status IN ('solved', 'closed')
            THEN created_at + interval '1 hour' + d.solve * interval '95 hours' END,
       CASE WHEN d.answer < 0.8
            THEN created_at + interval '5 minutes' + d.answer_delay * interval '24 hours' END,
       bench_ticket_tags(d.t1, d.t2, d.t3), bench_field_values(d.o),
       CASE WHEN d.organized < 0.2 THEN organize.group_id END,
       CASE WHEN d.organized < 0.33 THEN organize.admin_id END
FROM (
  SELECT g, now() - interval '365 days' * (1 - g::float8 / :tickets) AS created_at,
         random() + 0 * g AS s, random() AS p, random() AS solve, random() AS answer,
         random() AS answer_delay,
         1 + floor(random() * 50000)::int AS subject_n,
         1 + floor(random() * 100000)::int AS first_n,
         1 + floor(random() * 100000)::int AS second_n,
         CASE WHEN random() < 0.2 THEN 1 + floor(random() * 100000)::int END AS comment_n,
         1 + floor(random() * (SELECT count(*) FROM bench_requesters))::bigint AS requester_n,
         random() AS t1, random() AS t2, random() AS t3, random() AS o, random() AS organized
  FROM generate_series(:first, :last) AS g
  OFFSET 0 -- a fence: each draw is made once per row, never again in a join condition
) d
CROSS JOIN LATERAL (SELECT CASE WHEN d.s < 0.05 THEN 'new' WHEN d.s < 0.15 THEN 'open'
                                WHEN d.s < 0.20 THEN 'pending' WHEN d.s < 0.60 THEN 'solved'
                                ELSE 'closed' END AS status) st
JOIN bench_subjects subject ON subject.n = d.subject_n
JOIN bench_fragments first ON first.n = d.first_n
JOIN bench_fragments second ON second.n = d.second_n
LEFT JOIN bench_fragments comment ON comment.n = d.comment_n
JOIN bench_requesters requester ON requester.n = d.requester_n
CROSS JOIN bench_organize organize;

-- Charge n is made at now() - 365 days × (1 - n / :charges) by one of the account's customers
-- at random, in EUR (60 %), USD (30 %) or GBP (10 %), 1.00 to 500.00; 85 % succeeded, 4 %
-- partially refunded (a third), 3 % refunded, 6 % failed (declined), 2 % pending. The insert
-- trigger books their refunds on today (the day they are recorded), as it would for an import.
INSERT INTO charges (id, account_id, customer_id, amount_minor, amount_refunded_minor, currency,
                     payment_method, status, provider_payment_id, failure_kind, created_at,
                     updated_at)
SELECT gen_random_uuid(), :'account_id', customer.id, amount,
       CASE status WHEN 'refunded' THEN amount
                   WHEN 'partially_refunded' THEN greatest(1, amount / 3) ELSE 0 END,
       currency, 'pm_card_visa', status,
       CASE WHEN status NOT IN ('pending', 'failed') THEN 'pi_bench_' || g END,
       CASE WHEN status = 'failed' THEN 'declined' END,
       created_at, created_at
FROM (
  SELECT g, 100 + floor(random() * 49901)::bigint + 0 * g AS amount,
         CASE WHEN c < 0.6 THEN 'EUR' WHEN c < 0.9 THEN 'USD' ELSE 'GBP' END AS currency,
         CASE WHEN s < 0.85 THEN 'succeeded' WHEN s < 0.89 THEN 'partially_refunded'
              WHEN s < 0.92 THEN 'refunded' WHEN s < 0.98 THEN 'failed' ELSE 'pending' END AS status,
         now() - interval '365 days' * (1 - g::float8 / :charges) AS created_at, customer_n
  FROM (
    SELECT g, random() + 0 * g AS c, random() AS s,
           1 + floor(random() * (SELECT count(*) FROM bench_requesters))::bigint AS customer_n
    FROM generate_series(:first_charge, :last_charge) AS g
    OFFSET 0
  ) draws
  OFFSET 0
) d
JOIN bench_requesters customer ON customer.n = d.customer_n;
