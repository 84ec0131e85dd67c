//! Opening, reading and listing tickets. Agents, admins and API keys work on the whole account;
//! a customer raises tickets for themselves and sees only those.

use std::time::Duration;

use diesel_async::AsyncPgConnection;

use super::{Page, paginate, rows_to_fetch};
use crate::auth::Caller;
use crate::db::PgPool;
use crate::db::models::{NewTicket, NewUser, TicketRow, User};
use crate::domain::{
    Email, InvalidValue, NewTicketRequest, PageCursor, PageSize, Role, Ticket, TicketId,
    TicketStatus, UserId,
};
use crate::errors::{AppError, AppResult, Resource};
use crate::in_transaction;

/// The tickets of every account, reached through the caller's.
#[derive(Clone)]
pub struct TicketDesk {
    pool: PgPool,
}

/// Who a ticket is for, as the caller may ask.
#[derive(Debug)]
pub enum Requester {
    /// The calling customer.
    Caller(UserId),
    /// Someone else, by email: found in the account or added to it as a customer.
    ByEmail(Email),
}

impl TicketDesk {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Opens a ticket in status NEW; everything commits together or not at all. Customers raise
    /// tickets for themselves and cannot assign them; others name the requester by email, and an
    /// assignee must be an agent or admin of the account.
    pub async fn create(
        &self,
        caller: &Caller,
        request: NewTicketRequest,
        budget: Duration,
    ) -> AppResult<Ticket> {
        let requester = match (caller.restricted_to_user(), request.requester_email.clone()) {
            (Some(customer), None) => Requester::Caller(customer),
            (Some(_), Some(_)) => {
                return Err(AppError::invalid_field(
                    "ticket.requester_email",
                    &InvalidValue::new("must be empty: customers raise tickets for themselves"),
                ));
            }
            (None, Some(email)) => Requester::ByEmail(email),
            (None, None) => {
                return Err(AppError::invalid_field(
                    "ticket.requester_email",
                    &InvalidValue::new("an email address is required"),
                ));
            }
        };
        if request.assignee.is_some() {
            caller.require(Role::Agent)?;
        }
        let account_id = caller.account_id;
        in_transaction!(&self.pool, budget, |conn| {
            if let Some(assignee) = request.assignee {
                ensure_agent(conn, caller, assignee).await?;
            }
            let requester = match requester {
                Requester::Caller(user_id) => {
                    User::find_in_account(conn, account_id.as_uuid(), user_id.as_uuid())
                        .await?
                        .ok_or_else(|| AppError::not_found(Resource::User, user_id))?
                }
                Requester::ByEmail(email) => {
                    NewUser {
                        id: UserId::generate().as_uuid(),
                        account_id: account_id.as_uuid(),
                        email: email.as_str(),
                        display_name: "",
                        role: Role::Customer.as_str(),
                        password_hash: None,
                    }
                    .find_or_insert_by_email(conn)
                    .await?
                }
            };
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
    }

    /// One ticket; a customer's view is limited to their own, the rest is NOT_FOUND.
    pub async fn get(&self, caller: &Caller, id: TicketId, budget: Duration) -> AppResult<Ticket> {
        in_transaction!(&self.pool, budget, |conn| {
            let (row, requester_email) =
                TicketRow::find(conn, caller.account_id, caller.restricted_to_user(), id)
                    .await?
                    .ok_or_else(|| AppError::not_found(Resource::Ticket, id))?;
            row.into_domain(&requester_email)
        })
    }

    /// A page of the tickets the caller may see, newest first, after `after` when given.
    pub async fn list(
        &self,
        caller: &Caller,
        page_size: PageSize,
        after: Option<PageCursor>,
        budget: Duration,
    ) -> AppResult<Page<Ticket>> {
        let rows = in_transaction!(&self.pool, budget, |conn| {
            Ok::<_, AppError>(
                TicketRow::list_for_account(
                    conn,
                    caller.account_id,
                    caller.restricted_to_user(),
                    after,
                    rows_to_fetch(page_size),
                )
                .await?,
            )
        })?;
        let page = paginate(rows, page_size, |(row, _)| PageCursor {
            created_at: row.created_at,
            id: row.id,
        });
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|(row, requester_email)| row.into_domain(&requester_email))
                .collect::<AppResult<_>>()?,
            next: page.next,
        })
    }
}

async fn ensure_agent(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    assignee: UserId,
) -> AppResult<()> {
    match User::find_in_account(conn, caller.account_id.as_uuid(), assignee.as_uuid()).await? {
        Some(user) if user.active && user.role != Role::Customer.as_str() => Ok(()),
        Some(_) | None => Err(AppError::invalid_field(
            "ticket.assignee_id",
            &InvalidValue::new("names no active agent or admin of this account"),
        )),
    }
}
