//! The ticket desk: opening, reading, listing, changing and commenting on tickets, each change
//! recorded in the audit trail in its own transaction.
//!
//! Agents, admins and API keys work on the whole account; a customer raises tickets for
//! themselves, sees only those, comments on them publicly and may reopen them. Every change
//! locks the ticket row first and decides on the state it locked: the etag check, the lifecycle
//! rules and the open-ticket limit all hold under concurrency.

use std::time::Duration;

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::ticket_cache::{Cached, TicketCache};
use super::{Page, paginate, rows_to_fetch};
use crate::auth::Caller;
use crate::db::PgPool;
use crate::db::models::activity::changes_to_json;
use crate::db::models::comment::actor_columns;
use crate::db::models::{
    ActivityRow, CommentRow, NewActivity, NewComment, NewTicket, NewUser, TicketChangeset,
    TicketRow, User,
};
use crate::domain::{
    AccountId, Actor, Comment, CommentBody, Etag, FieldChange, FieldChanges, InvalidValue,
    NewTicketRequest, PageCursor, PageSize, Role, Ticket, TicketAction, TicketActivity,
    TicketDescription, TicketFilter, TicketId, TicketPriority, TicketStatus, TicketSubject,
    TicketTransition, UserId,
};
use crate::errors::{AppError, AppResult, PreconditionViolation, Resource};
use crate::idempotency::{Idempotent, Outcome};
use crate::{in_idempotent_transaction, in_transaction};

/// Who a ticket is for, as the caller may ask.
#[derive(Debug)]
enum Requester {
    /// The calling customer.
    Caller(UserId),
    /// Someone else, by email: found in the account or added to it as a customer.
    ByEmail(crate::domain::Email),
}

/// The content fields UpdateTicket may change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct TicketEdits {
    pub subject: Option<TicketSubject>,
    pub description: Option<TicketDescription>,
    pub priority: Option<TicketPriority>,
}

#[derive(Clone)]
pub struct TicketDesk {
    pool: PgPool,
    cache: TicketCache,
    max_open_per_requester: u32,
}

impl TicketDesk {
    pub fn new(pool: PgPool, cache: TicketCache, max_open_per_requester: u32) -> Self {
        Self {
            pool,
            cache,
            max_open_per_requester,
        }
    }

    /// Opens a ticket in status NEW. Customers raise tickets for themselves and cannot assign
    /// them; others name the requester by email, and an assignee must be an active agent or
    /// admin of the account. A requester with the maximum of open tickets gets
    /// FAILED_PRECONDITION.
    pub async fn create(
        &self,
        caller: &Caller,
        request: NewTicketRequest,
        budget: Duration,
        idempotent: Option<&Idempotent<'_, Ticket>>,
    ) -> AppResult<Outcome<Ticket>> {
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
        let outcome =
            in_idempotent_transaction!(&self.pool, budget, idempotent, as_ticket, |conn| {
                if let Some(assignee) = request.assignee {
                    ensure_agent(conn, account_id, assignee, "ticket.assignee_id").await?;
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
                self.ensure_below_open_limit(conn, account_id, requester.id)
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
                let mut changes = FieldChanges::new();
                for (field, value) in [
                    ("subject", Some(row.subject.clone())),
                    ("priority", Some(row.priority.clone())),
                    ("status", Some(row.status.clone())),
                    ("requester_id", Some(row.requester_id.to_string())),
                    ("assignee_id", row.assignee_id.map(|id| id.to_string())),
                ] {
                    if value.is_some() {
                        changes.insert(
                            field.to_owned(),
                            FieldChange {
                                old: None,
                                new: value,
                            },
                        );
                    }
                }
                record(conn, caller.actor(), &row, TicketAction::Created, &changes).await?;
                Ok::<_, AppError>((row, requester.email))
            })?;
        self.finish(outcome).await
    }

    /// Caches a fresh result and turns it into the domain view.
    async fn finish(&self, outcome: Outcome<(TicketRow, String)>) -> AppResult<Outcome<Ticket>> {
        Ok(match outcome {
            Outcome::Done((row, email)) => {
                if row.deleted_at.is_some() {
                    let id = TicketId::from_uuid(row.id);
                    let account_id = AccountId::from_uuid(row.account_id);
                    self.cache.store_deleted(account_id, id, row.version).await;
                } else {
                    self.cache.store(&row, &email).await;
                }
                Outcome::Done(row.into_domain(&email)?)
            }
            Outcome::Failed(error) => Outcome::Failed(error),
            Outcome::Replay(row) => Outcome::Replay(row),
        })
    }

    /// Fails with FAILED_PRECONDITION when `requester` already has the maximum of open tickets.
    /// Locks the requester's row first, so that concurrent creates for one requester are
    /// counted one after the other.
    async fn ensure_below_open_limit(
        &self,
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        requester: Uuid,
    ) -> AppResult<()> {
        User::lock(conn, account_id.as_uuid(), requester).await?;
        let open = TicketRow::count_open_for_requester(conn, account_id, requester).await?;
        if open >= i64::from(self.max_open_per_requester) {
            return Err(AppError::FailedPrecondition {
                reason: "OPEN_TICKET_LIMIT",
                message: format!(
                    "the requester has {open} open tickets; at most {} may be open at once",
                    self.max_open_per_requester
                ),
                violations: vec![PreconditionViolation {
                    kind: "OPEN_TICKETS".to_owned(),
                    subject: format!("users/{requester}"),
                    description: format!(
                        "at most {} open (not solved or closed) tickets per requester",
                        self.max_open_per_requester
                    ),
                }],
            });
        }
        Ok(())
    }

    /// One ticket, from the cache when it has it; a customer's view is limited to their own.
    pub async fn get(&self, caller: &Caller, id: TicketId, budget: Duration) -> AppResult<Ticket> {
        let visible = |ticket: Ticket| match caller.restricted_to_user() {
            Some(user) if ticket.requester_id != user => {
                Err(AppError::not_found(Resource::Ticket, id))
            }
            Some(_) | None => Ok(ticket),
        };
        match self.cache.get(caller.account_id, id).await {
            Cached::Ticket(ticket) => return visible(ticket),
            Cached::Deleted => return Err(AppError::not_found(Resource::Ticket, id)),
            Cached::Unknown => {}
        }
        let (row, email) = in_transaction!(&self.pool, budget, |conn| {
            TicketRow::find(conn, caller.account_id, None, id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::Ticket, id))
        })?;
        self.cache.store(&row, &email).await;
        visible(row.into_domain(&email)?)
    }

