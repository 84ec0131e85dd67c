//! The `ticket_response_histograms` rollup (migration 000019, docs/dashboard.md): per account,
//! measure, day and month, how many tickets fall in each log-spaced bucket of a duration, kept by
//! the `tickets_roll_up_response_times` trigger in the transaction of every change to a ticket.
//! The median and 90th percentile of the time to first agent answer and to resolution over a
//! range are read from the summed buckets: O(periods × buckets) rows, whatever the tickets, and
//! within 4.5 % (+ 1 s) of the exact `percentile_cont` over the same tickets.

use chrono::{Datelike, NaiveDate};
use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::errors::AppResult;

/// Buckets per doubling of the duration; `ticket_response_bucket` in migration 000019 uses the
/// same: bucket b (1 to 200) holds [2^((b-1)/8), 2^(b/8)) seconds.
const BUCKETS_PER_DOUBLING: f64 = 8.0;
/// Bucket 0 holds the durations under a second.
const SUB_SECOND_BUCKET: i16 = 0;
/// The last bucket holds everything from 2^25 s (388 days) up.
const TOP_BUCKET: i16 = 201;

/// A distribution of durations, in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct ResponseTimes {
    pub tickets: i64,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

/// One bucket's tickets summed over a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, diesel::QueryableByName)]
struct BucketCount {
    #[diesel(sql_type = sql_types::SmallInt)]
    bucket: i16,
    #[diesel(sql_type = sql_types::BigInt)]
    tickets: i64,
}

impl ResponseTimes {
    /// From creation to the first agent answer, over the tickets created from `start` to `end`
    /// (UTC days, included).
    pub async fn first_response(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        start: NaiveDate,
        end: NaiveDate,
    ) -> AppResult<Self> {
        Self::read(conn, account_id, "first_response", start, end).await
    }

    /// From creation to being solved, over the tickets solved from `start` to `end` (UTC days,
    /// included) and not reopened since.
    pub async fn resolution(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        start: NaiveDate,
        end: NaiveDate,
    ) -> AppResult<Self> {
        Self::read(conn, account_id, "resolution", start, end).await
    }

    /// The range's whole months from their month rows, its partial months day by day.
    async fn read(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        measure: &'static str,
        start: NaiveDate,
        end: NaiveDate,
    ) -> AppResult<Self> {
        let (months_from, months_until) = whole_months(start, end);
        let buckets: Vec<BucketCount> = KeepPrepared(
            diesel::sql_query(
                "SELECT bucket, sum(tickets) AS tickets FROM ticket_response_histograms \
                 WHERE account_id = $1 AND measure = $2 \
                 AND ((period = 'day' AND starts_on >= $3 AND starts_on < $4) \
                 OR (period = 'month' AND starts_on >= $4 AND starts_on < $5) \
                 OR (period = 'day' AND starts_on >= $5 AND starts_on <= $6)) \
                 GROUP BY bucket HAVING sum(tickets) > 0 ORDER BY bucket",
            )
            .bind::<sql_types::Uuid, _>(account_id)
            .bind::<sql_types::Text, _>(measure)
            .bind::<sql_types::Date, _>(start)
            .bind::<sql_types::Date, _>(months_from)
            .bind::<sql_types::Date, _>(months_until)
            .bind::<sql_types::Date, _>(end),
        )
        .load(conn)
        .await?;
        Ok(Self::from_buckets(&buckets))
    }

    fn from_buckets(buckets: &[BucketCount]) -> Self {
        let tickets = buckets.iter().map(|count| count.tickets).sum();
        Self {
            tickets,
            median_seconds: percentile(buckets, tickets, 0.5),
            p90_seconds: percentile(buckets, tickets, 0.9),
        }
    }
}

/// The whole months of `start..=end` as `[from, until)`; when there is none, both are the day
/// after `end`, so that the leading days `[start, from)` cover the range alone.
fn whole_months(start: NaiveDate, end: NaiveDate) -> (NaiveDate, NaiveDate) {
    let after_end = end.succ_opt().unwrap_or(end);
    let first_whole = if start.day() == 1 {
        Some(start)
    } else {
        first_of_next_month(start)
    };
    let after_last_whole = after_end.with_day(1);
    match (first_whole, after_last_whole) {
        (Some(from), Some(until)) if from < until => (from, until),
        _ => (after_end, after_end),
    }
}

