//! The arithmetic of business time over a [`Schedule`]: due times and elapsed business time, by
//! walking the zone's offset changes and, between two of them, the local days and their intervals
//! (the definition is in the parent module's doc).

use std::ops::ControlFlow;

use chrono::{DateTime, TimeDelta, Utc};
use jiff::Timestamp;

use super::{MINUTES_PER_DAY, Schedule};

/// How far after its start a due time is searched for, in days of real time: two years.
pub const DUE_TIME_HORIZON_DAYS: i64 = 731;
/// The longest span whose elapsed business time is measured, in days: a century, far beyond any
/// ticket's life, and a bound on the walk's cost.
pub const MAX_MEASURED_SPAN_DAYS: i64 = 36_525;

const MICROS_PER_MINUTE: i64 = 60_000_000;
const MICROS_PER_DAY: i64 = MICROS_PER_MINUTE * MINUTES_PER_DAY as i64;

/// Why a due time or an elapsed time could not be computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The target is not reached within [`DUE_TIME_HORIZON_DAYS`] of its start.
    #[error(
        "{business_minutes} business minutes from {start} are not reached within \
         {DUE_TIME_HORIZON_DAYS} days: the schedule is open too rarely (or its holidays close it) \
         for that target"
    )]
    BeyondHorizon {
        start: DateTime<Utc>,
        business_minutes: u32,
    },
    /// An instant outside the years the tz database covers (-9999 to 9999).
    #[error("{instant} is outside the years a time zone can be read for")]
    OutOfRange { instant: DateTime<Utc> },
    /// A span longer than [`MAX_MEASURED_SPAN_DAYS`].
    #[error("business time is measured over at most {MAX_MEASURED_SPAN_DAYS} days")]
    SpanTooLong,
}

/// The clock a target runs on: calendar time, or business time under a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock<'s> {
    Calendar,
    Business(&'s Schedule),
}