    /// A page of the tickets the caller may see, as `filter` asks, after `after`.
    pub async fn list(
        &self,
        caller: &Caller,
        filter: &TicketFilter,
        page_size: PageSize,
        after: Option<PageCursor>,
        budget: Duration,
    ) -> AppResult<Page<Ticket>> {
        let rows = in_transaction!(&self.pool, budget, |conn| {
            Ok::<_, AppError>(
                TicketRow::list(
                    conn,
                    caller.account_id,
                    caller.restricted_to_user(),
                    filter,
                    after,
                    rows_to_fetch(page_size),
                )
                .await?,
            )
        })?;
        let order = filter.order.field;
        let page = paginate(rows, page_size, |(row, _)| row.position(order));
        page.try_map(|(row, email)| row.into_domain(&email))
    }

    /// Changes subject, description or priority. Agents and admins; not on closed tickets.
    pub async fn update(
        &self,
        caller: &Caller,
        id: TicketId,
        edits: TicketEdits,
        etag: Option<Etag>,
        budget: Duration,
        idempotent: Option<&Idempotent<'_, Ticket>>,
    ) -> AppResult<Outcome<Ticket>> {
        caller.require(Role::Agent)?;
        self.change(caller, id, etag, budget, idempotent, |current| {
            ensure_not_closed(current, "update")?;
            let mut changes = FieldChanges::new();
            let mut changeset = TicketChangeset::default();
            if let Some(subject) = &edits.subject
                && subject.as_str() != current.subject
            {
                note(
                    &mut changes,
                    "subject",
                    Some(&current.subject),
                    Some(subject.as_str()),
                );
                changeset.subject = Some(subject.as_str().to_owned());
            }
            if let Some(description) = &edits.description
                && description.as_str() != current.description
            {
                note(
                    &mut changes,
                    "description",
                    Some(&current.description),
                    Some(description.as_str()),
                );
                changeset.description = Some(description.as_str().to_owned());
            }
            if let Some(priority) = edits.priority
                && priority.as_str() != current.priority
            {
                note(
                    &mut changes,
                    "priority",
                    Some(&current.priority),
                    Some(priority.as_str()),
                );
                changeset.priority = Some(priority.as_str().to_owned());
            }
            Ok(Change {
                action: TicketAction::Updated,
                changeset,
                changes,
                assignee_to_check: None,
                counts_against_limit: false,
            })
        })
        .await
    }

