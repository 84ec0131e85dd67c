//! The `schedules` table: an account's business hours (docs/sla.md). The intervals and holidays
//! are stored as the client listed them and parsed again on every read, so the rules that make a
//! schedule valid live only in `domain::schedule`.

use chrono::{DateTime, Utc};
use diesel::result::Error as DieselError;
use diesel::sql_types::{BigInt, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::corrupt;
use crate::domain::{
    InvalidValue, PageCursor, RawHoliday, RawInterval, Schedule, ScheduleName, StoredSchedule,
};
use crate::errors::AppResult;

const SCHEDULE_COLUMNS: &str =
    "id, name, time_zone, intervals, holidays, revision, created_at, updated_at, deleted_at";

#[derive(Debug, diesel::QueryableByName)]
pub struct ScheduleRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    time_zone: String,
    #[diesel(sql_type = Jsonb)]
    intervals: serde_json::Value,
    #[diesel(sql_type = Jsonb)]
    holidays: serde_json::Value,
    #[diesel(sql_type = Integer)]
    revision: i32,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    deleted_at: Option<DateTime<Utc>>,
}

/// One element of the `intervals` column.
#[derive(Debug, Serialize, Deserialize)]
struct StoredInterval {
    weekday: i32,
    start: String,
    end: String,
}

/// One element of the `holidays` column.
#[derive(Debug, Serialize, Deserialize)]
struct StoredHoliday {
    #[serde(default)]
    name: String,
    first: String,
    last: String,
}

#[derive(Debug, diesel::QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// A stored list, read back.
fn list_of<T: serde::de::DeserializeOwned>(
    column: &str,
    value: serde_json::Value,
) -> AppResult<Vec<T>> {
    serde_json::from_value(value)
        .map_err(|error| corrupt(column, InvalidValue::new(error.to_string())))
}

/// The stored form of a schedule's lists.
fn stored_lists(hours: &Schedule) -> (serde_json::Value, serde_json::Value) {
    let intervals: Vec<StoredInterval> = hours
        .intervals()
        .iter()
        .map(|interval| StoredInterval {
            weekday: i32::try_from(interval.weekday().number_from_monday()).unwrap_or(0),
            start: interval.start().to_string(),
            end: interval.end().to_string(),
        })
        .collect();
    let holidays: Vec<StoredHoliday> = hours
        .holidays()
        .iter()
        .map(|holiday| StoredHoliday {
            name: holiday.name().to_owned(),
            first: holiday.first().to_string(),
            last: holiday.last().to_string(),
        })
        .collect();
    (
        serde_json::to_value(intervals).unwrap_or_default(),
        serde_json::to_value(holidays).unwrap_or_default(),
    )
}

impl ScheduleRow {
    fn into_domain(self) -> AppResult<StoredSchedule> {
        let intervals: Vec<StoredInterval> = list_of("schedules.intervals", self.intervals)?;
        let holidays: Vec<StoredHoliday> = list_of("schedules.holidays", self.holidays)?;
        let intervals: Vec<RawInterval<'_>> = intervals
            .iter()
            .map(|interval| RawInterval {
                weekday: interval.weekday,
                start: &interval.start,
                end: &interval.end,
            })
            .collect();
        let holidays: Vec<RawHoliday<'_>> = holidays
            .iter()
            .map(|holiday| RawHoliday {
                name: &holiday.name,
                first: &holiday.first,
                last: &holiday.last,
            })
            .collect();
        let hours =
            Schedule::parse(&self.time_zone, &intervals, &holidays).map_err(|problems| {
                let described: Vec<String> = problems
                    .iter()
                    .map(|problem| format!("{}: {}", problem.field.path(), problem.problem))
                    .collect();
                corrupt("schedules", InvalidValue::new(described.join("; ")))
            })?;
        Ok(StoredSchedule {
            id: self.id,
            name: ScheduleName::parse(&self.name)
                .map_err(|problem| corrupt("schedules.name", problem))?,
            hours,
            revision: self.revision,
            created_at: self.created_at,
            updated_at: self.updated_at,
            deleted_at: self.deleted_at,
        })
    }

    fn all(rows: Vec<Self>) -> AppResult<Vec<StoredSchedule>> {
        rows.into_iter().map(Self::into_domain).collect()
    }

    /// Serializes the creations of one account's schedules, so that the count the limit reads
    /// is not stale by the time the new row commits.
    pub async fn lock_account_creations(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
    ) -> AppResult<()> {
        super::serialize_account_creations(conn, account_id, 69).await
    }

