//! The dashboard's ranges: a span of UTC days whose bounds parse from `YYYY-MM-DD`, within the
//! longest span a panel reads, and the revenue's bucketing (docs/dashboard.md).

use chrono::{Datelike, Days, NaiveDate};

use super::InvalidValue;

/// How many days a range spans when the request names no start: 30, today included.
const DEFAULT_DAYS: u64 = 30;

/// How revenue is bucketed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevenueInterval {
    Day,
    Month,
}

impl RevenueInterval {
    /// The longest range, in days, a request may ask for: a year of days, ten years of months.
    pub fn max_days(self) -> u64 {
        match self {
            Self::Day => 366,
            Self::Month => 3_660,
        }
    }

    /// The first day of the bucket `day` falls in.
    pub fn bucket_of(self, day: NaiveDate) -> NaiveDate {
        match self {
            Self::Day => day,
            Self::Month => day.with_day(1).unwrap_or(day),
        }
    }
}

/// An inclusive span of UTC days, at most a given number of days long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateRange {
    start: NaiveDate,
    end: NaiveDate,
}

/// Which bound of a range was refused, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeProblem {
    Start(InvalidValue),
    End(InvalidValue),
}

impl DateRange {
    /// Parses `start` and `end` (`YYYY-MM-DD`; an empty end is `today`, an empty start 29 days
    /// before the end), refusing an end before the start and a span over `max_days`.
    pub fn parse(
        start: &str,
        end: &str,
        today: NaiveDate,
        max_days: u64,
    ) -> Result<Self, Vec<RangeProblem>> {
        let end_day = match end {
            "" => Ok(today),
            text => parse_day(text).map_err(RangeProblem::End),
        };
        let start_day = match (start, &end_day) {
            ("", Ok(end)) => Ok(end
                .checked_sub_days(Days::new(DEFAULT_DAYS - 1))
                .unwrap_or(NaiveDate::MIN)),
            ("", Err(_)) => Ok(today),
            (text, _) => parse_day(text).map_err(RangeProblem::Start),
        };
        let (start, end) = match (start_day, end_day) {
            (Ok(start), Ok(end)) => (start, end),
            (start, end) => {
                return Err([start.err(), end.err()].into_iter().flatten().collect());
            }
        };
        if end < start {
            return Err(vec![RangeProblem::End(InvalidValue::new(
                "is before start_date",
            ))]);
        }
        let days = u64::try_from((end - start).num_days()).unwrap_or(u64::MAX) + 1;
        if days > max_days {
            return Err(vec![RangeProblem::Start(InvalidValue::new(format!(
                "makes a range of {days} days; at most {max_days} may be asked for"
            )))]);
        }
        Ok(Self { start, end })
    }

    pub fn start(&self) -> NaiveDate {
        self.start
    }

    /// The last day, included.
    pub fn end(&self) -> NaiveDate {
        self.end
    }
}

fn parse_day(text: &str) -> Result<NaiveDate, InvalidValue> {
    // `%Y` would take a sign and more than four digits: the wire format is exactly YYYY-MM-DD.
    let plain = text.len() == 10
        && text.bytes().enumerate().all(|(at, byte)| {
            if at == 4 || at == 7 {
                byte == b'-'
            } else {
                byte.is_ascii_digit()
            }
        });
    if !plain {
        return Err(InvalidValue::new("is not a date written YYYY-MM-DD"));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| InvalidValue::new("is not a date of the calendar"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn an_empty_range_is_the_thirty_days_ending_today() {
        let range = DateRange::parse("", "", day("2026-03-10"), 366).unwrap();
        assert_eq!(
            (range.start(), range.end()),
            (day("2026-02-09"), day("2026-03-10"))
        );
    }

    #[test]
    fn a_range_may_be_one_day() {
        let range = DateRange::parse("2026-01-01", "2026-01-01", day("2026-03-10"), 366).unwrap();
        assert_eq!(
            (range.start(), range.end()),
            (day("2026-01-01"), day("2026-01-01"))
        );
    }

    #[test]
    fn malformed_and_impossible_dates_are_refused_with_their_bound() {
        for (start, end) in [
            ("2026-1-01", "2026-02-01"),
            ("+2026-01-01", "2026-02-01"),
            ("2026-02-30", "2026-03-01"),
            ("yesterday", "2026-03-01"),
        ] {
            let problems = DateRange::parse(start, end, day("2026-03-10"), 366).unwrap_err();
            assert!(
                matches!(problems.as_slice(), [RangeProblem::Start(_)]),
                "{start}: {problems:?}"
            );
        }
        let problems =
            DateRange::parse("2026-13-01", "2026-14-01", day("2026-03-10"), 366).unwrap_err();
        assert!(matches!(
            problems.as_slice(),
            [RangeProblem::Start(_), RangeProblem::End(_)]
        ));
    }

    #[test]
    fn an_end_before_the_start_is_refused() {
        let problems =
            DateRange::parse("2026-02-02", "2026-02-01", day("2026-03-10"), 366).unwrap_err();
        assert!(matches!(problems.as_slice(), [RangeProblem::End(_)]));
    }

    #[test]
    fn a_range_longer_than_allowed_is_refused_and_the_longest_allowed_is_kept() {
        assert!(DateRange::parse("2025-01-01", "2026-01-01", day("2026-03-10"), 366).is_ok());
        assert!(DateRange::parse("2025-01-01", "2026-01-02", day("2026-03-10"), 366).is_err());
    }

    #[test]
    fn months_bucket_on_their_first_day() {
        assert_eq!(
            RevenueInterval::Month.bucket_of(day("2026-02-17")),
            day("2026-02-01")
        );
        assert_eq!(
            RevenueInterval::Day.bucket_of(day("2026-02-17")),
            day("2026-02-17")
        );
    }
}