    /// Assigns the ticket (or unassigns it, with `None`); a new ticket becomes open.
    pub async fn assign(
        &self,
        caller: &Caller,
        id: TicketId,
        assignee: Option<UserId>,
        etag: Option<Etag>,
        budget: Duration,
        idempotent: Option<&Idempotent<'_, Ticket>>,
    ) -> AppResult<Outcome<Ticket>> {
        caller.require(Role::Agent)?;
        self.change(caller, id, etag, budget, idempotent, |current| {
            ensure_not_closed(current, "assign")?;
            let status = parse_status(current)?;
            let mut changes = FieldChanges::new();
            let mut changeset = TicketChangeset::default();
            let old = current.assignee_id.map(|id| id.to_string());
            let new = assignee.map(|id| id.to_string());
            if old != new {
                note(&mut changes, "assignee_id", old.as_deref(), new.as_deref());
                changeset.assignee_id = Some(assignee.map(|id| id.as_uuid()));
            }
            let next = if assignee.is_some() {
                status.after_assignment()
            } else {
                status
            };
            if next != status {
                note(
                    &mut changes,
                    "status",
                    Some(status.as_str()),
                    Some(next.as_str()),
                );
                changeset.status = Some(next.as_str().to_owned());
            }
            Ok(Change {
                action: TicketAction::Assigned,
                changeset,
                changes,
                assignee_to_check: assignee,
                counts_against_limit: false,
            })
        })
        .await
    }

    /// Resolves, reopens or closes the ticket, if its status allows.
    pub async fn transition(
        &self,
        caller: &Caller,
        id: TicketId,
        transition: TicketTransition,
        etag: Option<Etag>,
        budget: Duration,
        idempotent: Option<&Idempotent<'_, Ticket>>,
    ) -> AppResult<Outcome<Ticket>> {
        if transition != TicketTransition::Reopen {
            // A customer may reopen their own ticket; everything else is the agents' work.
            caller.require(Role::Agent)?;
        }
        self.change(caller, id, etag, budget, idempotent, |current| {
            let status = parse_status(current)?;
            if !transition.allowed_from().contains(&status) {
                let allowed: Vec<&str> = transition
                    .allowed_from()
                    .iter()
                    .map(TicketStatus::as_str)
                    .collect();
                return Err(AppError::FailedPrecondition {
                    reason: "ILLEGAL_TRANSITION",
                    message: format!(
                        "the ticket is {status}; {} needs it to be {}",
                        transition.name(),
                        allowed.join(" or ")
                    ),
                    violations: vec![status_violation(current, &allowed)],
                });
            }
            if transition == TicketTransition::Resolve && current.assignee_id.is_none() {
                return Err(AppError::FailedPrecondition {
                    reason: "TICKET_UNASSIGNED",
                    message: "a ticket needs an assignee to be resolved".to_owned(),
                    violations: vec![PreconditionViolation {
                        kind: "TICKET_ASSIGNEE".to_owned(),
                        subject: format!("tickets/{}", current.id),
                        description: "assign the ticket first (AssignTicket)".to_owned(),
                    }],
                });
            }
            let target = transition.target();
            let mut changes = FieldChanges::new();
            note(
                &mut changes,
                "status",
                Some(status.as_str()),
                Some(target.as_str()),
            );
            Ok(Change {
                action: match transition {
                    TicketTransition::Resolve => TicketAction::Resolved,
                    TicketTransition::Reopen => TicketAction::Reopened,
                    TicketTransition::Close => TicketAction::Closed,
                },
                changeset: TicketChangeset {
                    status: Some(target.as_str().to_owned()),
                    ..TicketChangeset::default()
                },
                changes,
                assignee_to_check: None,
                counts_against_limit: transition == TicketTransition::Reopen,
            })
        })
        .await
    }

    /// Soft-deletes the ticket: it disappears from every read. Admins only.
    pub async fn delete(
        &self,
        caller: &Caller,
        id: TicketId,
        etag: Option<Etag>,
        budget: Duration,
        idempotent: Option<&Idempotent<'_, Ticket>>,
    ) -> AppResult<Outcome<Ticket>> {
        caller.require(Role::Admin)?;
        self.change(caller, id, etag, budget, idempotent, |_| {
            Ok(Change {
                action: TicketAction::Deleted,
                changeset: TicketChangeset {
                    deleted_at: Some(chrono::Utc::now()),
                    ..TicketChangeset::default()
                },
                changes: FieldChanges::new(),
                assignee_to_check: None,
                counts_against_limit: false,
            })
        })
        .await
    }

