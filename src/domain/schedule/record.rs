//! A schedule as an account keeps it (ScheduleService): a name, the business hours, a revision
//! that counts its writes, and its life (a deleted schedule keeps its row).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{RawHoliday, RawInterval, Schedule, ScheduleProblem};
use crate::domain::{InvalidValue, bounded_text, single_line};

/// The most live schedules an account may have: a schedule per region, team and season, and few
/// enough that a picker lists them all.
pub const MAX_SCHEDULES_PER_ACCOUNT: i64 = 100;

/// A schedule's name: 1 to 100 characters on one line, trimmed (unique among the account's live
/// schedules whatever its case, which the database holds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleName(String);

impl ScheduleName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, 1, 100).and_then(single_line).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSchedule {
    pub id: Uuid,
    pub name: ScheduleName,
    pub hours: Schedule,
    /// 1 when created, one more with each change.
    pub revision: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Schedule {
    /// This schedule with the parts given replaced (a list as a whole), parsed again: what a
    /// change that names only some of the parts makes of it.
    pub fn revised(
        &self,
        time_zone: Option<&str>,
        intervals: Option<&[RawInterval<'_>]>,
        holidays: Option<&[RawHoliday<'_>]>,
    ) -> Result<Self, Vec<ScheduleProblem>> {
        let kept_intervals: Vec<(i32, String, String)> = self
            .intervals()
            .iter()
            .map(|interval| {
                (
                    i32::try_from(interval.weekday().number_from_monday()).unwrap_or(0),
                    interval.start().to_string(),
                    interval.end().to_string(),
                )
            })
            .collect();
        let kept_intervals: Vec<RawInterval<'_>> = kept_intervals
            .iter()
            .map(|(weekday, start, end)| RawInterval {
                weekday: *weekday,
                start,
                end,
            })
            .collect();
        let kept_holidays: Vec<(String, String)> = self
            .holidays()
            .iter()
            .map(|holiday| (holiday.first().to_string(), holiday.last().to_string()))
            .collect();
        let kept_holidays: Vec<RawHoliday<'_>> = self
            .holidays()
            .iter()
            .zip(&kept_holidays)
            .map(|(holiday, (first, last))| RawHoliday {
                name: holiday.name(),
                first,
                last,
            })
            .collect();
        Self::parse(
            time_zone.unwrap_or(self.time_zone()),
            intervals.unwrap_or(&kept_intervals),
            holidays.unwrap_or(&kept_holidays),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{office_hours, schedule};
    use super::*;

    #[test]
    fn a_name_is_trimmed_and_bounded() {
        assert_eq!(
            ScheduleName::parse("  Berlin office ").unwrap().as_str(),
            "Berlin office"
        );
        assert!(ScheduleName::parse("   ").is_err());
        assert!(ScheduleName::parse(&"n".repeat(101)).is_err());
        assert!(ScheduleName::parse("two\nlines").is_err());
    }

    #[test]
    fn a_revision_keeps_the_parts_it_does_not_name() {
        let berlin = office_hours("Europe/Berlin", &[("2026-12-24", "2026-12-26")]);
        let moved = berlin
            .revised(Some("America/New_York"), None, None)
            .unwrap();
        assert_eq!(moved.time_zone(), "America/New_York");
        assert_eq!(moved.intervals(), berlin.intervals());
        assert_eq!(moved.holidays(), berlin.holidays());

        let nights = [RawInterval {
            weekday: 5,
            start: "22:00",
            end: "02:00",
        }];
        let night_shift = berlin.revised(None, Some(&nights), Some(&[])).unwrap();
        assert_eq!(
            night_shift,
            schedule("Europe/Berlin", &[(5, "22:00", "02:00")], &[])
        );
    }

    #[test]
    fn a_revision_is_parsed_again_and_names_what_it_refuses() {
        let berlin = office_hours("Europe/Berlin", &[]);
        let problems = berlin
            .revised(Some("Mars/Olympus"), None, None)
            .unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field.path(), "time_zone");
    }
}
