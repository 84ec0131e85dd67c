//! The `ticket_counts_daily` rollup: per account and UTC day, the tickets created and the moves
//! into solved or closed, kept by the `tickets_roll_up` trigger in the transaction of every
//! change to a ticket (migration 000017, docs/dashboard.md).

use chrono::NaiveDate;
use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::errors::AppResult;

/// One day's counts.
#[derive(Clone, Debug, PartialEq, Eq, diesel::QueryableByName)]
pub struct TicketDay {
    #[diesel(sql_type = sql_types::Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = sql_types::BigInt)]
    pub created: i64,
    #[diesel(sql_type = sql_types::BigInt)]
    pub solved: i64,
}

impl TicketDay {
    /// The account's days from `start` to `end` (included) with anything counted, oldest first.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        start: NaiveDate,
        end: NaiveDate,
    ) -> AppResult<Vec<Self>> {
        Ok(KeepPrepared(
            diesel::sql_query(
                "SELECT day, created, solved FROM ticket_counts_daily \
                 WHERE account_id = $1 AND day BETWEEN $2 AND $3 \
                 AND (created <> 0 OR solved <> 0) ORDER BY day",
            )
            .bind::<sql_types::Uuid, _>(account_id)
            .bind::<sql_types::Date, _>(start)
            .bind::<sql_types::Date, _>(end),
        )
        .load(conn)
        .await?)
    }
}