    /// The one way a ticket changes: lock it (as the caller may see it), check the etag, let
    /// `decide` turn the locked state into a change (or refuse), write the change and its audit
    /// record together, then refresh the cache.
    async fn change(
        &self,
        caller: &Caller,
        id: TicketId,
        etag: Option<Etag>,
        budget: Duration,
        idempotent: Option<&Idempotent<'_, Ticket>>,
        decide: impl FnOnce(&TicketRow) -> AppResult<Change> + Send,
    ) -> AppResult<Outcome<Ticket>> {
        let account_id = caller.account_id;
        let outcome = in_idempotent_transaction!(
            &self.pool,
            budget,
            idempotent,
            as_ticket,
            |conn| {
                let (current, email) =
                    TicketRow::find_for_update(conn, account_id, caller.restricted_to_user(), id)
                        .await?
                        .ok_or_else(|| AppError::not_found(Resource::Ticket, id))?;
                if let Some(etag) = etag
                    && etag.version() != current.version
                {
                    return Err(AppError::Aborted {
                        reason: "ETAG_MISMATCH",
                        message: format!(
                            "the ticket changed since etag {etag} was read (it is now v{}); read it again",
                            current.version
                        ),
                    });
                }
                let change = decide(&current)?;
                if let Some(assignee) = change.assignee_to_check {
                    ensure_agent(conn, account_id, assignee, "assignee_id").await?;
                }
                if change.counts_against_limit {
                    self.ensure_below_open_limit(conn, account_id, current.requester_id)
                        .await?;
                }
                if change.changes.is_empty() && change.action != TicketAction::Deleted {
                    // Nothing differs: no write, no record, the same etag.
                    return Ok((current, email));
                }
                let row = TicketRow::apply(conn, current.id, &change.changeset).await?;
                record(conn, caller.actor(), &row, change.action, &change.changes).await?;
                Ok::<_, AppError>((row, email))
            }
        )?;
        self.finish(outcome).await
    }

    /// Adds a comment. Customers write public replies on their own tickets only; internal
    /// notes are for agents. Not on closed tickets.
    pub async fn add_comment(
        &self,
        caller: &Caller,
        ticket_id: TicketId,
        body: CommentBody,
        public: bool,
        budget: Duration,
        idempotent: Option<&Idempotent<'_, Comment>>,
    ) -> AppResult<Outcome<Comment>> {
        if !public {
            caller.require(Role::Agent)?;
        }
        let account_id = caller.account_id;
        let outcome = in_idempotent_transaction!(
            &self.pool,
            budget,
            idempotent,
            |(_, _, comment): &(TicketRow, String, CommentRow)| comment.clone().into_domain(),
            |conn| {
                let (current, email) = TicketRow::find_for_update(
                    conn,
                    account_id,
                    caller.restricted_to_user(),
                    ticket_id,
                )
                .await?
                .ok_or_else(|| AppError::not_found(Resource::Ticket, ticket_id))?;
                ensure_not_closed(&current, "comment on")?;
                let (author_user_id, author_api_key_id) = actor_columns(caller.actor());
                let comment = NewComment {
                    id: Uuid::now_v7(),
                    account_id: account_id.as_uuid(),
                    ticket_id: current.id,
                    author_user_id,
                    author_api_key_id,
                    body: body.as_str(),
                    public,
                }
                .insert(conn)
                .await?;
                let row = TicketRow::touch(conn, current.id).await?;
                let mut changes = FieldChanges::new();
                note(
                    &mut changes,
                    "comment_id",
                    None,
                    Some(&comment.id.to_string()),
                );
                note(
                    &mut changes,
                    "comment_visibility",
                    None,
                    Some(if public { "public" } else { "internal" }),
                );
                record(
                    conn,
                    caller.actor(),
                    &row,
                    TicketAction::Commented,
                    &changes,
                )
                .await?;
                Ok::<_, AppError>((row, email, comment))
            }
        )?;
        Ok(match outcome {
            Outcome::Done((row, email, comment)) => {
                self.cache.store(&row, &email).await;
                Outcome::Done(comment.into_domain()?)
            }
            Outcome::Failed(error) => Outcome::Failed(error),
            Outcome::Replay(row) => Outcome::Replay(row),
        })
    }

