//! The ticket desk: opening, reading, listing, changing and commenting on tickets, each change
//! recorded in the audit trail in its own transaction.
//!
//! Agents, admins and API keys work on the whole account; a customer raises tickets for
//! themselves, sees only those, comments on them publicly and may reopen them. Every change
//! locks the ticket row first and decides on the state it locked: the etag check, the lifecycle
//! rules and the open-ticket limit all hold under concurrency.
//!
//! This file holds the desk and what every change shares (the lock, the lifecycle's refusals,
//! the audit record, the cache after the commit); each other topic has its file: `comments.rs`,
//! `activity.rs` (the audit trail read back), and the reads at volume, `feed.rs` (the change
//! feed), `search.rs` (full-text search) and `export.rs` (ExportTickets;
//! docs/export-and-search.md); `tags.rs` the account's tags with counts (ListTags).

mod activity;
mod comments;
pub mod export;
mod feed;
mod search;
mod tags;

pub use export::{EXPORT_BATCH, Export, ExportBatch, ExportInterruption, ExportSettings};
pub use feed::FeedPage;
pub use search::SearchPage;

use std::sync::Arc;

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::{Page, paginate, rows_to_fetch};
use crate::auth::Caller;
use crate::db::models::activity::changes_to_json;
use crate::db::models::comment::actor_columns;
use crate::db::models::custom_field::CustomFieldRow;
use crate::db::models::ticket_filter::{self, CountedList};
use crate::db::models::{
    FirstPageBound, GroupMemberRow, GroupRow, NewActivity, NewNotification, NewTicket, NewUser,
    TicketChangeset, TicketRow, UserRow,
};
use crate::db::{self, PgPool};
use crate::domain::{
    AccountId, Actor, Catalogue, CustomFieldEdit, Email, Etag, FieldChanges, InvalidValue,
    MAX_TAGS_PER_TICKET, NewTicketRequest, NotificationKind, Opening, PageCursor, PageSize,
    RawValue, Role, RuleViolation, StoredValues, TagSet, Ticket, TicketAction, TicketChange,
    TicketCreatedData, TicketDescription, TicketFilter, TicketId, TicketPriority, TicketSolvedData,
    TicketStatus, TicketSubject, TicketTransition, TotalSize, UserId, ValueProblems,
};
use crate::errors::{AppError, AppResult, PreconditionViolation, Reason, Resource};
use crate::idempotency::{self, KeyedWrite, Outcome, StoredResponse};
use crate::redis::ticket_cache::{Cached, TicketCache};
use crate::scope::RequestScope;

/// Who a ticket is for, as the caller may ask.
#[derive(Debug)]
enum Requester {
    /// The calling customer.
    Caller(UserId),
    /// Someone else, by email: found in the account or added to it as a customer.
    ByEmail(Email),
}

/// The content fields UpdateTicket may change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct TicketEdits {
    pub subject: Option<TicketSubject>,
    pub description: Option<TicketDescription>,
    pub priority: Option<TicketPriority>,
    /// The whole set of tags, replacing the ticket's.
    pub tags: Option<TagSet>,
    /// Custom field values as sent, checked against the catalogue when the change is made.
    pub custom_fields: Option<RawFieldEdit>,
}

/// Custom field values an update sends, as sent.
#[derive(Debug)]
pub enum RawFieldEdit {
    /// Mask `custom_fields`: these values, all others cleared.
    Replace(Vec<(String, RawValue)>),
    /// Masks `custom_fields.<key>`: each key set (null clears it), the others left as they are.
    Set(Vec<(String, RawValue)>),
}

/// The request's refusals of custom field values, each named `ticket.custom_fields.<key>`.
fn refused_values(problems: ValueProblems) -> AppError {
    let mut violations = crate::errors::FieldViolations::new();
    for (key, problem) in problems {
        violations.add(format!("ticket.custom_fields.{key}"), &problem);
    }
    AppError::InvalidArgument(violations)
}

#[derive(Clone)]
pub struct TicketDesk {
    pool: PgPool,
    cache: TicketCache,
    max_open_per_requester: u32,
    /// How exports run (`export.rs`).
    exports: ExportSettings,
    /// The domain of the notifications' `Message-ID`s (the public base URL's host).
    message_domain: Arc<str>,
}

