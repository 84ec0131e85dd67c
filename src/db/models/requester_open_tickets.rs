//! The `requester_open_tickets` counter: per requester, the unresolved (new, open, pending, on
//! hold) tickets not deleted, kept by the `tickets_roll_up` trigger (migration 000021) in the
//! transaction of every change that moves it. An import batch reads it for the open-ticket rule:
//! one key per requester, where counting their tickets grew with every batch imported.

use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::domain::AccountId;
use crate::errors::AppResult;

#[derive(diesel::QueryableByName)]
pub struct RequesterOpenTicketsRow {
    #[diesel(sql_type = sql_types::Uuid)]
    requester_id: Uuid,
    #[diesel(sql_type = sql_types::BigInt)]
    tickets: i64,
}

impl RequesterOpenTicketsRow {
    /// Each of `requesters`' open tickets in the account; requesters that never had one are left
    /// out. Read after locking the requesters' user rows (as CreateTicket locks its requester),
    /// so no ticket of theirs can be created in between; the counter then includes every
    /// committed change, also those made since the previous import batch.
    pub async fn for_requesters(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        requesters: &[Uuid],
    ) -> AppResult<Vec<(Uuid, i64)>> {
        let rows: Vec<RequesterOpenTicketsRow> = KeepPrepared(
            diesel::sql_query(
                "SELECT requester_id, tickets FROM requester_open_tickets \
                 WHERE account_id = $1 AND requester_id = ANY($2)",
            )
            .bind::<sql_types::Uuid, _>(account_id.as_uuid())
            .bind::<sql_types::Array<sql_types::Uuid>, _>(requesters),
        )
        .load(conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.requester_id, row.tickets))
            .collect())
    }
}
