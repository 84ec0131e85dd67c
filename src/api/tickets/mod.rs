//! `supportdesk.v1.TicketService`: the handlers, and the parsing of what their requests carry.
//! The ExportTickets stream is in `export.rs`, read masks in `read_mask.rs`; the conversions
//! between tickets and their messages are `wire::convert::ticket`.

mod export;
mod query;
mod read_mask;

use tonic::{Request, Response, Status};

use self::export::ExportStream;
use self::query::{feed_filter, filter_expr, parse_filter};
use self::read_mask::{masked, read_mask};
use super::{KeyedRequest, ListPages, answer, created, required, scope, stored_as};
use crate::domain::{
    self, ChangeCursor, CommentBody, Email, Etag, FieldKey, ImportFormat, InvalidValue,
    NewTicketRequest, PageScope, PageSize, PageTokenKeys, RawValue, SearchCursor, SearchOrder,
    SearchText, TagPrefix, TagSet, TextPageCursor, Ticket, TicketDescription, TicketId,
    TicketPriority, TicketSearch, TicketSubject, TicketTransition, UserId,
};
use crate::errors::{AppError, FieldViolations};
use crate::idempotency::IdempotencyPolicy;
use crate::service::{Operations, RawFieldEdit, SearchPage, TicketDesk, TicketEdits, Views};
use crate::wire::convert::unless_unspecified;
use crate::wire::proto::v1;

/// Ticket fields UpdateTicket can change.
const EDITABLE: &[&str] = &[
    "subject",
    "description",
    "priority",
    "tags",
    "custom_fields",
];

pub struct TicketApi {
    desk: TicketDesk,
    views: Views,
    idempotency: IdempotencyPolicy,
    pages: PageTokenKeys,
    operations: Operations,
}

impl TicketApi {
    pub fn new(
        desk: TicketDesk,
        views: Views,
        idempotency: IdempotencyPolicy,
        pages: PageTokenKeys,
        operations: Operations,
    ) -> Self {
        Self {
            desk,
            views,
            idempotency,
            pages,
            operations,
        }
    }
}

/// The answer of every RPC that returns the ticket it changed.
fn ticket_response(ticket: &Ticket) -> Response<v1::Ticket> {
    Response::new(v1::Ticket::from(ticket.clone()))
}

/// The list the change feed's cursors are signed for.
const CHANGE_FEED: &str = "ticket-changes";
/// The name page tokens of ListTags carry (`tags:<prefix>` with a prefix).
const TAGS: &str = "tags";

