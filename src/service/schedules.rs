//! Business hours as admins manage them and agents read them (docs/sla.md, "Schedules"): create,
//! read, list, change (one more revision each time), delete (soft), and the dry run that answers
//! when a target is due under a schedule.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Page, on_unique_violation, paginate, rows_to_fetch};
use crate::db::models::{ScheduleRow, SlaPolicyRow};
use crate::db::{self, PgPool};
use crate::domain::{
    Clock, InvalidValue, MAX_SCHEDULES_PER_ACCOUNT, PageCursor, PageSize, RawHoliday, RawInterval,
    Schedule, ScheduleError, ScheduleName, ScheduleProblem, StoredSchedule,
};
use crate::errors::{
    AppError, AppResult, FieldViolations, PreconditionViolation, Reason, Resource,
};
use crate::idempotency::{self, KeyedWrite, Outcome, as_is};
use crate::scope::RequestScope;

/// The unique index that holds a live schedule's name unique in its account.
const NAME_INDEX: &str = "schedules_account_name_idx";

/// A change of a schedule, as the mask named its fields; a list replaces the stored one whole.
#[derive(Clone, Debug, Default)]
pub struct ScheduleUpdate<'r> {
    pub name: Option<ScheduleName>,
    pub time_zone: Option<&'r str>,
    pub intervals: Option<Vec<RawInterval<'r>>>,
    pub holidays: Option<Vec<RawHoliday<'r>>>,
}

/// The clock a dry run measures a target on.
#[derive(Clone, Debug)]
pub enum DryRunClock {
    Calendar,
    /// A live schedule of the caller's account.
    Saved(Uuid),
    /// A schedule sent with the request, not stored.
    Unsaved(Box<Schedule>),
}

/// What a dry run answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueTime {
    pub due_at: DateTime<Utc>,
    /// The zone of the schedule used; `None` for calendar time.
    pub time_zone: Option<String>,
}

#[derive(Clone)]
pub struct Schedules {
    pool: PgPool,
}

fn name_taken(name: &ScheduleName) -> AppError {
    AppError::AlreadyExists {
        reason: Reason::ScheduleNameTaken,
        message: format!(
            "name: the account already has a schedule named {:?}",
            name.as_str()
        ),
    }
}

/// Adds the refused parts of a schedule sent as `prefix` (`schedule`) to `violations`, each
/// named by its path (`schedule.intervals[2].end`).
pub fn name_schedule_problems(
    violations: &mut FieldViolations,
    prefix: &str,
    problems: &[ScheduleProblem],
) {
    for problem in problems {
        violations.add(
            format!("{prefix}.{}", problem.field.path()),
            &problem.problem,
        );
    }
}

