//! Schedules (business hours) as the API shows them and as requests send their parts.

use super::{optional_timestamp, timestamp};
use crate::domain::{RawHoliday, RawInterval, StoredSchedule};
use crate::wire::proto::v1;

impl From<&StoredSchedule> for v1::Schedule {
    fn from(schedule: &StoredSchedule) -> Self {
        v1::Schedule {
            id: schedule.id.to_string(),
            name: schedule.name.as_str().to_owned(),
            time_zone: schedule.hours.time_zone().to_owned(),
            intervals: schedule
                .hours
                .intervals()
                .iter()
                .map(|interval| v1::BusinessInterval {
                    weekday: i32::try_from(interval.weekday().number_from_monday()).unwrap_or(0),
                    start: interval.start().to_string(),
                    end: interval.end().to_string(),
                })
                .collect(),
            holidays: schedule
                .hours
                .holidays()
                .iter()
                .map(|holiday| v1::Holiday {
                    name: holiday.name().to_owned(),
                    first: holiday.first().to_string(),
                    last: holiday.last().to_string(),
                })
                .collect(),
            revision: schedule.revision,
            create_time: Some(timestamp(schedule.created_at)),
            update_time: Some(timestamp(schedule.updated_at)),
            delete_time: optional_timestamp(schedule.deleted_at),
        }
    }
}

/// A request's intervals as the domain parses them (`v1::Weekday` numbers days as ISO 8601).
pub fn raw_intervals(intervals: &[v1::BusinessInterval]) -> Vec<RawInterval<'_>> {
    intervals
        .iter()
        .map(|interval| RawInterval {
            weekday: interval.weekday,
            start: &interval.start,
            end: &interval.end,
        })
        .collect()
}

/// A request's holidays as the domain parses them.
pub fn raw_holidays(holidays: &[v1::Holiday]) -> Vec<RawHoliday<'_>> {
    holidays
        .iter()
        .map(|holiday| RawHoliday {
            name: &holiday.name,
            first: &holiday.first,
            last: &holiday.last,
        })
        .collect()
}
