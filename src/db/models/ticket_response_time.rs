//! The `tickets` table's response-time columns (`first_agent_response_at`, `solved_at`, set by
//! the triggers of migration 000017): the median and 90th percentile of the time to the first
//! agent answer and to resolution over a range, exact (`percentile_cont`), read through the
//! partial indexes `tickets_first_response_idx` and `tickets_solved_idx` (index-only scans whose
//! cost grows with the tickets of the range, not of the account).

use chrono::{DateTime, Utc};
use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::errors::AppResult;

/// A distribution of durations, in seconds.
#[derive(Clone, Debug, PartialEq, diesel::QueryableByName)]
pub struct ResponseTimes {
    #[diesel(sql_type = sql_types::BigInt)]
    pub tickets: i64,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Double>)]
    pub median_seconds: Option<f64>,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Double>)]
    pub p90_seconds: Option<f64>,
}

impl ResponseTimes {
    /// From creation to the first agent answer, over the tickets created in `[from, until)`.
    pub async fn first_response(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> AppResult<Self> {
        Ok(KeepPrepared(
            diesel::sql_query(
                "SELECT count(*) AS tickets, \
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS median_seconds, \
                 percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90_seconds \
                 FROM (SELECT extract(epoch FROM first_agent_response_at - created_at)::float8 \
                 AS seconds FROM tickets WHERE account_id = $1 \
                 AND first_agent_response_at IS NOT NULL \
                 AND created_at >= $2 AND created_at < $3) answered",
            )
            .bind::<sql_types::Uuid, _>(account_id)
            .bind::<sql_types::Timestamptz, _>(from)
            .bind::<sql_types::Timestamptz, _>(until),
        )
        .get_result(conn)
        .await?)
    }

    /// From creation to being solved, over the tickets solved in `[from, until)` and not
    /// reopened since.
    pub async fn resolution(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> AppResult<Self> {
        Ok(KeepPrepared(
            diesel::sql_query(
                "SELECT count(*) AS tickets, \
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS median_seconds, \
                 percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90_seconds \
                 FROM (SELECT extract(epoch FROM solved_at - created_at)::float8 AS seconds \
                 FROM tickets WHERE account_id = $1 AND solved_at IS NOT NULL \
                 AND solved_at >= $2 AND solved_at < $3) solved",
            )
            .bind::<sql_types::Uuid, _>(account_id)
            .bind::<sql_types::Timestamptz, _>(from)
            .bind::<sql_types::Timestamptz, _>(until),
        )
        .get_result(conn)
        .await?)
    }
}
