-- SLA policies (issue 69, item 2): what is promised on which tickets (docs/sla.md). A policy's
-- row is its latest revision; every revision it had is kept in sla_policy_revisions, written by
-- the same transaction, so a ticket can name the version it was measured against.
CREATE TABLE sla_policies (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 1000),
    position integer NOT NULL DEFAULT 0 CHECK (position BETWEEN 0 AND 10000),
    -- The condition, in the filter language of ListTickets (domain/sla_policy.rs).
    filter text NOT NULL DEFAULT '' CHECK (char_length(filter) <= 2000),
    schedule_id uuid,
    -- [{"priority": "urgent", "metric": "first_reply", "minutes": 60, "business_hours": true}].
    targets jsonb NOT NULL
        CONSTRAINT sla_policies_targets_list CHECK (
            jsonb_typeof(targets) = 'array' AND jsonb_array_length(targets) BETWEEN 1 AND 12),
    warning_minutes integer NOT NULL DEFAULT 0 CHECK (warning_minutes BETWEEN 0 AND 10080),
    revision integer NOT NULL DEFAULT 1 CHECK (revision >= 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT sla_policies_account_id_id_key UNIQUE (account_id, id),
    -- DeleteSchedule waits for a policy being written against the schedule (FOR KEY SHARE).
    CONSTRAINT sla_policies_schedule_fkey FOREIGN KEY (account_id, schedule_id)
        REFERENCES schedules (account_id, id)
);
CREATE UNIQUE INDEX sla_policies_account_name_idx ON sla_policies (account_id, lower(name))
    WHERE deleted_at IS NULL;
-- ListSlaPolicies and the match: the live policies in the order they are tried.
CREATE INDEX sla_policies_account_order_idx ON sla_policies (account_id, position, created_at, id)
    WHERE deleted_at IS NULL;
-- DeleteSchedule: "does a live policy use this schedule".
CREATE INDEX sla_policies_schedule_idx ON sla_policies (account_id, schedule_id)
    WHERE deleted_at IS NULL AND schedule_id IS NOT NULL;

-- Every version of every policy, as it was written: what a ticket's measurement names.
CREATE TABLE sla_policy_revisions (
    account_id uuid NOT NULL,
    policy_id uuid NOT NULL,
    revision integer NOT NULL,
    name text NOT NULL,
    filter text NOT NULL,
    schedule_id uuid,
    targets jsonb NOT NULL,
    warning_minutes integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, policy_id, revision),
    CONSTRAINT sla_policy_revisions_policy_fkey FOREIGN KEY (account_id, policy_id)
        REFERENCES sla_policies (account_id, id)
);