impl Schedules {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates a schedule, unless the account has [`MAX_SCHEDULES_PER_ACCOUNT`] live ones or a
    /// live schedule of the same name.
    pub async fn create(
        &self,
        write: &KeyedWrite<'_, StoredSchedule>,
        name: ScheduleName,
        hours: Schedule,
    ) -> AppResult<Outcome<StoredSchedule>> {
        let account_id = write.caller()?.account_id.as_uuid();
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            ScheduleRow::lock_account_creations(conn, account_id).await?;
            let count = ScheduleRow::count_live(conn, account_id).await?;
            if count >= MAX_SCHEDULES_PER_ACCOUNT {
                return Err(AppError::account_limit(
                    Reason::ScheduleLimit,
                    account_id,
                    count,
                    MAX_SCHEDULES_PER_ACCOUNT,
                    "schedules",
                ));
            }
            ScheduleRow::insert(conn, account_id, &name, &hours)
                .await
                .map_err(|error| on_unique_violation(error, NAME_INDEX, name_taken(&name)))?
        })
        .await
    }

    pub async fn get(&self, scope: &RequestScope, id: Uuid) -> AppResult<StoredSchedule> {
        let account_id = scope.caller()?.account_id.as_uuid();
        db::with_connection(&self.pool, async |conn| {
            ScheduleRow::find_in_account(conn, account_id, id).await
        })
        .await?
        .ok_or_else(|| AppError::not_found(Resource::Schedule, id))
    }

    /// The live schedules, oldest first.
    pub async fn list(
        &self,
        scope: &RequestScope,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<StoredSchedule>> {
        let account_id = scope.caller()?.account_id.as_uuid();
        let rows = db::with_connection(&self.pool, async |conn| {
            ScheduleRow::list_for_account(conn, account_id, after, rows_to_fetch(page_size)).await
        })
        .await?;
        Ok(paginate(rows, page_size, |schedule| {
            PageCursor::at(schedule.created_at, schedule.id)
        }))
    }

    /// Changes a live schedule: the parts the update names replace the stored ones, and the
    /// whole is parsed again (a new zone with the stored intervals, say), naming each refused
    /// part as `schedule.<path>`.
    pub async fn update(
        &self,
        write: &KeyedWrite<'_, StoredSchedule>,
        id: Uuid,
        update: ScheduleUpdate<'_>,
    ) -> AppResult<Outcome<StoredSchedule>> {
        let account_id = write.caller()?.account_id.as_uuid();
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            let current = ScheduleRow::lock_live(conn, account_id, id, false)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::Schedule, id))?;
            let hours = current
                .hours
                .revised(
                    update.time_zone,
                    update.intervals.as_deref(),
                    update.holidays.as_deref(),
                )
                .map_err(|problems| {
                    let mut violations = FieldViolations::new();
                    name_schedule_problems(&mut violations, "schedule", &problems);
                    AppError::InvalidArgument(violations)
                })?;
            let name = update.name.clone().unwrap_or(current.name);
            ScheduleRow::update(conn, account_id, id, &name, &hours)
                .await
                .map_err(|error| on_unique_violation(error, NAME_INDEX, name_taken(&name)))?
        })
        .await
    }

    /// Deletes a schedule (its row stays), unless a live SLA policy measures on it: the lock
    /// waits for a policy being written against it, whose row the count then sees.
    pub async fn delete(&self, write: &KeyedWrite<'_, ()>, id: Uuid) -> AppResult<Outcome<()>> {
        let account_id = write.caller()?.account_id.as_uuid();
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            ScheduleRow::lock_live(conn, account_id, id, true)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::Schedule, id))?;
            let policies = SlaPolicyRow::count_using_schedule(conn, account_id, id).await?;
            if policies > 0 {
                return Err(AppError::FailedPrecondition {
                    reason: Reason::ScheduleInUse,
                    message: format!(
                        "{policies} SLA policies measure on the schedule; change or delete them first"
                    ),
                    violations: vec![PreconditionViolation {
                        kind: "SCHEDULE_IN_USE".to_owned(),
                        subject: format!("schedules/{id}"),
                        description: format!("{policies} live SLA policies measure on it"),
                    }],
                });
            }
            ScheduleRow::soft_delete(conn, account_id, id).await
        })
        .await
    }

    /// When `minutes` of `clock` have elapsed since `start`: the dry run of a target. Writes
    /// nothing; a saved schedule must be live.
    pub async fn due_time(
        &self,
        scope: &RequestScope,
        clock: DryRunClock,
        start: DateTime<Utc>,
        minutes: u32,
    ) -> AppResult<DueTime> {
        let hours = match clock {
            DryRunClock::Calendar => None,
            DryRunClock::Unsaved(hours) => Some(*hours),
            DryRunClock::Saved(id) => {
                let stored = self.get(scope, id).await?;
                if stored.deleted_at.is_some() {
                    return Err(AppError::not_found(Resource::Schedule, id));
                }
                Some(stored.hours)
            }
        };
        let clock = hours.as_ref().map_or(Clock::Calendar, Clock::Business);
        let due_at = clock.due_at(start, minutes).map_err(|error| match error {
            ScheduleError::BeyondHorizon { .. } => AppError::FailedPrecondition {
                reason: Reason::DueTimeBeyondHorizon,
                message: error.to_string(),
                violations: vec![PreconditionViolation {
                    kind: "DUE_TIME_BEYOND_HORIZON".to_owned(),
                    subject: "minutes".to_owned(),
                    description: error.to_string(),
                }],
            },
            ScheduleError::OutOfRange { .. } | ScheduleError::SpanTooLong => {
                AppError::invalid_field("start_time", &InvalidValue::new(error.to_string()))
            }
        })?;
        Ok(DueTime {
            due_at,
            time_zone: hours.map(|hours| hours.time_zone().to_owned()),
        })
    }
}
