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
    pub fn due_at(self, start: DateTime<Utc>, minutes: u32) -> Result<DateTime<Utc>, ScheduleError> {
        match self {
            Self::Calendar => start
                .checked_add_signed(TimeDelta::minutes(i64::from(minutes)))
                .ok_or(ScheduleError::OutOfRange { instant: start }),
            Self::Business(schedule) => schedule.due_at(start, minutes),
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
        if business_minutes == 0 {
            return Ok(start);
        }
        let from = start.timestamp_micros();
        let limit = from.saturating_add(DUE_TIME_HORIZON_DAYS * MICROS_PER_DAY);
        let mut remaining = i64::from(business_minutes) * MICROS_PER_MINUTE;
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
                    if open < close {
                        if let ControlFlow::Break(answer) = visit(open - offset, close - offset) {
                            return Ok(Some(answer));
                        }
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