    /// How many live schedules the account has.
    pub async fn count_live(conn: &mut AsyncPgConnection, account_id: Uuid) -> AppResult<i64> {
        let counted: Counted = diesel::sql_query(
            "SELECT count(*) AS count FROM schedules WHERE account_id = $1 AND deleted_at IS NULL",
        )
        .bind::<SqlUuid, _>(account_id)
        .get_result(conn)
        .await?;
        Ok(counted.count)
    }

    /// Inserts a schedule; the unique violation of `schedules_account_name_idx` (a live schedule
    /// of the same name) is left to the caller, which names the field.
    pub async fn insert(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        name: &ScheduleName,
        hours: &Schedule,
    ) -> Result<AppResult<StoredSchedule>, DieselError> {
        let (intervals, holidays) = stored_lists(hours);
        let row: ScheduleRow = diesel::sql_query(format!(
            "INSERT INTO schedules (id, account_id, name, time_zone, intervals, holidays) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SCHEDULE_COLUMNS}"
        ))
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .bind::<SqlUuid, _>(account_id)
        .bind::<Text, _>(name.as_str())
        .bind::<Text, _>(hours.time_zone())
        .bind::<Jsonb, _>(&intervals)
        .bind::<Jsonb, _>(&holidays)
        .get_result(conn)
        .await?;
        Ok(row.into_domain())
    }

    /// The schedule, deleted or not.
    pub async fn find_in_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<StoredSchedule>> {
        let rows: Vec<ScheduleRow> = diesel::sql_query(format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE account_id = $1 AND id = $2"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .load(conn)
        .await?;
        Ok(Self::all(rows)?.pop())
    }

    /// The live schedule, locked `FOR NO KEY UPDATE` for a change (`FOR UPDATE` to delete it).
    pub async fn lock_live(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
        deleting: bool,
    ) -> AppResult<Option<StoredSchedule>> {
        let strength = if deleting {
            "FOR UPDATE"
        } else {
            "FOR NO KEY UPDATE"
        };
        let rows: Vec<ScheduleRow> = diesel::sql_query(format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules \
             WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL {strength}"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .load(conn)
        .await?;
        Ok(Self::all(rows)?.pop())
    }

    /// Whether `id` is a live schedule of the account, holding it `FOR KEY SHARE` until the
    /// transaction ends: a policy written against it goes on beside its changes, and its
    /// deletion (`FOR UPDATE`) waits for the policy, then sees it.
    pub async fn share_live(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<bool> {
        let counted: Counted = diesel::sql_query(
            "SELECT count(*) AS count FROM (SELECT 1 FROM schedules \
             WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL FOR KEY SHARE) AS live",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .get_result(conn)
        .await?;
        Ok(counted.count > 0)
    }

    /// The live schedules, oldest first.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        after: Option<PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<StoredSchedule>> {
        let rows: Vec<ScheduleRow> = diesel::sql_query(format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules \
             WHERE account_id = $1 AND deleted_at IS NULL \
               AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3)) \
             ORDER BY created_at, id LIMIT $4"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<Nullable<Timestamptz>, _>(after.as_ref().map(|cursor| cursor.at))
        .bind::<SqlUuid, _>(after.as_ref().map_or(Uuid::nil(), |cursor| cursor.id))
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
        Self::all(rows)
    }

    /// Writes a locked schedule's new name and hours, one more revision; the unique violation of
    /// the name is left to the caller.
    pub async fn update(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
        name: &ScheduleName,
        hours: &Schedule,
    ) -> Result<AppResult<StoredSchedule>, DieselError> {
        let (intervals, holidays) = stored_lists(hours);
        let row: ScheduleRow = diesel::sql_query(format!(
            "UPDATE schedules SET name = $3, time_zone = $4, intervals = $5, holidays = $6, \
                    revision = revision + 1, updated_at = now() \
             WHERE account_id = $1 AND id = $2 RETURNING {SCHEDULE_COLUMNS}"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(name.as_str())
        .bind::<Text, _>(hours.time_zone())
        .bind::<Jsonb, _>(&intervals)
        .bind::<Jsonb, _>(&holidays)
        .get_result(conn)
        .await?;
        Ok(row.into_domain())
    }

    /// Marks a locked schedule deleted.
    pub async fn soft_delete(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<()> {
        diesel::sql_query(
            "UPDATE schedules SET deleted_at = now(), updated_at = now() \
             WHERE account_id = $1 AND id = $2",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .execute(conn)
        .await?;
        Ok(())
    }
}