impl TicketDesk {
    pub fn new(
        pool: PgPool,
        cache: TicketCache,
        max_open_per_requester: u32,
        message_domain: &str,
    ) -> Self {
        Self {
            pool,
            cache,
            max_open_per_requester,
            exports: ExportSettings::default(),
            message_domain: Arc::from(message_domain),
        }
    }

    /// Runs exports as `exports` says (their limit, their places, the drain that ends them).
    pub fn with_exports(self, exports: ExportSettings) -> Self {
        Self { exports, ..self }
    }

    /// The pool exports read from (`export.rs`).
    fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Opens a ticket in status NEW. Customers raise tickets for themselves, cannot assign
    /// them and may choose any priority but URGENT; others name the requester by email, and an
    /// assignee must be an active agent or admin of the account. A requester with the maximum of
    /// open tickets gets FAILED_PRECONDITION. The acknowledgement to the requester is queued in
    /// the ticket's own statement (docs/notifications.md): it is sent if and only if the ticket
    /// is created.
    pub async fn create(
        &self,
        write: &KeyedWrite<'_, Ticket>,
        request: NewTicketRequest,
    ) -> AppResult<Outcome<Ticket>> {
        let caller = write.caller()?;
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
        if request.assignee.is_some() || request.group.is_some() {
            caller.require(Role::Agent)?;
        }
        if caller.restricted_to_user().is_some() && !request.tags.is_empty() {
            return Err(AppError::invalid_field(
                "ticket.tags",
                &InvalidValue::new("must be empty: tags are set by agents"),
            ));
        }
        // Urgency is triage, the desk's call: a customer who could say URGENT would jump every
        // queue. They may say how much it matters to them, up to HIGH.
        if caller.restricted_to_user().is_some() && request.priority == TicketPriority::Urgent {
            return Err(AppError::invalid_field(
                "ticket.priority",
                &InvalidValue::new(
                    "customers may choose low, normal or high; urgent is set by agents",
                ),
            ));
        }
        let account_id = caller.account_id;
        // The catalogue is read only when values are sent: one query, before any write.
        let custom_fields = if request.custom_fields.is_empty() {
            StoredValues::new()
        } else {
            let catalogue = self.catalogue(account_id).await?;
            catalogue
                .check_values(
                    request
                        .custom_fields
                        .iter()
                        .map(|(key, value)| (key.as_str(), value)),
                    caller.restricted_to_user().is_some(),
                )
                .map_err(refused_values)?
                .into_iter()
                .filter_map(|(key, value)| value.map(|value| (key, value)))
                .collect()
        };
        let outcome = idempotency::transaction(&self.pool, write, Written::ticket, async |conn| {
            if let Some(assignee) = request.assignee {
                ensure_agent(conn, account_id, assignee, "ticket.assignee_id").await?;
            }
            if let Some(group) = request.group {
                ensure_group(conn, account_id, group, "ticket.group_id").await?;
                if let Some(assignee) = request.assignee {
                    ensure_member(conn, account_id, group, assignee).await?;
                }
            }
            // Either way the requester's row ends up locked (an upsert locks the row it
            // inserts or updates), so that concurrent creates for one requester are counted
            // one after the other.
            let requester = match requester {
                Requester::Caller(user_id) => {
                    UserRow::lock_in_account(conn, account_id.as_uuid(), user_id.as_uuid())
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
            self.check_open_limit(conn, account_id, requester.id.as_uuid())
                .await?;
            let requester_email = requester.email.clone();
            let ticket_id = TicketId::generate();
            let changes = Opening {
                subject: &request.subject,
                priority: request.priority,
                requester: requester.id,
                assignee: request.assignee,
                group: request.group,
                tags: &request.tags,
                custom_fields: &custom_fields,
            }
            .changes();
            // The audit record goes in the ticket's own statement: its content is known
            // before the insert, and one round trip fewer is one PostgreSQL wake-up fewer.
            let record = new_record(
                caller.actor(),
                account_id,
                ticket_id,
                TicketAction::Created,
                &changes,
            );
            let tags = request.tags.to_strings();
            let values = serde_json::Value::Object(custom_fields.clone());
            let ticket = NewTicket {
                id: ticket_id.as_uuid(),
                account_id: account_id.as_uuid(),
                subject: request.subject.as_str(),
                description: request.description.as_str(),
                priority: request.priority.as_str(),
                status: TicketStatus::New.as_str(),
                requester_id: requester.id.as_uuid(),
                assignee_id: request.assignee.map(|id| id.as_uuid()),
                tags: &tags,
                group_id: request.group,
                custom_fields: &values,
            }
            .insert_recorded(
                conn,
                &requester_email,
                &record,
                &acknowledgement(&requester, &request.subject, &self.message_domain),
            )
            .await?;
            Ok::<_, AppError>(Written::Stored(ticket))
        })
        .await?;
        Ok(self.finish(outcome).await)
    }

    /// Caches a fresh result (after the commit: a rolled-back change is never cached) and
    /// answers with the ticket.
    async fn finish(&self, outcome: Outcome<Written>) -> Outcome<Ticket> {
        match outcome {
            Outcome::Done(Written::Stored(ticket)) => {
                self.cache.store(&ticket).await;
                Outcome::Done(ticket)
            }
            Outcome::Done(Written::Deleted(ticket)) => {
                self.cache
                    .store_deleted(ticket.account_id, ticket.id, ticket.version)
                    .await;
                Outcome::Done(ticket)
            }
            Outcome::Failed(error) => Outcome::Failed(error),
            Outcome::Replay(stored) => Outcome::Replay(stored),
        }
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
        UserRow::lock(conn, account_id.as_uuid(), requester).await?;
        self.check_open_limit(conn, account_id, requester).await
    }

    /// [`Self::ensure_below_open_limit`] for a transaction that already holds the requester's
    /// row lock.
    async fn check_open_limit(
        &self,
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        requester: Uuid,
    ) -> AppResult<()> {
        let open = TicketRow::count_open_for_requester(conn, account_id, requester).await?;
        if open >= i64::from(self.max_open_per_requester) {
            return Err(AppError::FailedPrecondition {
                reason: Reason::OpenTicketLimit,
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
    pub async fn get(&self, scope: &RequestScope, id: TicketId) -> AppResult<Ticket> {
        let caller = scope.caller()?;
        // Agents see every value: only a customer's read of a ticket with values reads the
        // catalogue, to learn which fields they may see.
        let visible = async |ticket: Ticket| match caller.restricted_to_user() {
            Some(user) if ticket.requester_id != user => {
                Err(AppError::not_found(Resource::Ticket, id))
            }
            Some(_) => {
                let catalogue = self.seen_catalogue(caller, [&ticket]).await?;
                Ok(ticket.as_seen_by_customer(&catalogue))
            }
            None => Ok(ticket),
        };
        match self.cache.get(caller.account_id, id, scope).await {
            Cached::Ticket(ticket) => return visible(ticket).await,
            Cached::Deleted => return Err(AppError::not_found(Resource::Ticket, id)),
            Cached::Unknown => {}
        }
        // One statement needs no transaction: it is bounded by the connection's statement_timeout.
        let ticket = TicketRow::find(
            &mut *db::connection(&self.pool).await?,
            caller.account_id,
            None,
            id,
        )
        .await?
        .ok_or_else(|| AppError::not_found(Resource::Ticket, id))?;
        self.cache.fill(&ticket).await;
        visible(ticket).await
    }

    /// The account's catalogue of custom fields (one query).
    /// The custom fields a filter of the caller's may name: the account's catalogue, of which
    /// a customer may name only the fields they see (a filter on another would tell them its
    /// values).
    pub async fn filter_catalogue(&self, scope: &RequestScope) -> AppResult<Catalogue> {
        let caller = scope.caller()?;
        let catalogue = self.catalogue(caller.account_id).await?;
        Ok(if caller.restricted_to_user().is_some() {
            catalogue.seen_by_customers()
        } else {
            catalogue
        })
    }

    async fn catalogue(&self, account_id: AccountId) -> AppResult<Catalogue> {
        CustomFieldRow::catalogue_for_account(
            &mut *db::connection(&self.pool).await?,
            account_id.as_uuid(),
        )
        .await
    }

    /// The catalogue [`seen_by`] needs to show `tickets` to `caller`: read only for a customer
    /// shown a ticket with custom field values (agents see them all); empty otherwise.
    async fn seen_catalogue<'a>(
        &self,
        caller: &Caller,
        tickets: impl IntoIterator<Item = &'a Ticket>,
    ) -> AppResult<Catalogue> {
        let customer = caller.restricted_to_user().is_some();
        if customer
            && tickets
                .into_iter()
                .any(|ticket| !ticket.custom_fields.is_empty())
        {
            self.catalogue(caller.account_id).await
        } else {
            Ok(Catalogue::default())
        }
    }

    /// A page of the tickets the caller may see, as `filter` asks, after `after`, and how many
    /// the whole list holds: taken from a first page that is the whole list, counted otherwise
    /// ([`Self::total_size`]).
    pub async fn list(
        &self,
        scope: &RequestScope,
        filter: &TicketFilter,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<(Page<Ticket>, TotalSize)> {
        let caller = scope.caller()?;
        let first = after.is_none();
        // Ordered by update time, a ticket changed while a client pages would move across the
        // cursor and be listed again: every page after the first lists only tickets whose last
        // change the first page's snapshot saw (docs/tickets.md, "Paging while tickets change").
        let carried = after
            .as_ref()
            .map(|cursor| (cursor.until, cursor.snapshot.clone()));
        let (rows, first_page) = TicketRow::list_page(
            &mut *db::connection(&self.pool).await?,
            caller.account_id,
            caller.restricted_to_user(),
            filter,
            after,
            rows_to_fetch(page_size),
        )
        .await?;
        let order = filter.order;
        let (until, snapshot) = carried.unwrap_or_else(|| match first_page {
            Some(FirstPageBound {
                snapshot: Some(snapshot),
                ..
            }) => (None, Some(snapshot)),
            // No snapshot to carry (one too long for a token): oldest-updated first, the later
            // pages are bounded by the time the first was read, as in earlier releases, by the
            // clock that wrote `updated_at`.
            Some(FirstPageBound {
                snapshot: None,
                read_at,
            }) => ((!order.descending).then_some(read_at), None),
            None => (None, None),
        });
        let mut page = paginate(rows, page_size, |ticket| ticket.position(order.field));
        if let Some(next) = &mut page.next {
            next.until = until;
            next.snapshot = snapshot;
        }
        let total = match (first, &page.next) {
            (true, None) => TotalSize::Exact(i64::try_from(page.items.len()).unwrap_or(i64::MAX)),
            (false, _) | (true, Some(_)) => self.total_size(caller, filter).await?,
        };
        let catalogue = self.seen_catalogue(caller, &page.items).await?;
        page.items = page
            .items
            .into_iter()
            .map(|ticket| seen_by(caller, &catalogue, ticket))
            .collect();
        Ok((page, total))
    }

    /// How many tickets the list of `filter` holds for `caller`: a count reading at most
    /// `TotalSize::EXACT_UP_TO + 1` tickets on the list's own indexes, and beyond that the
    /// planner's estimate (one `EXPLAIN`, not run). docs/tickets.md, "How many tickets a list
    /// holds".
    async fn total_size(&self, caller: &Caller, filter: &TicketFilter) -> AppResult<TotalSize> {
        let list = CountedList {
            filter: filter.as_expr(caller.restricted_to_user()),
            order: filter.order,
        };
        let typed_only = filter.expr.is_empty();
        let account_id = caller.account_id.as_uuid();
        db::with_connection(&self.pool, async |conn| {
            let count = ticket_filter::count_list(
                conn,
                account_id,
                &list,
                typed_only,
                TotalSize::EXACT_UP_TO,
            )
            .await?;
            match TotalSize::from_capped_count(count) {
                Some(total) => Ok(total),
                None => Ok(TotalSize::estimated(
                    ticket_filter::estimate_tickets(conn, account_id, &list.filter).await?,
                )),
            }
        })
        .await
    }

    /// Changes subject, description or priority. Agents and admins; not on closed tickets.
    pub async fn update(
        &self,
        write: &KeyedWrite<'_, Ticket>,
        id: TicketId,
        edits: TicketEdits,
        etag: Option<Etag>,
    ) -> AppResult<Outcome<Ticket>> {
        let custom_fields = match edits.custom_fields {
            None => None,
            // Clearing them all needs no catalogue.
            Some(RawFieldEdit::Replace(values)) if values.is_empty() => {
                Some(CustomFieldEdit::Replace(StoredValues::new()))
            }
            Some(edit) => {
                let caller = write.caller()?;
                let catalogue = self.catalogue(caller.account_id).await?;
                let check = |values: &[(String, RawValue)]| {
                    catalogue
                        .check_values(
                            values.iter().map(|(key, value)| (key.as_str(), value)),
                            caller.restricted_to_user().is_some(),
                        )
                        .map_err(refused_values)
                };
                Some(match edit {
                    RawFieldEdit::Replace(values) => CustomFieldEdit::Replace(
                        check(&values)?
                            .into_iter()
                            .filter_map(|(key, value)| value.map(|value| (key, value)))
                            .collect(),
                    ),
                    RawFieldEdit::Set(values) => CustomFieldEdit::Set(check(&values)?),
                })
            }
        };
        let change = TicketChange::Edit {
            subject: edits.subject,
            description: edits.description,
            priority: edits.priority,
            tags: edits.tags,
            custom_fields,
        };
        self.change(write, id, etag, change).await
    }

    /// Adds `add` to the ticket's tags and takes `remove` off them, on the tags the locked row
    /// holds (AddTicketTags, RemoveTicketTags): concurrent changes of tags all land. Agents and
    /// admins; not on closed tickets; at most [`crate::domain::MAX_TAGS_PER_TICKET`] tags.
    pub async fn tag(
        &self,
        write: &KeyedWrite<'_, Ticket>,
        id: TicketId,
        add: TagSet,
        remove: TagSet,
        etag: Option<Etag>,
    ) -> AppResult<Outcome<Ticket>> {
        self.change(write, id, etag, TicketChange::Tag { add, remove })
            .await
    }

    /// Assigns the ticket (or unassigns it, with `None`); a new ticket becomes open. With
    /// `group`, the ticket moves to that group (`Some(None)`: out of its group); without, it
    /// keeps its group. A ticket left with a group and an assignee has an assignee who is a
    /// member of the group (docs/tickets.md, "Groups").
    pub async fn assign(
        &self,
        write: &KeyedWrite<'_, Ticket>,
        id: TicketId,
        assignee: Option<UserId>,
        group: Option<Option<Uuid>>,
        etag: Option<Etag>,
    ) -> AppResult<Outcome<Ticket>> {
        let change = TicketChange::Assign { assignee, group };
        self.change(write, id, etag, change).await
    }

    /// Resolves, reopens or closes the ticket, if its status allows.
    pub async fn transition(
        &self,
        write: &KeyedWrite<'_, Ticket>,
        id: TicketId,
        transition: TicketTransition,
        etag: Option<Etag>,
    ) -> AppResult<Outcome<Ticket>> {
        let change = TicketChange::Transition(transition);
        self.change(write, id, etag, change).await
    }

    /// Soft-deletes the ticket: it disappears from every read. Admins only.
    pub async fn delete(
        &self,
        write: &KeyedWrite<'_, Ticket>,
        id: TicketId,
        etag: Option<Etag>,
    ) -> AppResult<Outcome<Ticket>> {
        self.change(write, id, etag, TicketChange::Delete).await
    }

    /// The one way a ticket changes: lock it (as the caller may see it), check the etag, let the
    /// lifecycle decide ([`Ticket::apply`]), check what the decision leaves to other state,
    /// write the change and its audit record together, then (after the commit) cache it.
    async fn change(
        &self,
        write: &KeyedWrite<'_, Ticket>,
        id: TicketId,
        etag: Option<Etag>,
        change: TicketChange,
    ) -> AppResult<Outcome<Ticket>> {
        let caller = write.caller()?;
        let account_id = caller.account_id;
        // A customer's answer shows only the values of the fields they may see: the catalogue
        // is read first (customers only; agents see every value).
        let catalogue = match caller.restricted_to_user() {
            Some(_) => self.catalogue(account_id).await?,
            None => Catalogue::default(),
        };
        // Armed before the COMMIT: a lost answer may hide a committed write.
        let unsettled = self.cache.unsettled();
        let outcome = idempotency::transaction(
            &self.pool,
            write,
            |written: &Written| {
                written
                    .ticket()
                    .map(|ticket| seen_by(caller, &catalogue, ticket))
            },
            async |conn| {
                let current = lock_visible(conn, caller, id).await?;
                if let Some(etag) = etag
                    && etag.version() != current.version
                {
                    return Err(AppError::Aborted {
                        reason: Reason::EtagMismatch,
                        message: format!(
                            "the ticket changed since etag {etag} was read (it is now v{}); read it again",
                            current.version
                        ),
                    });
                }
                let decision = current
                    .apply(&change)
                    .map_err(|rule| refused(&current, rule))?;
                if let Some(assignee) = decision.assignee_to_check {
                    ensure_agent(conn, account_id, assignee, "assignee_id").await?;
                }
                if let Some(group) = decision.group_to_check {
                    ensure_group(conn, account_id, group, "group_id").await?;
                }
                if let Some((group, assignee)) = decision.membership_to_check {
                    ensure_member(conn, account_id, group, assignee).await?;
                }
                if change == TicketChange::Transition(TicketTransition::Resolve) {
                    ensure_required_fields(conn, &current).await?;
                }
                if decision.reopens {
                    self.ensure_below_open_limit(conn, account_id, current.requester_id.as_uuid())
                        .await?;
                }
                if !decision.writes() {
                    // Nothing differs: no write, no record, the same etag.
                    return Ok(Written::Stored(current));
                }
                unsettled.writes(account_id, id, current.version);
                let changeset =
                    TicketChangeset::between(&current, &decision.after, decision.deletes);
                let stored = TicketRow::apply(conn, &current, &changeset).await?;
                let notice = self.solved_notice(caller, &stored, decision.action);
                new_record(
                    caller.actor(),
                    stored.account_id,
                    stored.id,
                    decision.action,
                    &decision.changes,
                )
                .insert_notifying(conn, notice.as_ref())
                .await?;
                Ok::<_, AppError>(if decision.deletes {
                    Written::Deleted(stored)
                } else {
                    Written::Stored(stored)
                })
            }
        ).await?;
        unsettled.settled();
        if matches!(outcome, Outcome::Replay(StoredResponse::Success { .. })) {
            self.refresh(account_id, id).await;
        }
        Ok(match self.finish(outcome).await {
            Outcome::Done(ticket) => Outcome::Done(seen_by(caller, &catalogue, ticket)),
            other @ (Outcome::Failed(_) | Outcome::Replay(_)) => other,
        })
    }

    /// Brings the cache to ticket `id` as committed, for the replay of a write that succeeded:
    /// the first attempt's answer may have been lost before it updated the cache (the instance
    /// stopped, or cut off from Redis). Best effort: a failure leaves the entry to its TTL.
    async fn refresh(&self, account_id: AccountId, id: TicketId) {
        let latest = async {
            TicketRow::find_latest(&mut *db::connection(&self.pool).await?, account_id, id).await
        };
        match latest.await {
            Ok(Some((ticket, false))) => self.cache.store(&ticket).await,
            Ok(Some((ticket, true))) => {
                self.cache
                    .store_deleted(account_id, id, ticket.version)
                    .await;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, ticket = %id, "a replayed write's ticket was not read to refresh the cache");
            }
        }
    }

    /// The notice of a solved ticket to its requester: when `action` solved it and someone other
    /// than the requester did.
    fn solved_notice<'a>(
        &self,
        caller: &Caller,
        ticket: &'a Ticket,
        action: TicketAction,
    ) -> Option<NewNotification<'a>> {
        if action != TicketAction::Resolved || caller.actor() == Actor::User(ticket.requester_id) {
            return None;
        }
        let id = Uuid::now_v7();
        Some(NewNotification {
            id,
            kind: NotificationKind::TicketSolved,
            recipient_user_id: ticket.requester_id.as_uuid(),
            recipient_address: ticket.requester_email.as_str(),
            data: serde_json::to_value(TicketSolvedData {
                subject: ticket.subject.as_str().to_owned(),
            })
            .unwrap_or(serde_json::Value::Null),
            message_id: NewNotification::message_id_for(id, &self.message_domain),
        })
    }
}

/// What a change's transaction wrote: the ticket as stored, or deleted at its last version.
enum Written {
    Stored(Ticket),
    Deleted(Ticket),
}

impl Written {
    /// The ticket the response is made of.
    fn ticket(&self) -> AppResult<Ticket> {
        match self {
            Self::Stored(ticket) | Self::Deleted(ticket) => Ok(ticket.clone()),
        }
    }
}

/// The ticket as `caller` may see it: a customer without the desk's tags, and with only the
/// custom field values `catalogue` shows customers ([`TicketDesk::seen_catalogue`]).
fn seen_by(caller: &Caller, catalogue: &Catalogue, ticket: Ticket) -> Ticket {
    match caller.restricted_to_user() {
        Some(_) => ticket.as_seen_by_customer(catalogue),
        None => ticket,
    }
}

/// Fails with FAILED_PRECONDITION `CUSTOM_FIELDS_REQUIRED` while a live field required to
/// solve has no value on `ticket`, naming each such field.
async fn ensure_required_fields(conn: &mut AsyncPgConnection, ticket: &Ticket) -> AppResult<()> {
    let catalogue =
        CustomFieldRow::catalogue_for_account(conn, ticket.account_id.as_uuid()).await?;
    let missing = catalogue.missing_to_solve(&ticket.custom_fields);
    if missing.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = missing.iter().map(|field| field.key.as_str()).collect();
    Err(AppError::FailedPrecondition {
        reason: Reason::CustomFieldsRequired,
        message: format!(
            "the ticket cannot be solved before these custom fields have a value: {}",
            keys.join(", ")
        ),
        violations: missing
            .iter()
            .map(|field| PreconditionViolation {
                kind: "CUSTOM_FIELDS_REQUIRED".to_owned(),
                subject: format!("custom_fields.{}", field.key),
                description: format!("{:?} is required to solve a ticket", field.title),
            })
            .collect(),
    })
}

/// Locks the ticket `id` as `caller` may see it (a customer: only their own), or NOT_FOUND.
async fn lock_visible(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    id: TicketId,
) -> AppResult<Ticket> {
    TicketRow::find_for_update(conn, caller.account_id, caller.restricted_to_user(), id)
        .await?
        .ok_or_else(|| AppError::not_found(Resource::Ticket, id))
}

/// The answer to a change the lifecycle refuses.
fn refused(ticket: &Ticket, rule: RuleViolation) -> AppError {
    let status_violation = |allowed: &[TicketStatus]| PreconditionViolation {
        kind: "TICKET_STATUS".to_owned(),
        subject: format!("tickets/{}", ticket.id),
        description: format!(
            "the ticket is {}; allowed: {}",
            ticket.status,
            names(allowed)
        ),
    };
    match rule {
        RuleViolation::Final { action } => AppError::FailedPrecondition {
            reason: Reason::TicketClosed,
            message: format!("the ticket is closed; nobody can {action} it any more"),
            violations: vec![status_violation(&[])],
        },
        RuleViolation::IllegalTransition { transition, status } => AppError::FailedPrecondition {
            reason: Reason::IllegalTransition,
            message: format!(
                "the ticket is {status}; {} needs it to be {}",
                transition.name(),
                names(transition.allowed_from()).replace(", ", " or ")
            ),
            violations: vec![status_violation(transition.allowed_from())],
        },
        RuleViolation::TooManyTags { count } => AppError::invalid_field(
            "tags",
            &InvalidValue::new(format!(
                "a ticket carries at most {MAX_TAGS_PER_TICKET} tags; this change would leave it {count}"
            )),
        ),
        RuleViolation::Unassigned => AppError::FailedPrecondition {
            reason: Reason::TicketUnassigned,
            message: "a ticket needs an assignee to be resolved".to_owned(),
            violations: vec![PreconditionViolation {
                kind: "TICKET_ASSIGNEE".to_owned(),
                subject: format!("tickets/{}", ticket.id),
                description: "assign the ticket first (AssignTicket)".to_owned(),
            }],
        },
    }
}

fn names(statuses: &[TicketStatus]) -> String {
    statuses
        .iter()
        .map(TicketStatus::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes the audit record of a change, in the change's transaction.
async fn record(
    conn: &mut AsyncPgConnection,
    actor: Actor,
    ticket: &Ticket,
    action: TicketAction,
    changes: &FieldChanges,
) -> AppResult<()> {
    new_record(actor, ticket.account_id, ticket.id, action, changes)
        .insert(conn)
        .await?;
    Ok(())
}

/// The audit record of `action` on a ticket by `actor`.
fn new_record(
    actor: Actor,
    account_id: AccountId,
    ticket_id: TicketId,
    action: TicketAction,
    changes: &FieldChanges,
) -> NewActivity<'static> {
    let (actor_user_id, actor_api_key_id) = actor_columns(actor);
    NewActivity {
        id: Uuid::now_v7(),
        account_id: account_id.as_uuid(),
        ticket_id: ticket_id.as_uuid(),
        actor_user_id,
        actor_api_key_id,
        action: action.as_str(),
        changes: changes_to_json(changes),
    }
}

async fn ensure_agent(
    conn: &mut AsyncPgConnection,
    account_id: AccountId,
    assignee: UserId,
    field: &str,
) -> AppResult<()> {
    match UserRow::find_in_account(conn, account_id.as_uuid(), assignee.as_uuid()).await? {
        Some(user) if user.active && user.role != Role::Customer => Ok(()),
        Some(_) | None => Err(AppError::invalid_field(
            field,
            &InvalidValue::new("names no active agent or admin of this account"),
        )),
    }
}
/// Fails naming `field` unless `group` is a live group of the account, which it holds
/// `FOR KEY SHARE` until the transaction ends (its deletion waits, then sees the ticket).
async fn ensure_group(
    conn: &mut AsyncPgConnection,
    account_id: AccountId,
    group: Uuid,
    field: &str,
) -> AppResult<()> {
    if GroupRow::share_live(conn, account_id.as_uuid(), group).await? {
        Ok(())
    } else {
        Err(AppError::invalid_field(
            field,
            &InvalidValue::new("names no group of this account"),
        ))
    }
}

/// Fails with FAILED_PRECONDITION `ASSIGNEE_NOT_IN_GROUP` unless `assignee` is a member of
/// `group`; the membership is held `FOR KEY SHARE` until the transaction ends, so that its
/// removal waits for the assignment and then sees the ticket (RemoveGroupMember refuses).
async fn ensure_member(
    conn: &mut AsyncPgConnection,
    account_id: AccountId,
    group: Uuid,
    assignee: UserId,
) -> AppResult<()> {
    if GroupMemberRow::share(conn, account_id.as_uuid(), group, assignee.as_uuid()).await? {
        return Ok(());
    }
    Err(AppError::FailedPrecondition {
        reason: Reason::AssigneeNotInGroup,
        message: format!(
            "users/{assignee} is not a member of groups/{group}; add them to the group or choose a member"
        ),
        violations: vec![PreconditionViolation {
            kind: "ASSIGNEE_NOT_IN_GROUP".to_owned(),
            subject: format!("groups/{group}"),
            description: format!("users/{assignee} is not a member of the group"),
        }],
    })
}

/// The acknowledgement of a new ticket to its requester, as the outbox row the ticket's statement
/// writes.
fn acknowledgement<'a>(
    requester: &'a crate::domain::User,
    subject: &TicketSubject,
    message_domain: &str,
) -> NewNotification<'a> {
    let id = Uuid::now_v7();
    NewNotification {
        id,
        kind: NotificationKind::TicketCreated,
        recipient_user_id: requester.id.as_uuid(),
        recipient_address: requester.email.as_str(),
        data: serde_json::to_value(TicketCreatedData {
            subject: subject.as_str().to_owned(),
            requester_name: requester.display_name.as_str().to_owned(),
        })
        .unwrap_or(serde_json::Value::Null),
        message_id: NewNotification::message_id_for(id, message_domain),
    }
}
