//! Builders for tickets and their comments, so that a test says what it makes and as whom:
//! `app.ticket("Printer on fire").priority(Urgent).by(&customer).create().await`, or
//! `app.comment(&ticket.id, "Have you tried water?").public().add().await`. Anything left unsaid
//! is valid and made by the account's admin.

use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::RunQueryDsl;
use supportdesk::db::models::{CustomFieldRow, TicketRow};
use supportdesk::domain::{FilterContext, TicketFilterExpr, TicketId};
use supportdesk::wire::proto::v1;
use tonic::Status;

use super::{TestApp, TestUser, valid_create_request};

/// A CreateTicket call in the making.
pub(crate) struct TicketBuilder<'a> {
    app: &'a TestApp,
    caller: &'a TestUser,
    ticket: v1::Ticket,
}

/// An AddComment call in the making.
pub(crate) struct CommentBuilder<'a> {
    app: &'a TestApp,
    caller: &'a TestUser,
    ticket_id: String,
    comment: v1::Comment,
}

impl TestApp {
    /// A valid ticket about `subject`, raised for jane@example.com by the admin until told
    /// otherwise.
    pub(crate) fn ticket(&self, subject: &str) -> TicketBuilder<'_> {
        let request = valid_create_request(subject);
        TicketBuilder {
            app: self,
            caller: &self.admin,
            ticket: request.ticket.expect("a valid request holds a ticket"),
        }
    }

    /// A private comment of the admin on the ticket `ticket_id`, until told otherwise.
    pub(crate) fn comment(&self, ticket_id: &str, body: &str) -> CommentBuilder<'_> {
        CommentBuilder {
            app: self,
            caller: &self.admin,
            ticket_id: ticket_id.to_owned(),
            comment: v1::Comment {
                body: body.to_owned(),
                ..Default::default()
            },
        }
    }
}

impl<'a> TicketBuilder<'a> {
    /// Raised for `email`; an empty one lets a customer raise it for themselves.
    pub(crate) fn requester(mut self, email: &str) -> Self {
        email.clone_into(&mut self.ticket.requester_email);
        self
    }

    pub(crate) fn description(mut self, description: &str) -> Self {
        description.clone_into(&mut self.ticket.description);
        self
    }

    pub(crate) fn priority(mut self, priority: v1::TicketPriority) -> Self {
        self.ticket.priority = priority.into();
        self
    }

    /// Tagged with `tags` from the start.
    pub(crate) fn tags(mut self, tags: &[&str]) -> Self {
        self.ticket.tags = tags.iter().map(|tag| (*tag).to_owned()).collect();
        self
    }

    /// Assigned to the user `id` from the start.
    pub(crate) fn assignee(mut self, id: impl ToString) -> Self {
        self.ticket.assignee_id = id.to_string();
        self
    }

    /// Made by `caller` rather than the admin.
    pub(crate) fn by(mut self, caller: &'a TestUser) -> Self {
        self.caller = caller;
        self
    }

    /// The request as it would be sent, for a test that sends it its own way.
    pub(crate) fn request(self) -> v1::CreateTicketRequest {
        v1::CreateTicketRequest {
            ticket: Some(self.ticket),
        }
    }

    /// Creates the ticket, which must succeed.
    pub(crate) async fn create(self) -> v1::Ticket {
        self.try_create().await.expect("the ticket is created")
    }

    /// Tries to create the ticket: for a test about what is refused.
    pub(crate) async fn try_create(self) -> Result<v1::Ticket, Status> {
        let (app, caller) = (self.app, self.caller);
        app.tickets
            .clone()
            .create_ticket(caller.request(self.request()))
            .await
            .map(tonic::Response::into_inner)
    }
}

impl<'a> CommentBuilder<'a> {
    /// Seen by the requester (and mailed to them), not only by the agents.
    pub(crate) fn public(mut self) -> Self {
        self.comment.public = true;
        self
    }

    /// Written by `caller` rather than the admin.
    pub(crate) fn by(mut self, caller: &'a TestUser) -> Self {
        self.caller = caller;
        self
    }

    /// Adds the comment, which must succeed.
    pub(crate) async fn add(self) -> v1::Comment {
        self.try_add().await.expect("the comment is added")
    }

    /// Tries to add the comment: for a test about what is refused.
    pub(crate) async fn try_add(self) -> Result<v1::Comment, Status> {
        self.app
            .tickets
            .clone()
            .add_comment(self.caller.request(v1::AddCommentRequest {
                ticket_id: self.ticket_id,
                comment: Some(self.comment),
            }))
            .await
            .map(tonic::Response::into_inner)
    }
}

impl TestApp {
    /// The ids (sorted) of the account's live tickets that `filter` matches when read in memory
    /// against each ticket as PostgreSQL holds it, with the admin as `me`: what an SLA policy's
    /// condition decides, for comparing with what ListTickets' SQL lists.
    pub(crate) async fn matched_in_memory(&self, filter: &str) -> Vec<String> {
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = SqlUuid)]
            id: uuid::Uuid,
        }
        let mut conn = self.database.connect().await;
        let account = self.account_id;
        let catalogue = CustomFieldRow::catalogue_for_account(&mut conn, account.as_uuid())
            .await
            .expect("the catalogue");
        let context = FilterContext {
            me: Some(self.admin.id),
            custom_fields: &catalogue,
        };
        let expr = TicketFilterExpr::parse_field(filter, &context)
            .unwrap_or_else(|error| panic!("{filter}: {error}"));
        let ids: Vec<Id> = diesel::sql_query("SELECT id FROM tickets WHERE account_id = $1")
            .bind::<SqlUuid, _>(account.as_uuid())
            .load(&mut conn)
            .await
            .expect("the account's tickets");
        let now = chrono::Utc::now();
        let mut matched = Vec::new();
        for Id { id } in ids {
            let (ticket, deleted) =
                TicketRow::find_latest(&mut conn, account, TicketId::from_uuid(id))
                    .await
                    .expect("read")
                    .expect("the ticket");
            if !deleted && expr.matches(&ticket, now) {
                matched.push(id.to_string());
            }
        }
        matched.sort();
        matched
    }
}
