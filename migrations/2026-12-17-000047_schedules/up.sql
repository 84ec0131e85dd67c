-- Business hours (issue 69, item 1): an account's schedules, which SLA targets in business time
-- are measured on (docs/sla.md). The intervals and holidays are stored as the client listed them
-- and parsed again by the service on every read (domain/schedule), so the rules live in one place.
CREATE TABLE schedules (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    time_zone text NOT NULL CHECK (char_length(time_zone) BETWEEN 1 AND 64),
    -- [{"weekday": 1, "start": "09:00", "end": "17:00"}, ...], ISO weekdays.
    intervals jsonb NOT NULL
        CONSTRAINT schedules_intervals_list CHECK (
            jsonb_typeof(intervals) = 'array' AND jsonb_array_length(intervals) BETWEEN 1 AND 32),
    -- [{"name": "Christmas", "first": "2026-12-24", "last": "2026-12-26"}, ...].
    holidays jsonb NOT NULL DEFAULT '[]'
        CONSTRAINT schedules_holidays_list CHECK (
            jsonb_typeof(holidays) = 'array' AND jsonb_array_length(holidays) <= 200),
    -- 1 when created, one more with each change: what an SLA measurement names it by.
    revision integer NOT NULL DEFAULT 1 CHECK (revision >= 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- A deleted schedule keeps its row: what names it stays readable.
    deleted_at timestamptz,
    -- Target of the tenant-consistent foreign keys of the SLA policies.
    CONSTRAINT schedules_account_id_id_key UNIQUE (account_id, id)
);
-- CreateSchedule/UpdateSchedule: a live schedule's name is unique in its account, whatever its
-- case.
CREATE UNIQUE INDEX schedules_account_name_idx ON schedules (account_id, lower(name))
    WHERE deleted_at IS NULL;
-- ListSchedules: the live schedules, oldest first.
CREATE INDEX schedules_account_created_idx ON schedules (account_id, created_at, id)
    WHERE deleted_at IS NULL;