fn first_of_next_month(day: NaiveDate) -> Option<NaiveDate> {
    let (year, month) = if day.month() == 12 {
        (day.year() + 1, 1)
    } else {
        (day.year(), day.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1)
}

/// The continuous percentile `p` as `percentile_cont` computes it (interpolating between the two
/// ranks around `p × (n - 1)`), each rank's duration read as its bucket's geometric middle: a
/// duration is within 2^(1/16) (4.4 %) of its bucket's middle, and so is an interpolation of two
/// such durations; under a second, 0 s (at most 1 s off).
fn percentile(buckets: &[BucketCount], tickets: i64, p: f64) -> Option<f64> {
    if tickets <= 0 {
        return None;
    }
    let position = p * (tickets - 1) as f64;
    let below = position.floor() as i64;
    let fraction = position - position.floor();
    let lower = duration_at_rank(buckets, below);
    let upper = duration_at_rank(buckets, below + i64::from(fraction > 0.0));
    Some(lower + fraction * (upper - lower))
}

/// The duration standing for the ticket of `rank` (from 0, shortest first).
fn duration_at_rank(buckets: &[BucketCount], rank: i64) -> f64 {
    let mut counted = 0_i64;
    for count in buckets {
        counted = counted.saturating_add(count.tickets);
        if rank < counted {
            return bucket_middle(count.bucket);
        }
    }
    buckets
        .last()
        .map_or(0.0, |count| bucket_middle(count.bucket))
}

fn bucket_middle(bucket: i16) -> f64 {
    if bucket <= SUB_SECOND_BUCKET {
        0.0
    } else if bucket >= TOP_BUCKET {
        2_f64.powf(f64::from(TOP_BUCKET - 1) / BUCKETS_PER_DOUBLING)
    } else {
        2_f64.powf((f64::from(bucket) - 0.5) / BUCKETS_PER_DOUBLING)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn counts(pairs: &[(i16, i64)]) -> Vec<BucketCount> {
        pairs
            .iter()
            .map(|&(bucket, tickets)| BucketCount { bucket, tickets })
            .collect()
    }

    /// The bucket `ticket_response_bucket` gives a duration (migration 000019).
    fn bucket_of(seconds: f64) -> i16 {
        if seconds < 1.0 {
            return SUB_SECOND_BUCKET;
        }
        let bucket = 1 + (BUCKETS_PER_DOUBLING * seconds.log2()).floor() as i16;
        bucket.min(TOP_BUCKET)
    }

    #[test]
    fn a_year_ending_mid_month_reads_its_whole_months_and_the_days_at_both_ends() {
        assert_eq!(
            whole_months(day("2025-11-25"), day("2026-11-24")),
            (day("2025-12-01"), day("2026-11-01"))
        );
    }

    #[test]
    fn a_range_of_whole_months_reads_months_only() {
        assert_eq!(
            whole_months(day("2026-01-01"), day("2026-12-31")),
            (day("2026-01-01"), day("2027-01-01"))
        );
    }

    #[test]
    fn a_range_within_two_months_reads_days_only() {
        assert_eq!(
            whole_months(day("2026-10-26"), day("2026-11-24")),
            (day("2026-11-25"), day("2026-11-25"))
        );
        assert_eq!(
            whole_months(day("2026-11-24"), day("2026-11-24")),
            (day("2026-11-25"), day("2026-11-25"))
        );
    }

    #[test]
    fn no_tickets_have_no_percentiles() {
        assert_eq!(
            ResponseTimes::from_buckets(&[]),
            ResponseTimes {
                tickets: 0,
                median_seconds: None,
                p90_seconds: None
            }
        );
    }

    #[test]
    fn percentiles_interpolate_between_ranks_as_percentile_cont_does() {
        // Two tickets: the median is halfway between their buckets' middles.
        let times = ResponseTimes::from_buckets(&counts(&[(9, 1), (17, 1)]));
        let (low, high) = (bucket_middle(9), bucket_middle(17));
        assert_eq!(times.tickets, 2);
        assert_eq!(times.median_seconds, Some(low + 0.5 * (high - low)));
        assert_eq!(times.p90_seconds, Some(low + 0.9 * (high - low)));
    }

    #[test]
    fn percentiles_are_within_the_stated_bound_of_the_exact_ones() {
        // Durations from a second to a month, spread log-uniformly, and a few under a second.
        let mut durations: Vec<f64> = (0..5_000)
            .map(|i| 2_f64.powf(f64::from(i) * 21.3 / 5_000.0))
            .chain([0.0, 0.2, 0.9])
            .collect();
        durations.sort_by(f64::total_cmp);
        let mut buckets: Vec<BucketCount> = Vec::new();
        for &seconds in &durations {
            let bucket = bucket_of(seconds);
            match buckets.last_mut() {
                Some(last) if last.bucket == bucket => last.tickets += 1,
                _ => buckets.push(BucketCount { bucket, tickets: 1 }),
            }
        }
        for p in [0.0005, 0.1, 0.25, 0.5, 0.9, 0.99] {
            let exact = exact_percentile(&durations, p);
            let tickets = i64::try_from(durations.len()).unwrap();
            let estimate = percentile(&buckets, tickets, p).unwrap();
            assert!(
                (estimate - exact).abs() <= 0.045 * exact + 1.0,
                "p{p}: {estimate} s for {exact} s"
            );
        }
    }

    fn exact_percentile(sorted: &[f64], p: f64) -> f64 {
        let position = p * (sorted.len() - 1) as f64;
        let below = position.floor() as usize;
        let above = (below + 1).min(sorted.len() - 1);
        sorted[below] + (position - position.floor()) * (sorted[above] - sorted[below])
    }
}