#[tonic::async_trait]
impl v1::ticket_service_server::TicketService for TicketApi {
    async fn import_tickets(
        &self,
        mut request: Request<v1::ImportTicketsRequest>,
    ) -> Result<Response<crate::wire::proto::google::longrunning::Operation>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        let format = match v1::ImportFormat::try_from(message.format) {
            Ok(v1::ImportFormat::Ndjson) => Some(ImportFormat::Ndjson),
            Ok(v1::ImportFormat::Csv) => Some(ImportFormat::Csv),
            Ok(v1::ImportFormat::Unspecified) | Err(_) => {
                violations.add(
                    "format",
                    &InvalidValue::new("must be IMPORT_FORMAT_NDJSON or IMPORT_FORMAT_CSV"),
                );
                None
            }
        };
        let limit = self.operations.max_inline_bytes();
        if message.content.trim().is_empty() {
            violations.add("content", &required());
        } else if message.content.len() > limit {
            violations.add(
                "content",
                &InvalidValue::new(format!(
                    "is {} bytes; at most {limit} (IMPORT_MAX_INLINE_BYTES)",
                    message.content.len()
                )),
            );
        }
        let Some(format) = format.filter(|_| violations.is_empty()) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let respond = |operation: &domain::Operation| {
            let mut response = Response::new(
                crate::wire::proto::google::longrunning::Operation::from(operation),
            );
            if let Ok(value) = format!("/v1/{}", operation.id.name()).parse() {
                response.metadata_mut().insert("location", value);
            }
            response
        };
        let outcome = self
            .operations
            .start_import(&keyed.write(&stored_as(&respond)), format, &message.content)
            .await?;
        answer(outcome, &respond)
    }

    type ExportTicketsStream = ExportStream;

    async fn create_ticket(
        &self,
        mut request: Request<v1::CreateTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let new_ticket = parse_new_ticket(
            request.into_inner().ticket,
            keyed.scope().caller()?.restricted_to_user().is_some(),
        )?;
        let respond = |ticket: &Ticket| {
            created(
                ticket_response(ticket),
                &format!("/v1/tickets/{}", ticket.id),
            )
        };
        let outcome = self
            .desk
            .create(&keyed.write(&stored_as(&respond)), new_ticket)
            .await?;
        answer(outcome, &respond)
    }

    async fn get_ticket(
        &self,
        mut request: Request<v1::GetTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        let scope = scope(&mut request)?;
        let mut violations = FieldViolations::new();
        let id = violations.check("id", TicketId::parse(&request.get_ref().id));
        let mask = violations.check("read_mask", read_mask(request.get_ref().read_mask.as_ref()));
        let (Some(id), Some(mask)) = (id, mask) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let ticket = self.desk.get(&scope, id).await?;
        // After the cache: one entry serves every mask.
        Ok(Response::new(masked(v1::Ticket::from(ticket), &mask)))
    }

    async fn list_tickets(
        &self,
        mut request: Request<v1::ListTicketsRequest>,
    ) -> Result<Response<v1::ListTicketsResponse>, Status> {
        let scope = scope(&mut request)?;
        let listed = self.list_query(&scope, request.get_ref()).await?;
        let (page, total) = self
            .desk
            .list(&scope, &listed.filter, listed.page_size, listed.after)
            .await?;
        Ok(Response::new(v1::ListTicketsResponse {
            tickets: page
                .items
                .into_iter()
                .map(|ticket| masked(v1::Ticket::from(ticket), &listed.mask))
                .collect(),
            next_page_token: listed.pages.next_token(page.next),
            total_size: i32::try_from(total.count()).unwrap_or(i32::MAX),
            total_size_estimated: total.is_estimated(),
        }))
    }

    async fn export_tickets(
        &self,
        mut request: Request<v1::ExportTicketsRequest>,
    ) -> Result<Response<Self::ExportTicketsStream>, Status> {
        let scope = scope(&mut request)?;
        let message = request.into_inner();
        let listed = v1::ListTicketsRequest {
            statuses: message.statuses,
            priorities: message.priorities,
            assignee_id: message.assignee_id,
            requester_id: message.requester_id,
            created_after: message.created_after,
            created_before: message.created_before,
            order_by: message.order_by,
            read_mask: message.read_mask,
            filter: message.filter,
            ..Default::default()
        };
        let fields = self
            .filter_fields(&scope, listed.filter.contains("custom_fields"))
            .await?;
        let mut violations = FieldViolations::new();
        let filter = parse_filter(&listed, scope.caller()?, &fields, &mut violations);
        let mask = violations.check("read_mask", read_mask(listed.read_mask.as_ref()));
        let (Some(filter), Some(mask)) = (filter, mask) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let order = filter.order;
        let export = self.desk.export(&scope, filter).await?;
        let mut response = Response::new(ExportStream::new(export, mask, order));
        // Over REST the stream is one JSON object a line, possibly none: not one JSON document.
        response.metadata_mut().insert(
            crate::wire::headers::HTTP_CONTENT_TYPE_HEADER,
            tonic::metadata::MetadataValue::from_static("application/x-ndjson"),
        );
        Ok(response)
    }

    async fn search_tickets(
        &self,
        mut request: Request<v1::SearchTicketsRequest>,
    ) -> Result<Response<v1::SearchTicketsResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let text = violations.check("q", SearchText::parse(&message.q));
        let listed = v1::ListTicketsRequest {
            statuses: message.statuses,
            priorities: message.priorities,
            assignee_id: message.assignee_id,
            requester_id: message.requester_id,
            created_after: message.created_after,
            created_before: message.created_before,
            filter: message.filter,
            ..Default::default()
        };
        let fields = self
            .filter_fields(&scope, listed.filter.contains("custom_fields"))
            .await?;
        let filter = parse_filter(&listed, caller, &fields, &mut violations);
        let search = text
            .zip(filter)
            .map(|(text, filter)| TicketSearch { text, filter });
        let list = search
            .as_ref()
            .map(|search| format!("search:{}", search.fingerprint()));
        let page = ListPages::checked_text(
            &self.pages,
            caller,
            list.as_deref(),
            &mut violations,
            message.page_size,
            &message.page_token,
        );
        let (Some(search), Some((pages, page_size, after))) = (search, page) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let after = after
            .map(|cursor| SearchCursor::from_key(&cursor.id))
            .transpose()
            .map_err(|problem| AppError::invalid_field("page_token", &problem))?;
        let SearchPage { order, page } =
            self.desk.search(&scope, &search, page_size, after).await?;
        let next = page.next.map(|cursor| TextPageCursor {
            at: chrono::DateTime::UNIX_EPOCH,
            id: cursor.to_key(),
        });
        Ok(Response::new(v1::SearchTicketsResponse {
            results: page
                .items
                .into_iter()
                .map(|hit| v1::TicketSearchResult {
                    ticket: Some(v1::Ticket::from(hit.ticket)),
                    snippet: hit.snippet,
                    relevance: hit.relevance,
                })
                .collect(),
            next_page_token: pages.next_text_token(next.as_ref()),
            order: match order {
                SearchOrder::Relevance => v1::SearchOrder::Relevance,
                SearchOrder::Newest => v1::SearchOrder::Newest,
            }
            .into(),
        }))
    }

    async fn list_ticket_changes(
        &self,
        mut request: Request<v1::ListTicketChangesRequest>,
    ) -> Result<Response<v1::ListTicketChangesResponse>, Status> {
        let scope = scope(&mut request)?;
        let message = request.get_ref();
        let feed = PageScope {
            account: scope.caller()?.account_id,
            list: CHANGE_FEED,
        };
        let mut violations = FieldViolations::new();
        let page_size = violations.check("page_size", PageSize::parse(message.page_size));
        let after = match message.cursor.trim() {
            "" => Some(ChangeCursor::START),
            token => violations.check(
                "cursor",
                self.pages
                    .parse_text(token, feed)
                    .and_then(|cursor| ChangeCursor::from_key(&cursor.id)),
            ),
        };
        let fields = self
            .filter_fields(&scope, message.filter.contains("custom_fields"))
            .await?;
        let filter = violations.check(
            "filter",
            filter_expr(&message.filter, scope.caller()?, &fields).and_then(feed_filter),
        );
        let (Some(page_size), Some(after), Some(filter)) = (page_size, after, filter) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let page = self.desk.changes(&scope, &filter, after, page_size).await?;
        let next_cursor = self.pages.encode_text(
            &TextPageCursor {
                at: chrono::DateTime::UNIX_EPOCH,
                id: page.next.to_key(),
            },
            feed,
        );
        Ok(Response::new(v1::ListTicketChangesResponse {
            changes: page
                .entries
                .into_iter()
                .map(|entry| v1::TicketChange {
                    ticket: Some(v1::Ticket::from(entry.ticket)),
                    deleted: entry.deleted,
                })
                .collect(),
            next_cursor,
            caught_up: page.caught_up,
        }))
    }

    async fn update_ticket(
        &self,
        mut request: Request<v1::UpdateTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let Some(ticket) = message.ticket else {
            violations.add("ticket", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let id = violations.check("ticket.id", TicketId::parse(&ticket.id));
        let etag = optional_etag(&mut violations, "ticket.etag", &ticket.etag);
        let paths = message
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            violations.add(
                "update_mask",
                &InvalidValue::new(
                    "must name at least one of: subject, description, priority, tags, \
                     custom_fields, custom_fields.<key>, or *",
                ),
            );
        }
        let mut edits = TicketEdits::default();
        let mut replace_values = false;
        let mut set_values = Vec::new();
        for (index, path) in paths.iter().enumerate() {
            let fields: Vec<&str> = match path.as_str() {
                "*" => EDITABLE.to_vec(),
                other if EDITABLE.contains(&other) => vec![other],
                other if other.starts_with("custom_fields.") => {
                    let key = &other["custom_fields.".len()..];
                    if let Some(key) = violations
                        .check(format!("update_mask.paths[{index}]"), FieldKey::parse(key))
                    {
                        // Named but absent from the request's map: cleared.
                        let value = ticket
                            .custom_fields
                            .get(key.as_str())
                            .map_or(RawValue::Null, RawValue::from);
                        set_values.push((key.as_str().to_owned(), value));
                    }
                    Vec::new()
                }
                other => {
                    violations.add(format!("update_mask.paths[{index}]"), &not_editable(other));
                    Vec::new()
                }
            };
            for field in fields {
                match field {
                    "subject" => {
                        edits.subject = violations
                            .check("ticket.subject", TicketSubject::parse(&ticket.subject));
                    }
                    "description" => {
                        edits.description = violations.check(
                            "ticket.description",
                            TicketDescription::parse(&ticket.description),
                        );
                    }
                    "tags" => {
                        edits.tags = parse_tags(&mut violations, "ticket.tags", &ticket.tags);
                    }
                    "custom_fields" => replace_values = true,
                    _ => {
                        edits.priority = violations
                            .check("ticket.priority", priority_or_normal(ticket.priority));
                    }
                }
            }
        }
        // `custom_fields` (or `*`) replaces them all, which covers any key also named alone.
        edits.custom_fields = if replace_values {
            Some(RawFieldEdit::Replace(raw_values(&ticket.custom_fields)))
        } else if set_values.is_empty() {
            None
        } else {
            Some(RawFieldEdit::Set(set_values))
        };
        let (Some(id), Some(etag), true) = (id, etag, violations.is_empty()) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let outcome = self
            .desk
            .update(&keyed.write(&stored_as(&ticket_response)), id, edits, etag)
            .await?;
        answer(outcome, &ticket_response)
    }

    async fn add_ticket_tags(
        &self,
        mut request: Request<v1::AddTicketTagsRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let message = request.get_ref();
        let (id, add, etag) = tag_request(&message.id, &message.tags, &message.etag)?;
        let outcome = self
            .desk
            .tag(
                &keyed.write(&stored_as(&ticket_response)),
                id,
                add,
                TagSet::default(),
                etag,
            )
            .await?;
        answer(outcome, &ticket_response)
    }

    async fn remove_ticket_tags(
        &self,
        mut request: Request<v1::RemoveTicketTagsRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let message = request.get_ref();
        let (id, remove, etag) = tag_request(&message.id, &message.tags, &message.etag)?;
        let outcome = self
            .desk
            .tag(
                &keyed.write(&stored_as(&ticket_response)),
                id,
                TagSet::default(),
                remove,
                etag,
            )
            .await?;
        answer(outcome, &ticket_response)
    }

    async fn assign_ticket(
        &self,
        mut request: Request<v1::AssignTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        let id = violations.check("id", TicketId::parse(&message.id));
        let assignee = match message.assignee_id.as_str() {
            "" => Some(None),
            raw => violations
                .check("assignee_id", UserId::parse(raw))
                .map(Some),
        };
        let group = match message.group_id.as_deref() {
            None => Some(None),
            Some(raw) => optional_group(&mut violations, "group_id", raw).map(Some),
        };
        let etag = optional_etag(&mut violations, "etag", &message.etag);
        let (Some(id), Some(assignee), Some(group), Some(etag)) = (id, assignee, group, etag)
        else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let outcome = self
            .desk
            .assign(
                &keyed.write(&stored_as(&ticket_response)),
                id,
                assignee,
                group,
                etag,
            )
            .await?;
        answer(outcome, &ticket_response)
    }

    async fn mark_ticket_pending(
        &self,
        request: Request<v1::MarkTicketPendingRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        let (id, etag) = (request.get_ref().id.clone(), request.get_ref().etag.clone());
        self.transition(request, &id, &etag, TicketTransition::MarkPending)
            .await
    }

    async fn hold_ticket(
        &self,
        request: Request<v1::HoldTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        let (id, etag) = (request.get_ref().id.clone(), request.get_ref().etag.clone());
        self.transition(request, &id, &etag, TicketTransition::Hold)
            .await
    }

    async fn resolve_ticket(
        &self,
        request: Request<v1::ResolveTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        let (id, etag) = (request.get_ref().id.clone(), request.get_ref().etag.clone());
        self.transition(request, &id, &etag, TicketTransition::Resolve)
            .await
    }

    async fn reopen_ticket(
        &self,
        request: Request<v1::ReopenTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        let (id, etag) = (request.get_ref().id.clone(), request.get_ref().etag.clone());
        self.transition(request, &id, &etag, TicketTransition::Reopen)
            .await
    }

    async fn close_ticket(
        &self,
        request: Request<v1::CloseTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        let (id, etag) = (request.get_ref().id.clone(), request.get_ref().etag.clone());
        self.transition(request, &id, &etag, TicketTransition::Close)
            .await
    }

    async fn delete_ticket(
        &self,
        mut request: Request<v1::DeleteTicketRequest>,
    ) -> Result<Response<v1::DeleteTicketResponse>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let (id, etag) = id_and_etag(&request.get_ref().id, &request.get_ref().etag)?;
        let respond = |_: &Ticket| Response::new(v1::DeleteTicketResponse {});
        let outcome = self
            .desk
            .delete(&keyed.write(&stored_as(&respond)), id, etag)
            .await?;
        answer(outcome, &respond)
    }

    async fn add_comment(
        &self,
        mut request: Request<v1::AddCommentRequest>,
    ) -> Result<Response<v1::Comment>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let ticket_id = violations.check("ticket_id", TicketId::parse(&message.ticket_id));
        let Some(comment) = message.comment else {
            violations.add("comment", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let body = violations.check("comment.body", CommentBody::parse(&comment.body));
        let (Some(ticket_id), Some(body)) = (ticket_id, body) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let location = format!("/v1/tickets/{ticket_id}/comments");
        let respond = |added: &domain::Comment| {
            created(Response::new(v1::Comment::from(added.clone())), &location)
        };
        let outcome = self
            .desk
            .add_comment(
                &keyed.write(&stored_as(&respond)),
                ticket_id,
                body,
                comment.public,
            )
            .await?;
        answer(outcome, &respond)
    }

    async fn list_comments(
        &self,
        mut request: Request<v1::ListCommentsRequest>,
    ) -> Result<Response<v1::ListCommentsResponse>, Status> {
        let scope = scope(&mut request)?;
        let message = request.get_ref();
        let (ticket_id, pages, page_size, after) = ListPages::of_parent(
            &self.pages,
            scope.caller()?,
            "comments",
            ("ticket_id", TicketId::parse(&message.ticket_id)),
            (message.page_size, &message.page_token),
        )?;
        let page = self
            .desk
            .list_comments(&scope, ticket_id, page_size, after)
            .await?;
        Ok(Response::new(v1::ListCommentsResponse {
            comments: page.items.into_iter().map(v1::Comment::from).collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn list_ticket_activity(
        &self,
        mut request: Request<v1::ListTicketActivityRequest>,
    ) -> Result<Response<v1::ListTicketActivityResponse>, Status> {
        let scope = scope(&mut request)?;
        let message = request.get_ref();
        let (ticket_id, pages, page_size, after) = ListPages::of_parent(
            &self.pages,
            scope.caller()?,
            "activity",
            ("ticket_id", TicketId::parse(&message.ticket_id)),
            (message.page_size, &message.page_token),
        )?;
        let page = self
            .desk
            .list_activity(&scope, ticket_id, page_size, after)
            .await?;
        Ok(Response::new(v1::ListTicketActivityResponse {
            activities: page
                .items
                .into_iter()
                .map(v1::TicketActivity::from)
                .collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn list_tags(
        &self,
        mut request: Request<v1::ListTagsRequest>,
    ) -> Result<Response<v1::ListTagsResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        let prefix = violations.check("prefix", TagPrefix::parse(&message.prefix));
        // A token of one prefix's list is no token of another's.
        let list = prefix.as_ref().map(|prefix| match prefix {
            Some(prefix) => format!("{TAGS}:{}", prefix.as_str()),
            None => TAGS.to_owned(),
        });
        let page = ListPages::checked_counted(
            &self.pages,
            caller,
            list.as_deref(),
            &mut violations,
            message.page_size,
            &message.page_token,
        );
        let (Some(prefix), Some((pages, page_size, after))) = (prefix, page) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let page = self
            .desk
            .list_tags(&scope, prefix.as_ref(), page_size, after.as_ref())
            .await?;
        Ok(Response::new(v1::ListTagsResponse {
            tags: page.items.iter().map(v1::TagCount::from).collect(),
            next_page_token: pages.next_counted_token(page.next.as_ref()),
        }))
    }
}

impl TicketApi {
    /// Mark pending, hold, resolve, reopen and close: the same request shape, different rules.
    async fn transition<T: prost::Message>(
        &self,
        mut request: Request<T>,
        id: &str,
        etag: &str,
        transition: TicketTransition,
    ) -> Result<Response<v1::Ticket>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let (id, etag) = id_and_etag(id, etag)?;
        let outcome = self
            .desk
            .transition(
                &keyed.write(&stored_as(&ticket_response)),
                id,
                transition,
                etag,
            )
            .await?;
        answer(outcome, &ticket_response)
    }
}

fn id_and_etag(id: &str, etag: &str) -> Result<(TicketId, Option<Etag>), AppError> {
    let mut violations = FieldViolations::new();
    let id = violations.check("id", TicketId::parse(id));
    let etag = optional_etag(&mut violations, "etag", etag);
    match (id, etag) {
        (Some(id), Some(etag)) => Ok((id, etag)),
        _ => Err(AppError::InvalidArgument(violations)),
    }
}

/// A group a request names: empty for none, otherwise a UUID in its hyphenated form.
fn optional_group(
    violations: &mut FieldViolations,
    field: &str,
    raw: &str,
) -> Option<Option<uuid::Uuid>> {
    violations.check(field, domain::optional_uuid(raw))
}

/// An empty etag means "unconditionally"; anything else must be one this API issued.
fn optional_etag(violations: &mut FieldViolations, field: &str, raw: &str) -> Option<Option<Etag>> {
    if raw.trim().is_empty() {
        Some(None)
    } else {
        violations.check(field, Etag::parse(raw)).map(Some)
    }
}

fn not_editable(path: &str) -> InvalidValue {
    let hint = match path {
        "status" => {
            "change it with MarkTicketPending, HoldTicket, ResolveTicket, ReopenTicket or CloseTicket"
        }
        "assignee_id" | "group_id" => "change it with AssignTicket",
        "id" | "account_id" | "requester_id" | "requester_email" | "create_time"
        | "update_time" | "etag" => "it cannot be changed",
        _ => "it is not a field of Ticket",
    };
    InvalidValue::new(format!(
        "{path:?} cannot be updated: {hint} (UpdateTicket changes subject, description, priority, \
         tags, custom_fields, custom_fields.<key>)"
    ))
}

/// A new or changed ticket's priority: UNSPECIFIED means the default, NORMAL.
fn priority_or_normal(value: i32) -> Result<TicketPriority, InvalidValue> {
    unless_unspecified(value).map(|priority| priority.unwrap_or(TicketPriority::Normal))
}

/// The ticket of a CreateTicket request, with every refused field named at once: the rules
/// that depend on who calls (a `customer` raises tickets for themselves and may not say URGENT;
/// anyone else names the requester) included, so that `{}` names the subject, the description
/// and the requester's email together. The desk checks them again where it acts.
fn parse_new_ticket(
    ticket: Option<v1::Ticket>,
    customer: bool,
) -> Result<NewTicketRequest, AppError> {
    let mut violations = FieldViolations::new();
    let Some(ticket) = ticket else {
        violations.add("ticket", &required());
        return Err(AppError::InvalidArgument(violations));
    };
    let subject = violations.check("ticket.subject", TicketSubject::parse(&ticket.subject));
    let description = violations.check(
        "ticket.description",
        TicketDescription::parse(&ticket.description),
    );
    let priority = violations
        .check("ticket.priority", priority_or_normal(ticket.priority))
        .and_then(|priority| {
            if customer && priority == TicketPriority::Urgent {
                violations.add(
                    "ticket.priority",
                    &InvalidValue::new(
                        "customers may choose low, normal or high; urgent is set by agents",
                    ),
                );
                return None;
            }
            Some(priority)
        });
    let requester_email = match (ticket.requester_email.trim(), customer) {
        ("", true) => Some(None),
        ("", false) => {
            violations.add(
                "ticket.requester_email",
                &InvalidValue::new("an email address is required"),
            );
            None
        }
        (_, true) => {
            violations.add(
                "ticket.requester_email",
                &InvalidValue::new("must be empty: customers raise tickets for themselves"),
            );
            None
        }
        (raw, false) => violations
            .check("ticket.requester_email", Email::parse(raw))
            .map(Some),
    };
    let assignee = match ticket.assignee_id.as_str() {
        "" => Some(None),
        raw => violations
            .check("ticket.assignee_id", UserId::parse(raw))
            .map(Some),
    };
    let group = optional_group(&mut violations, "ticket.group_id", &ticket.group_id);
    let tags = if customer && !ticket.tags.is_empty() {
        violations.add(
            "ticket.tags",
            &InvalidValue::new("must be empty: tags are set by agents"),
        );
        None
    } else {
        parse_tags(&mut violations, "ticket.tags", &ticket.tags)
    };
    let custom_fields = raw_values(&ticket.custom_fields);
    match (
        subject,
        description,
        priority,
        requester_email,
        assignee,
        group,
        tags,
    ) {
        (
            Some(subject),
            Some(description),
            Some(priority),
            Some(requester_email),
            Some(assignee),
            Some(group),
            Some(tags),
        ) if violations.is_empty() => Ok(NewTicketRequest {
            subject,
            description,
            priority,
            requester_email,
            assignee,
            group,
            tags,
            custom_fields,
        }),
        _ => Err(AppError::InvalidArgument(violations)),
    }
}

/// A request's custom field values as sent, by key in key order: the desk checks them against
/// the account's catalogue.
fn raw_values(
    values: &std::collections::HashMap<String, prost_types::Value>,
) -> Vec<(String, RawValue)> {
    let mut raw: Vec<(String, RawValue)> = values
        .iter()
        .map(|(key, value)| (key.clone(), RawValue::from(value)))
        .collect();
    raw.sort_by(|a, b| a.0.cmp(&b.0));
    raw
}

/// The tags of a request, each normalized; a refused tag is named `{field}[i]`, too many after
/// merging the ones that normalize alike `{field}`.
fn parse_tags(violations: &mut FieldViolations, field: &str, raw: &[String]) -> Option<TagSet> {
    match TagSet::parse(raw) {
        Ok(tags) => Some(tags),
        Err((Some(index), problem)) => {
            violations.add(format!("{field}[{index}]"), &problem);
            None
        }
        Err((None, problem)) => {
            violations.add(field, &problem);
            None
        }
    }
}

/// The id, tags and etag of AddTicketTags and RemoveTicketTags.
fn tag_request(
    id: &str,
    tags: &[String],
    etag: &str,
) -> Result<(TicketId, TagSet, Option<Etag>), AppError> {
    let mut violations = FieldViolations::new();
    let id = violations.check("id", TicketId::parse(id));
    let tags = if tags.is_empty() {
        violations.add("tags", &required());
        None
    } else {
        parse_tags(&mut violations, "tags", tags)
    };
    let etag = optional_etag(&mut violations, "etag", etag);
    match (id, tags, etag) {
        (Some(id), Some(tags), Some(etag)) if violations.is_empty() => Ok((id, tags, etag)),
        _ => Err(AppError::InvalidArgument(violations)),
    }
}
