//! Property tests of the business-time arithmetic against a brute-force reference that steps real
//! minutes one at a time, reading each one's wall-clock time from jiff, and decides from the raw
//! intervals and holidays alone whether it is open: none of the walk's stretches, day numbers or
//! merged holidays. Starts and spans are whole minutes near DST changes of three zones with
//! different rules, and a few weeks long at most so the suite runs in seconds unoptimised.

use chrono::{DateTime, Days, NaiveDate, Utc};
use jiff::civil::Weekday as JiffWeekday;
use jiff::tz::{TimeZone, TimeZoneDatabase};
use proptest::prelude::*;

use super::{RawHoliday, RawInterval, Schedule, ScheduleField};

/// A zone and one of its DST changes (local date), which the generated cases surround.
const CHANGES: &[(&str, &str)] = &[
    // Last Sunday of March and of October, at 02:00 / 03:00.
    ("Europe/Berlin", "2024-03-31"),
    ("Europe/Berlin", "2024-10-27"),
    // Before 2019: summer time began at local midnight (no 00:00 that day) and ended at midnight
    // (23:00 to 24:00 of the Saturday twice).
    ("America/Sao_Paulo", "2017-10-15"),
    ("America/Sao_Paulo", "2018-02-18"),
    // A 30-minute change: 02:00 back to 01:30 in April, 02:00 on to 02:30 in October.
    ("Australia/Lord_Howe", "2024-04-07"),
    ("Australia/Lord_Howe", "2024-10-06"),
];

const MINUTE: i64 = 60;

/// The test's own reading of a schedule: the raw parts, as minutes and dates.
#[derive(Clone, Debug)]
struct Spec {
    zone: String,
    /// (ISO weekday 1–7, start minute, end minute 1–1440), end at or before start crossing midnight.
    intervals: Vec<(i32, u32, u32)>,
    /// Inclusive.
    holidays: Vec<(NaiveDate, NaiveDate)>,
}

impl Spec {
    fn schedule(&self) -> Result<Schedule, Vec<super::ScheduleProblem>> {
        let times: Vec<(String, String)> = self
            .intervals
            .iter()
            .map(|&(_, start, end)| (clock(start), clock(end)))
            .collect();
        let intervals: Vec<RawInterval<'_>> = self
            .intervals
            .iter()
            .zip(&times)
            .map(|(&(weekday, _, _), (start, end))| RawInterval {
                weekday,
                start,
                end,
            })
            .collect();
        let dates: Vec<(String, String)> = self
            .holidays
            .iter()
            .map(|(first, last)| (first.to_string(), last.to_string()))
            .collect();
        let holidays: Vec<RawHoliday<'_>> = dates
            .iter()
            .map(|(first, last)| RawHoliday {
                name: "",
                first,
                last,
            })
            .collect();
        Schedule::parse(&self.zone, &intervals, &holidays)
    }
}

fn clock(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The brute-force reference: one real minute at a time.
struct Reference {
    zone: TimeZone,
    spec: Spec,
}

impl Reference {
    fn new(spec: Spec) -> Self {
        let zone = TimeZoneDatabase::bundled().get(&spec.zone).unwrap();
        Self { zone, spec }
    }

    /// Whether the real minute starting at `second` (Unix seconds) is open.
    fn is_open(&self, second: i64) -> bool {
        let wall = self
            .zone
            .to_datetime(jiff::Timestamp::from_second(second).unwrap());
        let minute = u32::try_from(i32::from(wall.hour()) * 60 + i32::from(wall.minute())).unwrap();
        let today = NaiveDate::from_ymd_opt(
            i32::from(wall.year()),
            u32::try_from(wall.month()).unwrap(),
            u32::try_from(wall.day()).unwrap(),
        )
        .unwrap();
        let yesterday = today.checked_sub_days(Days::new(1)).unwrap();
        let weekday_today = iso_weekday(wall.weekday());
        let weekday_yesterday = if weekday_today == 1 {
            7
        } else {
            weekday_today - 1
        };
        self.spec.intervals.iter().any(|&(weekday, start, end)| {
            let crosses = end <= start;
            let opened_today = weekday == weekday_today
                && minute >= start
                && (crosses || minute < end)
                && !self.is_holiday(today);
            let opened_yesterday = crosses
                && weekday == weekday_yesterday
                && minute < end
                && !self.is_holiday(yesterday);
            opened_today || opened_yesterday
        })
    }

    fn is_holiday(&self, date: NaiveDate) -> bool {
        self.spec
            .holidays
            .iter()
            .any(|&(first, last)| first <= date && date <= last)
    }

    /// Open minutes in `[from, to)`.
    fn minutes_between(&self, from: i64, to: i64) -> u64 {
        (from..to)
            .step_by(60)
            .filter(|&second| self.is_open(second))
            .count() as u64
    }

    /// When `minutes` open minutes have passed since `from`, if within `limit` seconds.
    fn due_at(&self, from: i64, minutes: u32, limit: i64) -> Option<i64> {
        if minutes == 0 {
            return Some(from);
        }
        let mut left = minutes;
        let mut second = from;
        while second < limit {
            if self.is_open(second) {
                left -= 1;
                if left == 0 {
                    return Some(second + MINUTE);
                }
            }
            second += MINUTE;
        }
        None
    }
}

fn iso_weekday(weekday: JiffWeekday) -> i32 {
    i32::from(weekday.to_monday_one_offset())
}

/// A case: a schedule around one DST change, with the intervals that overlap an earlier one
/// dropped (the parse names them), and a start within ten days of the change.
#[derive(Clone, Debug)]
struct Case {
    spec: Spec,
    /// Unix seconds, a whole minute.
    start: i64,
}

fn interval() -> impl Strategy<Value = (i32, u32, u32)> {
    // Half-hour bounds meet the changes (00:00, 01:30, 02:00, 02:30, 03:00, 23:00) often; any
    // minute now and then.
    let bound = prop_oneof![4 => (0u32..48).prop_map(|half| half * 30), 1 => 0u32..1440];
    (1i32..=7, bound, 1u32..=40).prop_map(|(weekday, start, halves)| {
        let end = (start + halves * 30) % 1440;
        let end = if end == 0 { 1440 } else { end };
        (weekday, start, end)
    })
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..CHANGES.len(),
        prop::collection::vec(interval(), 1..6),
        prop::collection::vec((-10i64..10, 0u64..3), 0..3),
        -10 * 24 * 60..10 * 24 * 60i64,
    )
        .prop_map(|(change, intervals, holidays, start_minutes)| {
            let (zone, day) = CHANGES[change];
            let day: NaiveDate = day.parse().unwrap();
            let holidays = holidays
                .into_iter()
                .map(|(offset, length)| {
                    let first = day
                        .checked_add_signed(chrono::TimeDelta::days(offset))
                        .unwrap();
                    (first, first.checked_add_days(Days::new(length)).unwrap())
                })
                .collect();
            let mut spec = Spec {
                zone: zone.to_owned(),
                intervals,
                holidays,
            };
            drop_overlaps(&mut spec);
            let midnight = super::test_support::at(zone, &format!("{day} 00:00")).timestamp();
            Case {
                spec,
                start: midnight + start_minutes * MINUTE,
            }
        })
}