impl Clock<'_> {
    /// When `minutes` of this clock have elapsed since `start`.
    pub fn due_at(
        self,
        start: DateTime<Utc>,
        minutes: u32,
    ) -> Result<DateTime<Utc>, ScheduleError> {
        match self {
            Self::Calendar => start
                .checked_add_signed(TimeDelta::minutes(i64::from(minutes)))
                .ok_or(ScheduleError::OutOfRange { instant: start }),
            Self::Business(schedule) => schedule.due_at(start, minutes),
        }
    }

    /// When `remaining` of this clock has elapsed since `start`, to the microsecond: what a
    /// paused clock that resumes at `start` owes (`start` itself when nothing remains).
    pub fn due_after(
        self,
        start: DateTime<Utc>,
        remaining: TimeDelta,
    ) -> Result<DateTime<Utc>, ScheduleError> {
        match self {
            Self::Calendar => start
                .checked_add_signed(remaining.max(TimeDelta::zero()))
                .ok_or(ScheduleError::OutOfRange { instant: start }),
            Self::Business(schedule) => schedule.due_after(start, remaining),
        }
    }

    /// This clock's time elapsed from `from` to `to`, to the microsecond (zero when `to` is not
    /// after `from`).
    pub fn elapsed_between(
        self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<TimeDelta, ScheduleError> {
        match self {
            Self::Calendar => Ok((to - from).max(TimeDelta::zero())),
            Self::Business(schedule) => schedule.business_time_between(from, to),
        }
    }

    /// Whole minutes of this clock elapsed from `from` to `to` (0 when `to` is not after `from`).
    pub fn minutes_between(
        self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<u64, ScheduleError> {
        match self {
            Self::Calendar => Ok(u64::try_from((to - from).num_minutes()).unwrap_or(0)),
            Self::Business(schedule) => schedule.business_minutes_between(from, to),
        }
    }
}

impl Schedule {
    /// The instant when `business_minutes` of business time have elapsed since `start`: `start`
    /// itself for 0, otherwise the earliest such instant (a target that runs out at closing time
    /// is due at closing time).
    pub fn due_at(
        &self,
        start: DateTime<Utc>,
        business_minutes: u32,
    ) -> Result<DateTime<Utc>, ScheduleError> {
        self.due_after(start, TimeDelta::minutes(i64::from(business_minutes)))
    }

    /// The instant when `remaining` business time has elapsed since `start`, to the microsecond:
    /// `start` itself when nothing remains, otherwise the earliest such instant.
    pub fn due_after(
        &self,
        start: DateTime<Utc>,
        remaining: TimeDelta,
    ) -> Result<DateTime<Utc>, ScheduleError> {
        let Some(mut remaining) = remaining.num_microseconds().filter(|micros| *micros > 0) else {
            return Ok(start);
        };
        // Named in minutes, rounded up, should the horizon refuse it.
        let business_minutes =
            u32::try_from((remaining + MICROS_PER_MINUTE - 1) / MICROS_PER_MINUTE)
                .unwrap_or(u32::MAX);
        let from = start.timestamp_micros();
        let limit = from.saturating_add(DUE_TIME_HORIZON_DAYS * MICROS_PER_DAY);
        let due = self.walk_open_spans(from, limit, |open, close| {
            let length = close - open;
            if length >= remaining {
                ControlFlow::Break(open + remaining)
            } else {
                remaining -= length;
                ControlFlow::Continue(())
            }
        })?;
        let due = due.ok_or(ScheduleError::BeyondHorizon {
            start,
            business_minutes,
        })?;
        DateTime::from_timestamp_micros(due).ok_or(ScheduleError::OutOfRange { instant: start })
    }

    /// Whole business minutes elapsed from `from` to `to`, rounded down (0 when `to` is not after
    /// `from`).
    pub fn business_minutes_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<u64, ScheduleError> {
        let elapsed = self.business_micros_between(from, to)?;
        Ok(u64::try_from(elapsed / MICROS_PER_MINUTE).unwrap_or(0))
    }

    /// Business time elapsed from `from` to `to`, to the microsecond (zero when `to` is not after
    /// `from`): what a paused clock adds up without losing the seconds of each pause.
    pub fn business_time_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<TimeDelta, ScheduleError> {
        self.business_micros_between(from, to)
            .map(TimeDelta::microseconds)
    }

    fn business_micros_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<i64, ScheduleError> {
        let (from, to) = (from.timestamp_micros(), to.timestamp_micros());
        if to <= from {
            return Ok(0);
        }
        if to - from > MAX_MEASURED_SPAN_DAYS * MICROS_PER_DAY {
            return Err(ScheduleError::SpanTooLong);
        }
        let mut elapsed = 0;
        self.walk_open_spans(from, to, |open, close| {
            elapsed += close - open;
            ControlFlow::<()>::Continue(())
        })?;
        Ok(elapsed)
    }

    /// Calls `visit` with each open span of real time within `[from, until)` (microseconds since
    /// the Unix epoch), earliest first, until it breaks; answers what it broke with.
    ///
    /// Between two of the zone's transitions the offset is constant, so wall-clock time is real
    /// time shifted by it: there the open spans are the local intervals of each local day,
    /// shifted back. A transition ends that stretch, which is how a gap loses the wall times it
    /// skips and a fold counts the ones it repeats.
    fn walk_open_spans<T>(
        &self,
        from: i64,
        until: i64,
        mut visit: impl FnMut(i64, i64) -> ControlFlow<T>,
    ) -> Result<Option<T>, ScheduleError> {
        let mut now = from;
        while now < until {
            let instant = Timestamp::from_microsecond(now).map_err(|_| out_of_range(now))?;
            let offset = i64::from(self.zone.to_offset(instant).seconds()) * 1_000_000;
            let stretch_end = self
                .zone
                .following(instant)
                .next()
                .map(|transition| transition.timestamp().as_microsecond())
                .filter(|&at| at > now)
                .map_or(until, |at| at.min(until));
            let (local_from, local_until) = (now + offset, stretch_end + offset);
            // The day before may hold an interval that crosses midnight into this stretch.
            let first_day = local_from.div_euclid(MICROS_PER_DAY) - 1;
            let last_day = (local_until - 1).div_euclid(MICROS_PER_DAY);
            for day in first_day..=last_day {
                if self.is_holiday(day) {
                    continue;
                }
                // 1970-01-01 was a Thursday: day 0 is weekday 3 counted from Monday.
                let weekday = (day + 3).rem_euclid(7) as usize;
                for &(start, length) in &self.openings[weekday] {
                    let open = day * MICROS_PER_DAY + i64::from(start) * MICROS_PER_MINUTE;
                    let close = open + i64::from(length) * MICROS_PER_MINUTE;
                    let (open, close) = (open.max(local_from), close.min(local_until));
                    if open < close
                        && let ControlFlow::Break(answer) = visit(open - offset, close - offset)
                    {
                        return Ok(Some(answer));
                    }
                }
            }
            now = stretch_end;
        }
        Ok(None)
    }
}

fn out_of_range(micros: i64) -> ScheduleError {
    ScheduleError::OutOfRange {
        instant: DateTime::from_timestamp_micros(micros).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{at, local, office_hours, schedule};
    use super::*;

    const BERLIN: &str = "Europe/Berlin";

    fn due_locally(schedule: &Schedule, zone: &str, start: &str, minutes: u32) -> String {
        local(zone, schedule.due_at(at(zone, start), minutes).unwrap())
    }

    fn minutes_between(schedule: &Schedule, zone: &str, from: &str, to: &str) -> u64 {
        schedule
            .business_minutes_between(at(zone, from), at(zone, to))
            .unwrap()
    }

    #[test]
    fn an_hour_from_friday_afternoon_is_due_monday_morning() {
        let berlin = office_hours(BERLIN, &[]);
        assert_eq!(
            due_locally(&berlin, BERLIN, "2024-03-22 16:30", 60),
            "2024-03-25T09:30:00"
        );
    }

    #[test]
    fn an_hour_from_friday_afternoon_is_due_monday_morning_across_the_spring_change() {
        let berlin = office_hours(BERLIN, &[]);
        let due = berlin.due_at(at(BERLIN, "2024-03-29 16:30"), 60).unwrap();
        assert_eq!(local(BERLIN, due), "2024-04-01T09:30:00");
        assert_eq!(due.to_rfc3339(), "2024-04-01T07:30:00+00:00");
    }

    #[test]
    fn an_hour_from_friday_afternoon_is_due_monday_morning_across_the_autumn_change() {
        let berlin = office_hours(BERLIN, &[]);
        let due = berlin.due_at(at(BERLIN, "2024-10-25 16:30"), 60).unwrap();
        assert_eq!(local(BERLIN, due), "2024-10-28T09:30:00");
        assert_eq!(due.to_rfc3339(), "2024-10-28T08:30:00+00:00");
    }

    #[test]
    fn a_holiday_monday_pushes_the_due_time_to_tuesday() {
        let berlin = office_hours(BERLIN, &[("2024-03-25", "")]);
        assert_eq!(
            due_locally(&berlin, BERLIN, "2024-03-22 16:30", 60),
            "2024-03-26T09:30:00"
        );
    }

    #[test]
    fn a_target_that_runs_out_at_closing_time_is_due_at_closing_time() {
        let berlin = office_hours(BERLIN, &[]);
        assert_eq!(
            due_locally(&berlin, BERLIN, "2024-03-22 16:00", 60),
            "2024-03-22T17:00:00"
        );
    }

    #[test]
    fn a_start_outside_business_hours_waits_for_the_opening() {
        let berlin = office_hours(BERLIN, &[]);
        assert_eq!(
            due_locally(&berlin, BERLIN, "2024-03-23 11:00", 30),
            "2024-03-25T09:30:00"
        );
    }

    #[test]
    fn zero_minutes_are_due_at_the_start_even_when_closed() {
        let berlin = office_hours(BERLIN, &[]);
        let saturday = at(BERLIN, "2024-03-23 11:00");
        assert_eq!(berlin.due_at(saturday, 0).unwrap(), saturday);
    }

    #[test]
    fn a_start_between_minutes_keeps_its_seconds() {
        let berlin = office_hours(BERLIN, &[]);
        let start = at(BERLIN, "2024-03-22 16:30") + TimeDelta::microseconds(30_500_000);
        let due = berlin.due_at(start, 60).unwrap();
        assert_eq!(
            due,
            at(BERLIN, "2024-03-25 09:30") + TimeDelta::microseconds(30_500_000)
        );
        assert_eq!(
            berlin.business_time_between(start, due).unwrap(),
            TimeDelta::minutes(60)
        );
    }

    #[test]
    fn a_night_shift_crosses_midnight_into_saturday() {
        let nights = schedule(BERLIN, &[(5, "22:00", "02:00")], &[]);
        assert_eq!(
            due_locally(&nights, BERLIN, "2024-03-22 23:00", 120),
            "2024-03-23T01:00:00"
        );
        assert_eq!(
            due_locally(&nights, BERLIN, "2024-03-22 23:00", 180),
            "2024-03-23T02:00:00"
        );
        assert_eq!(
            due_locally(&nights, BERLIN, "2024-03-22 23:00", 181),
            "2024-03-29T22:01:00"
        );
    }

    #[test]
    fn a_holiday_on_saturday_leaves_fridays_night_shift_whole() {
        let nights = schedule(BERLIN, &[(5, "22:00", "02:00")], &[("2024-03-23", "")]);
        assert_eq!(
            minutes_between(&nights, BERLIN, "2024-03-22 00:00", "2024-03-24 00:00"),
            240
        );
    }

    #[test]
    fn a_holiday_on_friday_closes_its_night_shift_past_midnight_too() {
        let nights = schedule(BERLIN, &[(5, "22:00", "02:00")], &[("2024-03-22", "")]);
        assert_eq!(
            minutes_between(&nights, BERLIN, "2024-03-22 00:00", "2024-03-24 00:00"),
            0
        );
    }

    #[test]
    fn the_hour_skipped_in_spring_is_not_business_time() {
        let sunday_night = schedule(BERLIN, &[(7, "01:00", "05:00")], &[]);
        assert_eq!(
            minutes_between(
                &sunday_night,
                BERLIN,
                "2024-03-31 00:00",
                "2024-04-01 00:00"
            ),
            180
        );
    }

    #[test]
    fn the_hour_repeated_in_autumn_is_business_time_twice() {
        let sunday_night = schedule(BERLIN, &[(7, "01:00", "05:00")], &[]);
        assert_eq!(
            minutes_between(
                &sunday_night,
                BERLIN,
                "2024-10-27 00:00",
                "2024-10-28 00:00"
            ),
            300
        );
    }

    #[test]
    fn lord_howe_skips_and_repeats_half_an_hour() {
        let zone = "Australia/Lord_Howe";
        let sunday_night = schedule(zone, &[(7, "01:00", "03:00")], &[]);
        // 2024-04-07: 02:00 goes back to 01:30; 2024-10-06: 02:00 jumps to 02:30.
        assert_eq!(
            minutes_between(&sunday_night, zone, "2024-04-07 00:00", "2024-04-08 00:00"),
            150
        );
        assert_eq!(
            minutes_between(&sunday_night, zone, "2024-10-06 00:00", "2024-10-07 00:00"),
            90
        );
    }

    #[test]
    fn sao_paulo_began_summer_time_at_midnight_and_ended_it_at_midnight() {
        let zone = "America/Sao_Paulo";
        let around_midnight = schedule(zone, &[(6, "22:00", "24:00"), (7, "00:00", "02:00")], &[]);
        // 2017-10-15 had no 00:00 to 01:00; 2018-02-17 had 23:00 to 24:00 twice.
        assert_eq!(
            minutes_between(
                &around_midnight,
                zone,
                "2017-10-14 12:00",
                "2017-10-15 12:00"
            ),
            180
        );
        assert_eq!(
            minutes_between(
                &around_midnight,
                zone,
                "2018-02-17 12:00",
                "2018-02-18 12:00"
            ),
            300
        );
    }

    #[test]
    fn a_schedule_closed_by_holidays_for_two_years_answers_beyond_the_horizon() {
        let closed = office_hours(
            BERLIN,
            &[
                ("2024-01-01", "2024-12-31"),
                ("2025-01-01", "2025-12-31"),
                ("2026-01-01", "2026-12-31"),
            ],
        );
        let start = at(BERLIN, "2024-03-22 16:30");
        assert_eq!(
            closed.due_at(start, 1),
            Err(ScheduleError::BeyondHorizon {
                start,
                business_minutes: 1
            })
        );
    }

    #[test]
    fn a_target_longer_than_two_years_of_opening_hours_answers_beyond_the_horizon() {
        let berlin = office_hours(BERLIN, &[]);
        let start = at(BERLIN, "2024-03-22 16:30");
        assert!(berlin.due_at(start, 200_000).is_ok());
        assert!(matches!(
            berlin.due_at(start, u32::MAX),
            Err(ScheduleError::BeyondHorizon { .. })
        ));
    }

    #[test]
    fn elapsed_business_time_is_zero_when_the_span_is_empty_or_backwards() {
        let berlin = office_hours(BERLIN, &[]);
        let (earlier, later) = (
            at(BERLIN, "2024-03-22 10:00"),
            at(BERLIN, "2024-03-22 12:00"),
        );
        assert_eq!(berlin.business_minutes_between(later, earlier), Ok(0));
        assert_eq!(berlin.business_minutes_between(later, later), Ok(0));
        assert_eq!(berlin.business_minutes_between(earlier, later), Ok(120));
    }

    #[test]
    fn a_pause_over_a_holiday_weekend_counts_only_open_hours() {
        let berlin = office_hours(BERLIN, &[("2024-03-29", ""), ("2024-04-01", "")]);
        // Easter 2024: Thursday 15:00 to Tuesday 11:00 is Thursday's 2 hours and Tuesday's 2.
        assert_eq!(
            minutes_between(&berlin, BERLIN, "2024-03-28 15:00", "2024-04-02 11:00"),
            240
        );
    }

    #[test]
    fn spans_too_long_or_out_of_the_tz_range_are_errors_not_loops() {
        let berlin = office_hours(BERLIN, &[]);
        let start = at(BERLIN, "2024-03-22 16:30");
        let far = DateTime::from_timestamp(400_000_000_000, 0).unwrap();
        assert_eq!(
            berlin.business_minutes_between(start, far),
            Err(ScheduleError::SpanTooLong)
        );
        assert!(matches!(
            berlin.due_at(far, 1),
            Err(ScheduleError::OutOfRange { .. })
        ));
    }

    #[test]
    fn a_calendar_clock_counts_every_minute() {
        let berlin = office_hours(BERLIN, &[]);
        let start = at(BERLIN, "2024-03-22 16:30");
        let due = Clock::Calendar.due_at(start, 60).unwrap();
        assert_eq!(local(BERLIN, due), "2024-03-22T17:30:00");
        assert_eq!(Clock::Calendar.minutes_between(start, due), Ok(60));
        assert_eq!(
            local(BERLIN, Clock::Business(&berlin).due_at(start, 60).unwrap()),
            "2024-03-25T09:30:00"
        );
        assert_eq!(Clock::Business(&berlin).minutes_between(start, due), Ok(30));
    }
}
