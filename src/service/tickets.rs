//! Opening, reading and listing tickets.

use std::time::Duration;

use diesel_async::AsyncConnection;

use crate::db::models::{Account, NewTicket, NewUser, TicketRow, User};
use crate::db::{self, PgPool};
use crate::domain::{
    AccountId, InvalidValue, NewTicketRequest, PageSize, Ticket, TicketCursor, TicketId,
    TicketStatus, UserId,
};
use crate::errors::{AppError, AppResult, Resource};

/// Role names as stored in `users.role`.
const CUSTOMER_ROLE: &str = "customer";

/// The tickets of every account, reached through one account at a time.
#[derive(Clone)]
pub struct TicketDesk {
    pool: PgPool,
}

/// One page of a ticket list and where the next one starts.
#[derive(Debug)]
pub struct TicketPage {
    pub tickets: Vec<Ticket>,
    pub next: Option<TicketCursor>,
}

impl TicketDesk {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Opens a ticket in status NEW. The requester is found by email in the account, or added
    /// to it as a customer; an assignee must be an agent or admin of the account. All of it
    /// commits together or not at all.
    pub async fn create(
        &self,
        account_id: AccountId,
        request: NewTicketRequest,
        budget: Duration,
    ) -> AppResult<Ticket> {
        let mut conn = db::connection(&self.pool).await?;
        conn.transaction(async |conn| {
            db::limit_statements_to(conn, budget).await?;
            if Account::find(conn, account_id.as_uuid()).await?.is_none() {
                return Err(AppError::Unauthenticated {
                    reason: "UNKNOWN_ACCOUNT",
                    message: format!("no account has the id {account_id}"),
                });
            }
            if let Some(assignee) = request.assignee {
                ensure_agent(conn, account_id, assignee).await?;
            }
            let requester = NewUser {
                id: UserId::generate().as_uuid(),
                account_id: account_id.as_uuid(),
                email: request.requester_email.as_str(),
                display_name: "",
                role: CUSTOMER_ROLE,
            }
            .find_or_insert_by_email(conn)
            .await?;
            let row = NewTicket {
                id: TicketId::generate().as_uuid(),
                account_id: account_id.as_uuid(),
                subject: request.subject.as_str(),
                description: request.description.as_str(),
                priority: request.priority.as_str(),
                status: TicketStatus::New.as_str(),
                requester_id: requester.id,
                assignee_id: request.assignee.map(|id| id.as_uuid()),
            }
            .insert(conn)
            .await?;
            row.into_domain(&requester.email)
        })
        .await
    }

    pub async fn get(
        &self,
        account_id: AccountId,
        id: TicketId,
        budget: Duration,
    ) -> AppResult<Ticket> {
        let mut conn = db::connection(&self.pool).await?;
        conn.transaction(async |conn| {
            db::limit_statements_to(conn, budget).await?;
            let (row, requester_email) = TicketRow::find(conn, account_id, id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::Ticket, id))?;
            row.into_domain(&requester_email)
        })
        .await
    }

    /// A page of the account's tickets, newest first, after `after` when given.
    pub async fn list(
        &self,
        account_id: AccountId,
        page_size: PageSize,
        after: Option<TicketCursor>,
        budget: Duration,
    ) -> AppResult<TicketPage> {
        let size = usize::from(page_size.get());
        let mut conn = db::connection(&self.pool).await?;
        conn.transaction(async |conn| {
            db::limit_statements_to(conn, budget).await?;
            // One extra row tells whether another page exists without a count query.
            let mut rows =
                TicketRow::list_for_account(conn, account_id, after, (size + 1) as i64).await?;
            let has_more = rows.len() > size;
            rows.truncate(size);
            let tickets = rows
                .into_iter()
                .map(|(row, requester_email)| row.into_domain(&requester_email))
                .collect::<AppResult<Vec<_>>>()?;
            let next = match tickets.last() {
                Some(last) if has_more => Some(TicketCursor {
                    created_at: last.created_at,
                    id: last.id,
                }),
                _ => None,
            };
            Ok(TicketPage { tickets, next })
        })
        .await
    }
}

async fn ensure_agent(
    conn: &mut diesel_async::AsyncPgConnection,
    account_id: AccountId,
    assignee: UserId,
) -> AppResult<()> {
    match User::find_in_account(conn, account_id.as_uuid(), assignee.as_uuid()).await? {
        Some(user) if user.role != CUSTOMER_ROLE => Ok(()),
        Some(_) | None => Err(AppError::invalid_field(
            "ticket.assignee_id",
            &InvalidValue::new("names no agent or admin of this account"),
        )),
    }
}
