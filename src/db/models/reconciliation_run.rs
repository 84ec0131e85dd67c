//! The `reconciliation_runs` table: one row per reconciliation run, inserted `running` when it
//! starts and finished with its counts (docs/billing.md, "Reconciliation").

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::reconciliation_runs;
use crate::errors::AppResult;

#[derive(Debug, Insertable)]
#[diesel(table_name = reconciliation_runs)]
pub struct NewReconciliationRun {
    pub id: Uuid,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
}

/// What a run counted, written when it ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, AsChangeset)]
#[diesel(table_name = reconciliation_runs)]
pub struct RunCounts {
    pub charges_checked: i32,
    pub refunds_checked: i32,
    pub payments_listed: i32,
    pub findings: i32,
    pub repaired: i32,
}

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = reconciliation_runs, check_for_backend(diesel::pg::Pg))]
pub struct ReconciliationRunRow {
    pub id: Uuid,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: String,
    pub error: Option<String>,
    pub charges_checked: i32,
    pub refunds_checked: i32,
    pub payments_listed: i32,
    pub findings: i32,
    pub repaired: i32,
}

impl NewReconciliationRun {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> AppResult<()> {
        diesel::insert_into(reconciliation_runs::table)
            .values(self)
            .execute(conn)
            .await?;
        Ok(())
    }
}

impl ReconciliationRunRow {
    /// Ends the run `id`: `completed`, or `failed` with `error`, with what it counted.
    pub async fn finish(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        counts: RunCounts,
        error: Option<&str>,
    ) -> AppResult<()> {
        diesel::update(reconciliation_runs::table.find(id))
            .set((
                counts,
                reconciliation_runs::status.eq(if error.is_some() {
                    "failed"
                } else {
                    "completed"
                }),
                reconciliation_runs::error.eq(error),
                reconciliation_runs::finished_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// How long until a run is due, `interval` after the latest run of any instance began
    /// (zero when overdue); `None` before the first run.
    pub async fn next_due_in(
        conn: &mut AsyncPgConnection,
        interval: std::time::Duration,
    ) -> AppResult<Option<std::time::Duration>> {
        #[derive(QueryableByName)]
        struct DueIn {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
            seconds: Option<f64>,
        }
        let due: DueIn = crate::db::KeepPrepared(
            diesel::sql_query(
                "SELECT EXTRACT(EPOCH FROM max(started_at) + make_interval(secs => $1) - now())\
                 ::float8 AS seconds FROM reconciliation_runs",
            )
            .bind::<diesel::sql_types::Double, _>(interval.as_secs_f64()),
        )
        .get_result(conn)
        .await?;
        Ok(due
            .seconds
            .map(|seconds| std::time::Duration::from_secs_f64(seconds.clamp(0.0, 1e9))))
    }

    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<Option<Self>> {
        Ok(reconciliation_runs::table
            .find(id)
            .select(Self::as_select())
            .first(conn)
            .await
            .optional()?)
    }
}
