//! The `revenue_daily` rollup: per account, currency and UTC day, the charges that succeeded
//! (made that day) and the refunds recorded that day, kept by the `charges_roll_up` trigger in
//! the transaction of every change to a charge (migration 000017, docs/dashboard.md).

use chrono::NaiveDate;
use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::errors::AppResult;

/// One day of one currency.
#[derive(Clone, Debug, PartialEq, Eq, diesel::QueryableByName)]
pub struct RevenueDay {
    #[diesel(sql_type = sql_types::Text)]
    pub currency: String,
    #[diesel(sql_type = sql_types::Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = sql_types::BigInt)]
    pub charge_count: i64,
    #[diesel(sql_type = sql_types::BigInt)]
    pub gross_minor: i64,
    #[diesel(sql_type = sql_types::BigInt)]
    pub refunded_minor: i64,
}

impl RevenueDay {
    /// The account's days from `start` to `end` (included) with anything recorded, by currency
    /// then day: one index range, O(days × currencies) rows whatever the number of charges.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        start: NaiveDate,
        end: NaiveDate,
    ) -> AppResult<Vec<Self>> {
        Ok(KeepPrepared(
            diesel::sql_query(
                "SELECT currency, day, charge_count, gross_minor, refunded_minor \
                 FROM revenue_daily WHERE account_id = $1 AND day BETWEEN $2 AND $3 \
                 AND (charge_count <> 0 OR gross_minor <> 0 OR refunded_minor <> 0) \
                 ORDER BY currency, day",
            )
            .bind::<sql_types::Uuid, _>(account_id)
            .bind::<sql_types::Date, _>(start)
            .bind::<sql_types::Date, _>(end),
        )
        .load(conn)
        .await?)
    }
}
