//! Comments on a ticket: adding one (with its notice to the requester) and listing them.

use uuid::Uuid;

use super::{TicketDesk, lock_visible, record, refused};
use crate::auth::Caller;
use crate::db::{
    self,
    models::{
        CommentRow, NewComment, NewNotification, TicketChangeset, TicketRow, comment::actor_columns,
    },
};
use crate::domain::{
    Actor, Comment, CommentAddedData, CommentBody, NotificationKind, PageCursor, PageSize, Role,
    Ticket, TicketChange, TicketId,
};
use crate::errors::{AppError, AppResult, Resource};
use crate::idempotency::{self, KeyedWrite, Outcome, StoredResponse};
use crate::scope::RequestScope;
use crate::service::{Page, paginate, rows_to_fetch};

impl TicketDesk {
    /// Adds a comment. Customers write public replies on their own tickets only; internal
    /// notes are for agents. Not on closed tickets.
    pub async fn add_comment(
        &self,
        write: &KeyedWrite<'_, Comment>,
        ticket_id: TicketId,
        body: CommentBody,
        public: bool,
    ) -> AppResult<Outcome<Comment>> {
        let caller = write.caller()?;
        if !public {
            caller.require(Role::Agent)?;
        }
        let account_id = caller.account_id;
        // Armed before the COMMIT: a lost answer may hide a committed write.
        let unsettled = self.cache.unsettled();
        let outcome = idempotency::transaction(
            &self.pool,
            write,
            |(_, comment): &(Ticket, Comment)| Ok::<_, AppError>(comment.clone()),
            async |conn| {
                let current = lock_visible(conn, caller, ticket_id).await?;
                let comment_id = Uuid::now_v7();
                let decision = current
                    .apply(&TicketChange::Comment {
                        comment_id: comment_id.to_string(),
                        public,
                        by_requester: caller.actor() == Actor::User(current.requester_id),
                    })
                    .map_err(|rule| refused(&current, rule))?;
                unsettled.writes(account_id, ticket_id, current.version);
                let (author_user_id, author_api_key_id) = actor_columns(caller.actor());
                let comment = NewComment {
                    id: comment_id,
                    account_id: account_id.as_uuid(),
                    ticket_id: current.id.as_uuid(),
                    author_user_id,
                    author_api_key_id,
                    body: body.as_str(),
                    public,
                }
                .insert_notifying(
                    conn,
                    self.comment_notice(caller, &current, &body, public)
                        .as_ref(),
                )
                .await?;
                // A comment always changes the ticket (its version); a requester's reply may
                // change its status too.
                let changeset = TicketChangeset::between(&current, &decision.after, false);
                let stored = TicketRow::apply(conn, &current, &changeset).await?;
                record(
                    conn,
                    caller.actor(),
                    &stored,
                    decision.action,
                    &decision.changes,
                )
                .await?;
                Ok::<_, AppError>((stored, comment))
            },
        )
        .await?;
        unsettled.settled();
        Ok(match outcome {
            Outcome::Done((ticket, comment)) => {
                self.cache.store(&ticket).await;
                Outcome::Done(comment)
            }
            Outcome::Failed(error) => Outcome::Failed(error),
            Outcome::Replay(stored) => {
                if matches!(stored, StoredResponse::Success { .. }) {
                    self.refresh(account_id, ticket_id).await;
                }
                Outcome::Replay(stored)
            }
        })
    }

    /// The notice of a comment to the ticket's requester: only for a public comment written at
    /// the desk (an agent, an admin or an API key) by someone other than the requester; internal
    /// notes never leave the desk, and a requester is not told of their own replies.
    fn comment_notice<'a>(
        &self,
        caller: &Caller,
        ticket: &'a Ticket,
        body: &CommentBody,
        public: bool,
    ) -> Option<NewNotification<'a>> {
        let by_requester = caller.actor() == Actor::User(ticket.requester_id);
        if !public || caller.restricted_to_user().is_some() || by_requester {
            return None;
        }
        let id = Uuid::now_v7();
        Some(NewNotification {
            id,
            kind: NotificationKind::CommentAdded,
            recipient_user_id: ticket.requester_id.as_uuid(),
            recipient_address: ticket.requester_email.as_str(),
            data: serde_json::to_value(CommentAddedData {
                subject: ticket.subject.as_str().to_owned(),
                body: body.as_str().to_owned(),
            })
            .unwrap_or(serde_json::Value::Null),
            message_id: NewNotification::message_id_for(id, &self.message_domain),
        })
    }

    /// A page of a ticket's comments, oldest first; customers see public ones only.
    pub async fn list_comments(
        &self,
        scope: &RequestScope,
        ticket_id: TicketId,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<Comment>> {
        let caller = scope.caller()?;
        let rows = db::with_connection(&self.pool, async |conn| {
            TicketRow::find(
                conn,
                caller.account_id,
                caller.restricted_to_user(),
                ticket_id,
            )
            .await?
            .ok_or_else(|| AppError::not_found(Resource::Ticket, ticket_id))?;
            CommentRow::list_for_ticket(
                conn,
                caller.account_id.as_uuid(),
                ticket_id.as_uuid(),
                caller.role().works_tickets(),
                after,
                rows_to_fetch(page_size),
            )
            .await
        })
        .await?;
        Ok(paginate(rows, page_size, |comment| {
            PageCursor::at(comment.created_at, comment.id)
        }))
    }
}