/// Removes, one at a time, the intervals the parse refuses as overlapping an earlier one.
fn drop_overlaps(spec: &mut Spec) {
    loop {
        let refused = match spec.schedule() {
            Ok(_) => return,
            Err(problems) => problems.iter().find_map(|problem| match problem.field {
                ScheduleField::Interval(index, _) => Some(index),
                ScheduleField::TimeZone
                | ScheduleField::Intervals
                | ScheduleField::Holidays
                | ScheduleField::Holiday(..) => None,
            }),
        };
        let index = refused.expect("only overlaps are refused in generated schedules");
        spec.intervals.remove(index);
    }
}

fn utc(second: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(second, 0).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn elapsed_business_minutes_match_minute_stepping(case in case(), span in 0i64..14 * 24 * 60) {
        let schedule = case.spec.schedule().unwrap();
        let reference = Reference::new(case.spec.clone());
        let end = case.start + span * MINUTE;
        prop_assert_eq!(
            schedule.business_minutes_between(utc(case.start), utc(end)).unwrap(),
            reference.minutes_between(case.start, end)
        );
    }

    #[test]
    fn due_times_match_minute_stepping(case in case(), minutes in prop_oneof![Just(0u32), 1u32..600]) {
        let schedule = case.spec.schedule().unwrap();
        let reference = Reference::new(case.spec.clone());
        let limit = case.start + 21 * 24 * 60 * MINUTE;
        let due = schedule.due_at(utc(case.start), minutes).unwrap();
        match reference.due_at(case.start, minutes, limit) {
            Some(expected) => prop_assert_eq!(due, utc(expected)),
            // Rarely open (a short interval and holidays): then not due within the three weeks.
            None => prop_assert!(due > utc(limit)),
        }
    }

    #[test]
    fn the_business_time_up_to_a_due_time_is_its_target(case in case(), minutes in 0u32..3_000) {
        let schedule = case.spec.schedule().unwrap();
        let start = utc(case.start);
        let due = schedule.due_at(start, minutes).unwrap();
        prop_assert_eq!(schedule.business_minutes_between(start, due).unwrap(), u64::from(minutes));
        // And not a minute earlier: one minute before the due time, the target is not met.
        if minutes > 0 {
            let just_before = due - chrono::TimeDelta::minutes(1);
            prop_assert_eq!(
                schedule.business_minutes_between(start, just_before).unwrap(),
                u64::from(minutes) - 1
            );
        }
    }

    #[test]
    fn a_pause_split_anywhere_adds_up_to_the_whole(case in case(), span in 0i64..14 * 24 * 60, per_mille in 0i64..=1000) {
        let schedule = case.spec.schedule().unwrap();
        let end = case.start + span * MINUTE;
        let middle = case.start + span * per_mille / 1000 * MINUTE;
        let whole = schedule.business_minutes_between(utc(case.start), utc(end)).unwrap();
        let parts = schedule.business_minutes_between(utc(case.start), utc(middle)).unwrap()
            + schedule.business_minutes_between(utc(middle), utc(end)).unwrap();
        prop_assert_eq!(whole, parts);
    }
}
