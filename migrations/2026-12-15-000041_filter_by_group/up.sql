-- The filter language (issue 68, docs/tickets.md "The filter language"): every field a filter
-- may name is served by an index of migrations 3 (status, priority, assignee, requester, times)
-- and 38 (tags); the group is not. One index, for the desk's most common group view.

-- The filter `group = <id>` (and `group = none`) of ListTickets, SearchTickets and
-- ExportTickets, newest first: compiled to `group_id = ANY($n)` / `group_id IS NULL`.
CREATE INDEX tickets_account_group_created_idx
    ON tickets (account_id, group_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