    /// A page of a ticket's comments, oldest first; customers see public ones only.
    pub async fn list_comments(
        &self,
        caller: &Caller,
        ticket_id: TicketId,
        page_size: PageSize,
        after: Option<PageCursor>,
        budget: Duration,
    ) -> AppResult<Page<Comment>> {
        let rows = in_transaction!(&self.pool, budget, |conn| {
            TicketRow::find(
                conn,
                caller.account_id,
                caller.restricted_to_user(),
                ticket_id,
            )
            .await?
            .ok_or_else(|| AppError::not_found(Resource::Ticket, ticket_id))?;
            Ok::<_, AppError>(
                CommentRow::list_for_ticket(
                    conn,
                    caller.account_id.as_uuid(),
                    ticket_id.as_uuid(),
                    caller.role().works_tickets(),
                    after,
                    rows_to_fetch(page_size),
                )
                .await?,
            )
        })?;
        let page = paginate(rows, page_size, |row| PageCursor {
            at: row.created_at,
            id: row.id,
        });
        page.try_map(CommentRow::into_domain)
    }

    /// A page of a ticket's audit trail, newest first. Agents and admins.
    pub async fn list_activity(
        &self,
        caller: &Caller,
        ticket_id: TicketId,
        page_size: PageSize,
        after: Option<PageCursor>,
        budget: Duration,
    ) -> AppResult<Page<TicketActivity>> {
        caller.require(Role::Agent)?;
        let rows = in_transaction!(&self.pool, budget, |conn| {
            TicketRow::find(conn, caller.account_id, None, ticket_id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::Ticket, ticket_id))?;
            Ok::<_, AppError>(
                ActivityRow::list_for_ticket(
                    conn,
                    caller.account_id.as_uuid(),
                    ticket_id.as_uuid(),
                    after,
                    rows_to_fetch(page_size),
                )
                .await?,
            )
        })?;
        let page = paginate(rows, page_size, |row| PageCursor {
            at: row.created_at,
            id: row.id,
        });
        page.try_map(ActivityRow::into_domain)
    }
}

/// The domain view of a transaction's ticket result, for the stored response.
fn as_ticket((row, email): &(TicketRow, String)) -> AppResult<Ticket> {
    row.clone().into_domain(email)
}

/// What a change does to a locked ticket.
struct Change {
    action: TicketAction,
    changeset: TicketChangeset,
    changes: FieldChanges,
    /// An assignee that must be an active agent or admin of the account.
    assignee_to_check: Option<UserId>,
    /// Whether the change opens the ticket again, so the requester's limit applies.
    counts_against_limit: bool,
}

fn parse_status(row: &TicketRow) -> AppResult<TicketStatus> {
    TicketStatus::parse(&row.status)
        .map_err(|problem| crate::db::models::corrupt("tickets.status", problem))
}

fn status_violation(row: &TicketRow, allowed: &[&str]) -> PreconditionViolation {
    PreconditionViolation {
        kind: "TICKET_STATUS".to_owned(),
        subject: format!("tickets/{}", row.id),
        description: format!(
            "the ticket is {}; allowed: {}",
            row.status,
            allowed.join(", ")
        ),
    }
}

fn ensure_not_closed(row: &TicketRow, action: &str) -> AppResult<()> {
    if row.status == TicketStatus::Closed.as_str() {
        return Err(AppError::FailedPrecondition {
            reason: "TICKET_CLOSED",
            message: format!("the ticket is closed; nobody can {action} it any more"),
            violations: vec![status_violation(row, &[])],
        });
    }
    Ok(())
}

fn note(changes: &mut FieldChanges, field: &str, old: Option<&str>, new: Option<&str>) {
    changes.insert(
        field.to_owned(),
        FieldChange {
            old: old.map(str::to_owned),
            new: new.map(str::to_owned),
        },
    );
}

/// Writes the audit record of a change, in the change's transaction.
async fn record(
    conn: &mut AsyncPgConnection,
    actor: Actor,
    row: &TicketRow,
    action: TicketAction,
    changes: &FieldChanges,
) -> AppResult<()> {
    let (actor_user_id, actor_api_key_id) = actor_columns(actor);
    NewActivity {
        id: Uuid::now_v7(),
        account_id: row.account_id,
        ticket_id: row.id,
        actor_user_id,
        actor_api_key_id,
        action: action.as_str(),
        changes: changes_to_json(changes),
    }
    .insert(conn)
    .await?;
    Ok(())
}

async fn ensure_agent(
    conn: &mut AsyncPgConnection,
    account_id: AccountId,
    assignee: UserId,
    field: &str,
) -> AppResult<()> {
    match User::find_in_account(conn, account_id.as_uuid(), assignee.as_uuid()).await? {
        Some(user) if user.active && user.role != Role::Customer.as_str() => Ok(()),
        Some(_) | None => Err(AppError::invalid_field(
            field,
            &InvalidValue::new("names no active agent or admin of this account"),
        )),
    }
}
