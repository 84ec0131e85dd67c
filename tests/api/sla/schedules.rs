//! ScheduleService: business hours as admins write them, as PostgreSQL holds them, and the due
//! times agents compute on them.

use chrono::{DateTime, TimeZone, Utc};
use diesel::sql_types::{BigInt, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use serde_json::json;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::cross_cutting::tenancy::{office_hours, schedules};
use crate::support::{TestApp, assert_reason, violated_fields};

fn interval(weekday: v1::Weekday, start: &str, end: &str) -> v1::BusinessInterval {
    v1::BusinessInterval {
        weekday: weekday.into(),
        start: start.to_owned(),
        end: end.to_owned(),
    }
}

fn holiday(name: &str, first: &str, last: &str) -> v1::Holiday {
    v1::Holiday {
        name: name.to_owned(),
        first: first.to_owned(),
        last: last.to_owned(),
    }
}

fn at(instant: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: instant.timestamp(),
        nanos: 0,
    })
}

fn instant(timestamp: Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let timestamp = timestamp.expect("a time");
    DateTime::from_timestamp(timestamp.seconds, u32::try_from(timestamp.nanos).unwrap()).unwrap()
}

async fn create(app: &TestApp, schedule: v1::Schedule) -> Result<v1::Schedule, tonic::Status> {
    schedules(app)
        .create_schedule(app.as_admin(v1::CreateScheduleRequest {
            schedule: Some(schedule),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn update(
    app: &TestApp,
    schedule: v1::Schedule,
    paths: &[&str],
) -> Result<v1::Schedule, tonic::Status> {
    schedules(app)
        .update_schedule(app.as_admin(v1::UpdateScheduleRequest {
            schedule: Some(schedule),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|path| (*path).to_owned()).collect(),
            }),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn due_time(
    app: &TestApp,
    clock: Option<v1::compute_due_time_request::Clock>,
    start: DateTime<Utc>,
    minutes: i32,
) -> Result<v1::ComputeDueTimeResponse, tonic::Status> {
    schedules(app)
        .compute_due_time(app.as_admin(v1::ComputeDueTimeRequest {
            clock,
            start_time: at(start),
            minutes,
        }))
        .await
        .map(tonic::Response::into_inner)
}

#[derive(Debug, PartialEq, diesel::QueryableByName)]
struct StoredSchedule {
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
    #[diesel(sql_type = Nullable<Timestamptz>)]
    deleted_at: Option<DateTime<Utc>>,
}

async fn stored(app: &TestApp, id: &str) -> StoredSchedule {
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "SELECT name, time_zone, intervals, holidays, revision, deleted_at \
         FROM schedules WHERE id = $1::uuid",
    )
    .bind::<Text, _>(id)
    .get_result(&mut conn)
    .await
    .expect("the stored schedule")
}

#[derive(diesel::QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

async fn stored_count(app: &TestApp) -> i64 {
    let mut conn = app.database.connect().await;
    let counted: Counted =
        diesel::sql_query("SELECT count(*) AS count FROM schedules WHERE account_id = $1")
            .bind::<diesel::sql_types::Uuid, _>(app.admin.account_id.as_uuid())
            .get_result(&mut conn)
            .await
            .unwrap();
    counted.count
}

/// A team in Berlin: weekdays 09:00 to 17:00, a night shift from Friday 22:00 to Saturday 02:00,
/// Christmas off.
fn berlin_team() -> v1::Schedule {
    let mut schedule = office_hours("  Berlin team ");
    schedule.time_zone = "europe/berlin".to_owned();
    schedule
        .intervals
        .push(interval(v1::Weekday::Friday, "22:00", "02:00"));
    schedule.holidays = vec![
        holiday("Christmas", "2026-12-24", "2026-12-26"),
        holiday("", "2027-01-01", ""),
    ];
    schedule
}

#[tokio::test]
async fn an_admin_creates_a_schedule_which_postgresql_holds_as_sent_and_agents_read_back() {
    let app = TestApp::spawn().await;
    let created = create(&app, berlin_team()).await.expect("created");
    assert_eq!(created.name, "Berlin team");
    assert_eq!(
        created.time_zone, "Europe/Berlin",
        "as the tz database spells it"
    );
    assert_eq!(created.revision, 1);
    assert_eq!(created.intervals.len(), 6);
    assert_eq!(
        created.intervals[5],
        interval(v1::Weekday::Friday, "22:00", "02:00")
    );
    assert_eq!(
        created.holidays,
        [
            holiday("Christmas", "2026-12-24", "2026-12-26"),
            holiday("", "2027-01-01", "2027-01-01"),
        ]
    );
    assert!(created.delete_time.is_none());

    let row = stored(&app, &created.id).await;
    assert_eq!(row.name, "Berlin team");
    assert_eq!(row.time_zone, "Europe/Berlin");
    assert_eq!(row.revision, 1);
    assert_eq!(
        row.intervals[5],
        json!({"weekday": 5, "start": "22:00", "end": "02:00"})
    );
    assert_eq!(
        row.holidays,
        json!([
            {"name": "Christmas", "first": "2026-12-24", "last": "2026-12-26"},
            {"name": "", "first": "2027-01-01", "last": "2027-01-01"},
        ])
    );

    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let read = schedules(&app)
        .get_schedule(agent.request(v1::GetScheduleRequest {
            id: created.id.clone(),
        }))
        .await
        .expect("an agent reads it")
        .into_inner();
    assert_eq!(read, created);
    let listed = schedules(&app)
        .list_schedules(agent.request(v1::ListSchedulesRequest::default()))
        .await
        .expect("an agent lists them")
        .into_inner();
    assert_eq!(listed.schedules, [created]);
}

#[tokio::test]
async fn every_refused_part_of_a_schedule_is_named_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let mut schedule = office_hours("");
    schedule.time_zone = "Mars/Olympus_Mons".to_owned();
    schedule.intervals[1].end = "5pm".to_owned();
    schedule
        .intervals
        .push(interval(v1::Weekday::Monday, "16:00", "18:00"));
    schedule.holidays = vec![holiday("Backwards", "2026-12-26", "2026-12-24")];
    let refused = create(&app, schedule).await.expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&refused);
    fields.sort();
    assert_eq!(
        fields,
        [
            "schedule.holidays[0].last",
            "schedule.intervals[1].end",
            "schedule.intervals[5]",
            "schedule.name",
            "schedule.time_zone",
        ]
    );
    assert_eq!(stored_count(&app).await, 0);
}

#[tokio::test]
async fn an_update_replaces_the_parts_its_mask_names_parses_the_whole_and_counts_a_revision() {
    let app = TestApp::spawn().await;
    let created = create(&app, berlin_team()).await.expect("created");

    let moved = update(
        &app,
        v1::Schedule {
            id: created.id.clone(),
            time_zone: "America/Sao_Paulo".to_owned(),
            ..Default::default()
        },
        &["time_zone"],
    )
    .await
    .expect("moved to Sao Paulo");
    assert_eq!(moved.time_zone, "America/Sao_Paulo");
    assert_eq!(
        moved.intervals, created.intervals,
        "the mask named only the zone"
    );
    assert_eq!(moved.holidays, created.holidays);
    assert_eq!(moved.revision, 2);
    let row = stored(&app, &created.id).await;
    assert_eq!(
        (row.time_zone.as_str(), row.revision),
        ("America/Sao_Paulo", 2)
    );

    // A list replaces the stored one whole; of two intervals that overlap, the later is named.
    let refused = update(
        &app,
        v1::Schedule {
            id: created.id.clone(),
            intervals: vec![
                interval(v1::Weekday::Saturday, "00:00", "24:00"),
                interval(v1::Weekday::Saturday, "08:00", "12:00"),
            ],
            ..Default::default()
        },
        &["intervals"],
    )
    .await
    .expect_err("overlapping");
    assert_eq!(violated_fields(&refused), ["schedule.intervals[1]"]);
    let row = stored(&app, &created.id).await;
    assert_eq!(row.revision, 2, "nothing written");
    assert_eq!(row.intervals.as_array().map(Vec::len), Some(6));

    let cleared = update(
        &app,
        v1::Schedule {
            id: created.id.clone(),
            ..Default::default()
        },
        &["holidays"],
    )
    .await
    .expect("holidays cleared");
    assert!(cleared.holidays.is_empty());
    assert_eq!(stored(&app, &created.id).await.holidays, json!([]));
}

#[tokio::test]
async fn a_name_is_unique_among_live_schedules_whatever_its_case_and_free_again_once_deleted() {
    let app = TestApp::spawn().await;
    let office = create(&app, office_hours("Office")).await.expect("created");
    let taken = create(&app, office_hours("OFFICE"))
        .await
        .expect_err("taken");
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert_reason(&taken, Reason::ScheduleNameTaken);

    schedules(&app)
        .delete_schedule(app.as_admin(v1::DeleteScheduleRequest {
            id: office.id.clone(),
        }))
        .await
        .expect("deleted");
    assert!(stored(&app, &office.id).await.deleted_at.is_some());
    let again = create(&app, office_hours("office"))
        .await
        .expect("free again");
    assert_ne!(again.id, office.id);

    // The deleted row stays readable, and takes no change and no dry run.
    let read = schedules(&app)
        .get_schedule(app.as_admin(v1::GetScheduleRequest {
            id: office.id.clone(),
        }))
        .await
        .expect("still readable")
        .into_inner();
    assert!(read.delete_time.is_some());
    let listed = schedules(&app)
        .list_schedules(app.as_admin(v1::ListSchedulesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.schedules, [again]);
    let renamed = update(
        &app,
        v1::Schedule {
            id: office.id.clone(),
            name: "Revived".to_owned(),
            ..Default::default()
        },
        &["name"],
    )
    .await
    .expect_err("deleted");
    assert_reason(&renamed, Reason::ScheduleNotFound);
    let dry_run = due_time(
        &app,
        Some(v1::compute_due_time_request::Clock::ScheduleId(office.id)),
        Utc::now(),
        60,
    )
    .await
    .expect_err("deleted");
    assert_reason(&dry_run, Reason::ScheduleNotFound);
}

#[tokio::test]
async fn an_account_has_at_most_100_live_schedules() {
    let app = TestApp::spawn().await;
    for number in 0..100 {
        create(&app, office_hours(&format!("Schedule {number}")))
            .await
            .expect("within the limit");
    }
    let refused = create(&app, office_hours("One too many"))
        .await
        .expect_err("over the limit");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_reason(&refused, Reason::ScheduleLimit);
    assert_eq!(stored_count(&app).await, 100);
}

#[tokio::test]
async fn the_dry_run_counts_business_minutes_across_a_weekend_a_dst_change_and_a_holiday() {
    let app = TestApp::spawn().await;
    let office = create(&app, office_hours("Berlin office"))
        .await
        .expect("created");
    // Friday 2026-10-23 16:30 in Berlin (summer time, UTC+2). Berlin leaves summer time on
    // Sunday the 25th, so Monday 10:30 is 09:30 UTC.
    let friday = Utc.with_ymd_and_hms(2026, 10, 23, 14, 30, 0).unwrap();
    let saved = Some(v1::compute_due_time_request::Clock::ScheduleId(
        office.id.clone(),
    ));
    let answer = due_time(&app, saved.clone(), friday, 120)
        .await
        .expect("due");
    let monday = Utc.with_ymd_and_hms(2026, 10, 26, 9, 30, 0).unwrap();
    assert_eq!(instant(answer.due_time), monday);
    assert_eq!(answer.time_zone, "Europe/Berlin");
    assert_eq!(answer.calendar_minutes, (monday - friday).num_minutes());

    // The same schedule sent inline, unsaved, with Monday off: Tuesday 10:30.
    let mut with_holiday = office_hours("");
    with_holiday.holidays = vec![holiday("Bridge day", "2026-10-26", "")];
    let inline = Some(v1::compute_due_time_request::Clock::Schedule(with_holiday));
    let answer = due_time(&app, inline, friday, 120).await.expect("due");
    assert_eq!(
        instant(answer.due_time),
        Utc.with_ymd_and_hms(2026, 10, 27, 9, 30, 0).unwrap()
    );

    // Without a schedule, calendar minutes.
    let answer = due_time(&app, None, friday, 120).await.expect("due");
    assert_eq!(
        instant(answer.due_time),
        Utc.with_ymd_and_hms(2026, 10, 23, 16, 30, 0).unwrap()
    );
    assert_eq!(answer.time_zone, "");

    // A year of business minutes is not reached within the two-year horizon.
    let beyond = due_time(&app, saved, friday, 525_600)
        .await
        .expect_err("beyond the horizon");
    assert_eq!(beyond.code(), Code::FailedPrecondition);
    assert_reason(&beyond, Reason::DueTimeBeyondHorizon);
}

#[tokio::test]
async fn a_dry_run_names_what_it_refuses() {
    let app = TestApp::spawn().await;
    let mut broken = office_hours("");
    broken.intervals[0].weekday = 0;
    let refused = schedules(&app)
        .compute_due_time(app.as_admin(v1::ComputeDueTimeRequest {
            clock: Some(v1::compute_due_time_request::Clock::Schedule(broken)),
            start_time: None,
            minutes: -5,
        }))
        .await
        .expect_err("refused");
    let mut fields = violated_fields(&refused);
    fields.sort();
    assert_eq!(
        fields,
        ["minutes", "schedule.intervals[0].weekday", "start_time"]
    );
}

/// `count` intervals that do not overlap: five an hour long each day, Monday first.
fn separate_intervals(count: usize) -> Vec<v1::BusinessInterval> {
    (0..count)
        .map(|index| {
            let hour = (index % 5) * 4;
            v1::BusinessInterval {
                weekday: i32::try_from(index / 5 + 1).unwrap(),
                start: format!("{hour:02}:00"),
                end: format!("{:02}:00", hour + 1),
            }
        })
        .collect()
}

/// `count` single-day holidays from 2027-01-01 on.
fn separate_holidays(count: usize) -> Vec<v1::Holiday> {
    let first = chrono::NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
    (0..count)
        .map(|index| {
            let day = first + chrono::Days::new(u64::try_from(index).unwrap());
            holiday("", &day.to_string(), "")
        })
        .collect()
}

/// The declared bounds the declared-rules test cannot try from a rule alone
/// (`TRIED_BY_BEHAVIOUR_TESTS`): 32 intervals and 200 holidays are taken, one more of each is
/// refused naming the list; a zone name longer than 64 characters is refused naming the field.
#[tokio::test]
async fn the_bounds_of_a_schedule_hold_at_their_limits() {
    let app = TestApp::spawn().await;
    let mut full = office_hours("Full");
    full.intervals = separate_intervals(32);
    full.holidays = separate_holidays(200);
    let created = create(&app, full.clone()).await.expect("at the limits");
    assert_eq!(created.intervals.len(), 32);
    assert_eq!(created.holidays.len(), 200);

    let mut too_many = full.clone();
    too_many.name = "Too many".to_owned();
    too_many.intervals = separate_intervals(33);
    too_many.holidays = separate_holidays(201);
    too_many.time_zone = format!("Europe/{}", "B".repeat(58));
    let refused = create(&app, too_many).await.expect_err("past the limits");
    let mut fields = violated_fields(&refused);
    fields.sort();
    assert_eq!(
        fields,
        [
            "schedule.holidays",
            "schedule.intervals",
            "schedule.time_zone"
        ]
    );
    assert_eq!(stored_count(&app).await, 1);
}
