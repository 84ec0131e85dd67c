//! The `ticket_counts_open` rollup: per account, status (new, open, pending, on hold) and priority, the
//! tickets not deleted, kept by the `tickets_roll_up` trigger (migration 000017).

use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::db::KeepPrepared;
use crate::domain::{TicketPriority, TicketStatus};
use crate::errors::AppResult;

#[derive(diesel::QueryableByName)]
struct OpenCountRow {
    #[diesel(sql_type = sql_types::Text)]
    status: String,
    #[diesel(sql_type = sql_types::Text)]
    priority: String,
    #[diesel(sql_type = sql_types::BigInt)]
    tickets: i64,
}

/// How many unresolved tickets have a status and a priority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenTicketCount {
    pub status: TicketStatus,
    pub priority: TicketPriority,
    pub tickets: i64,
}

impl OpenTicketCount {
    /// The account's non-zero counts, by status then priority (as text).
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
    ) -> AppResult<Vec<Self>> {
        let rows: Vec<OpenCountRow> = KeepPrepared(
            diesel::sql_query(
                "SELECT status, priority, tickets FROM ticket_counts_open \
                 WHERE account_id = $1 AND tickets <> 0 ORDER BY status, priority",
            )
            .bind::<sql_types::Uuid, _>(account_id),
        )
        .load(conn)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(Self {
                    status: TicketStatus::parse(&row.status)
                        .map_err(|problem| corrupt("ticket_counts_open.status", problem))?,
                    priority: TicketPriority::parse(&row.priority)
                        .map_err(|problem| corrupt("ticket_counts_open.priority", problem))?,
                    tickets: row.tickets,
                })
            })
            .collect()
    }
}
