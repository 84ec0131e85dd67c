//! `supportdesk.v1.ScheduleService`: business hours and the dry run of a due time (docs/sla.md,
//! "Schedules").

use tonic::{Request, Response, Status};

use super::{KeyedRequest, ListPages, answer, created, required, scope, stored_as, uuid_field};
use crate::domain::{
    InvalidValue, PageTokenKeys, Schedule, ScheduleName, StoredSchedule, Timestamp,
};
use crate::errors::{AppError, FieldViolations};
use crate::idempotency::IdempotencyPolicy;
use crate::service::{DryRunClock, ScheduleUpdate, Schedules, name_schedule_problems};
use crate::wire::convert::schedule::{raw_holidays, raw_intervals};
use crate::wire::convert::timestamp;
use crate::wire::proto::v1;

/// The name page tokens of ListSchedules carry.
const LIST: &str = "schedules";
/// The longest target a dry run takes, in minutes: a year of calendar minutes.
const MAX_DRY_RUN_MINUTES: i32 = 525_600;

pub struct ScheduleApi {
    schedules: Schedules,
    idempotency: IdempotencyPolicy,
    pages: PageTokenKeys,
}

impl ScheduleApi {
    pub fn new(schedules: Schedules, idempotency: IdempotencyPolicy, pages: PageTokenKeys) -> Self {
        Self {
            schedules,
            idempotency,
            pages,
        }
    }
}

fn respond(schedule: &StoredSchedule) -> Response<v1::Schedule> {
    Response::new(v1::Schedule::from(schedule))
}

/// The business hours a request's schedule sends; each refused part is added to `violations` as
/// `schedule.<path>` (`schedule.intervals[2].end`).
fn hours_of(schedule: &v1::Schedule, violations: &mut FieldViolations) -> Option<Schedule> {
    Schedule::parse(
        &schedule.time_zone,
        &raw_intervals(&schedule.intervals),
        &raw_holidays(&schedule.holidays),
    )
    .map_err(|problems| name_schedule_problems(violations, "schedule", &problems))
    .ok()
}

#[tonic::async_trait]
impl v1::schedule_service_server::ScheduleService for ScheduleApi {
    async fn create_schedule(
        &self,
        mut request: Request<v1::CreateScheduleRequest>,
    ) -> Result<Response<v1::Schedule>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let mut violations = FieldViolations::new();
        let Some(schedule) = request.into_inner().schedule else {
            violations.add("schedule", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let name = violations.check("schedule.name", ScheduleName::parse(&schedule.name));
        let hours = hours_of(&schedule, &mut violations);
        let (Some(name), Some(hours)) = (name, hours) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let respond_created = |schedule: &StoredSchedule| {
            created(respond(schedule), &format!("/v1/schedules/{}", schedule.id))
        };
        let store = stored_as(&respond_created);
        let outcome = self
            .schedules
            .create(&keyed.write(&store), name, hours)
            .await?;
        answer(outcome, &respond_created)
    }

    async fn get_schedule(
        &self,
        mut request: Request<v1::GetScheduleRequest>,
    ) -> Result<Response<v1::Schedule>, Status> {
        let scope = scope(&mut request)?;
        let id = uuid_field(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        Ok(respond(&self.schedules.get(&scope, id).await?))
    }

    async fn list_schedules(
        &self,
        mut request: Request<v1::ListSchedulesRequest>,
    ) -> Result<Response<v1::ListSchedulesResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let pages = ListPages::new(&self.pages, caller, LIST);
        let (page_size, after) = pages.request(message.page_size, &message.page_token)?;
        let page = self.schedules.list(&scope, page_size, after).await?;
        Ok(Response::new(v1::ListSchedulesResponse {
            schedules: page.items.iter().map(v1::Schedule::from).collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn update_schedule(
        &self,
        mut request: Request<v1::UpdateScheduleRequest>,
    ) -> Result<Response<v1::Schedule>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let Some(schedule) = message.schedule else {
            violations.add("schedule", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let id = violations.check("schedule.id", uuid_field(&schedule.id));
        let paths = message
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            violations.add(
                "update_mask",
                &InvalidValue::new(
                    "must name one or more of: name, time_zone, intervals, holidays",
                ),
            );
        }
        let mut update = ScheduleUpdate::default();
        for path in &paths {
            match path.as_str() {
                "name" => {
                    update.name =
                        violations.check("schedule.name", ScheduleName::parse(&schedule.name));
                }
                "time_zone" => update.time_zone = Some(&schedule.time_zone),
                "intervals" => update.intervals = Some(raw_intervals(&schedule.intervals)),
                "holidays" => update.holidays = Some(raw_holidays(&schedule.holidays)),
                other => violations.add(
                    "update_mask",
                    &InvalidValue::new(format!(
                        "{other:?} cannot be changed; the fields are name, time_zone, intervals, \
                         holidays"
                    )),
                ),
            }
        }
        let Some(id) = id else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        if !violations.is_empty() {
            return Err(AppError::InvalidArgument(violations).into());
        }
        let store = stored_as(&respond);
        let outcome = self
            .schedules
            .update(&keyed.write(&store), id, update)
            .await?;
        answer(outcome, &respond)
    }

    async fn delete_schedule(
        &self,
        mut request: Request<v1::DeleteScheduleRequest>,
    ) -> Result<Response<v1::DeleteScheduleResponse>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let id = uuid_field(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        let respond = |(): &()| Response::new(v1::DeleteScheduleResponse {});
        let store = stored_as(&respond);
        let outcome = self.schedules.delete(&keyed.write(&store), id).await?;
        answer(outcome, &respond)
    }

    async fn compute_due_time(
        &self,
        mut request: Request<v1::ComputeDueTimeRequest>,
    ) -> Result<Response<v1::ComputeDueTimeResponse>, Status> {
        let scope = scope(&mut request)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let start = match message.start_time {
            None => {
                violations.add("start_time", &required());
                None
            }
            Some(at) => violations.check("start_time", Timestamp::try_from(at)),
        };
        let minutes = violations.check(
            "minutes",
            u32::try_from(message.minutes)
                .ok()
                .filter(|_| message.minutes <= MAX_DRY_RUN_MINUTES)
                .ok_or_else(|| {
                    InvalidValue::new(format!(
                        "must be 0 to {MAX_DRY_RUN_MINUTES} minutes (got {})",
                        message.minutes
                    ))
                }),
        );
        let clock = match message.clock {
            None => Some(DryRunClock::Calendar),
            Some(v1::compute_due_time_request::Clock::ScheduleId(id)) => violations
                .check("schedule_id", uuid_field(&id))
                .map(DryRunClock::Saved),
            Some(v1::compute_due_time_request::Clock::Schedule(schedule)) => {
                // Not stored, so not required; a name sent is still held to a name's rules.
                if !schedule.name.is_empty() {
                    violations.check("schedule.name", ScheduleName::parse(&schedule.name));
                }
                hours_of(&schedule, &mut violations)
                    .map(|hours| DryRunClock::Unsaved(Box::new(hours)))
            }
        };
        let (Some(start), Some(minutes), Some(clock), true) =
            (start, minutes, clock, violations.is_empty())
        else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let start = start.get();
        let due = self
            .schedules
            .due_time(&scope, clock, start, minutes)
            .await?;
        Ok(Response::new(v1::ComputeDueTimeResponse {
            due_time: Some(timestamp(due.due_at)),
            time_zone: due.time_zone.unwrap_or_default(),
            calendar_minutes: (due.due_at - start).num_minutes(),
        }))
    }
}
