-- bench/run --read-volume, after VACUUM ANALYZE: the side panel of the bench account's desk,
-- 20 views shared with the account (issue 68, item 6: a view's first page and the 20 counts in
-- one call), owned by its admin. Their filters are the forms a desk's views use, over what
-- read_volume_organize.sql and read_volume_rows.sql gave the tickets (statuses, priorities,
-- the admin as assignee, the group, tags of each band, custom fields of every kind filtered
-- on); every one is served by an index (tests/api/tickets/queries.rs checks each form).
\set ON_ERROR_STOP 1
DELETE FROM views WHERE account_id = :'account_id';
INSERT INTO views (id, account_id, name, filter, order_by, scope, owner_id, position)
SELECT gen_random_uuid(), :'account_id', v.name, replace(v.filter, '{group}', o.group_id::text),
       v.order_by, 'account', o.admin_id, v.position
FROM bench_organize o
CROSS JOIN (VALUES
  (1, 'Open', 'status = open', ''),
  (2, 'New and unassigned', 'status = new AND assignee = none', 'create_time asc'),
  (3, 'My open tickets', 'assignee = me AND status = (new OR open)', 'update_time desc'),
  (4, 'Urgent, not closed', 'priority = urgent AND status != closed', ''),
  (5, 'VIP', 'tags: vip', ''),
  (6, 'Refunds waiting', 'tags: refund AND status = (new OR open)', 'create_time asc'),
  (7, 'Billing team', 'group = {group} AND status = (new OR open OR pending)', ''),
  (8, 'Pro plan', 'custom_fields.plan = pro', ''),
  (9, 'VIP checkbox, open', 'custom_fields.vip = true AND status = open', ''),
  (10, 'Created this week', 'create_time > now(-7d)', ''),
  (11, 'Pending for a month', 'status = pending AND update_time < now(-30d)', 'update_time asc'),
  (12, 'Mobile area', 'custom_fields.areas: mobile', ''),
  (13, 'High billing', 'priority = high AND tags: billing', ''),
  (14, 'Solved', 'status = solved', 'update_time desc'),
  (15, 'Twelve seats', 'custom_fields.seats = 12', ''),
  (16, 'Open, not spam', 'status = open AND -tags: spam', ''),
  (17, 'Unassigned for a day', 'assignee = none AND create_time < now(-24h)', 'create_time asc'),
  (18, 'Core product in Europe', 'custom_fields.region = eu AND custom_fields.product = core', ''),
  (19, 'Paid plans, urgent', 'custom_fields.plan != free AND priority = urgent', ''),
  (20, 'A rare topic', 'tags: topic-150', '')
) AS v(position, name, filter, order_by);
SELECT id FROM views WHERE account_id = :'account_id' ORDER BY position;
