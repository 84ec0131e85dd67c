//! `supportdesk.v1.TicketService`.

use tonic::{Request, Response, Status};

use super::{next_page_token, page_request, request_context, required, timestamp};
use crate::domain::{
    Email, InvalidValue, NewTicketRequest, Ticket, TicketDescription, TicketId, TicketPriority,
    TicketStatus, TicketSubject, UserId,
};
use crate::errors::{AppError, FieldViolations};
use crate::proto::v1;
use crate::service::TicketDesk;

/// The name page tokens of ListTickets carry.
const LIST: &str = "tickets";

pub struct TicketApi {
    desk: TicketDesk,
}

impl TicketApi {
    pub fn new(desk: TicketDesk) -> Self {
        Self { desk }
    }
}

#[tonic::async_trait]
impl v1::ticket_service_server::TicketService for TicketApi {
    async fn create_ticket(
        &self,
        request: Request<v1::CreateTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        let (caller, budget) = request_context(&request)?;
        let new_ticket = parse_new_ticket(request.into_inner().ticket)?;
        let ticket = self.desk.create(&caller, new_ticket, budget).await?;
        Ok(Response::new(to_wire(ticket)))
    }

    async fn get_ticket(
        &self,
        request: Request<v1::GetTicketRequest>,
    ) -> Result<Response<v1::Ticket>, Status> {
        let (caller, budget) = request_context(&request)?;
        let id = TicketId::parse(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        let ticket = self.desk.get(&caller, id, budget).await?;
        Ok(Response::new(to_wire(ticket)))
    }

    async fn list_tickets(
        &self,
        request: Request<v1::ListTicketsRequest>,
    ) -> Result<Response<v1::ListTicketsResponse>, Status> {
        let (caller, budget) = request_context(&request)?;
        let message = request.get_ref();
        let (page_size, after) = page_request(message.page_size, &message.page_token, LIST)?;
        let page = self.desk.list(&caller, page_size, after, budget).await?;
        Ok(Response::new(v1::ListTicketsResponse {
            tickets: page.items.into_iter().map(to_wire).collect(),
            next_page_token: next_page_token(page.next, LIST),
        }))
    }
}

/// The ticket of a CreateTicket request, with every refused field named at once.
fn parse_new_ticket(ticket: Option<v1::Ticket>) -> Result<NewTicketRequest, AppError> {
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
    let priority = violations.check("ticket.priority", priority_from_wire(ticket.priority));
    let requester_email = match ticket.requester_email.trim() {
        "" => Some(None),
        raw => violations
            .check("ticket.requester_email", Email::parse(raw))
            .map(Some),
    };
    let assignee = match ticket.assignee_id.trim() {
        "" => Some(None),
        raw => violations
            .check("ticket.assignee_id", UserId::parse(raw))
            .map(Some),
    };
    match (subject, description, priority, requester_email, assignee) {
        (
            Some(subject),
            Some(description),
            Some(priority),
            Some(requester_email),
            Some(assignee),
        ) if violations.is_empty() => Ok(NewTicketRequest {
            subject,
            description,
            priority,
            requester_email,
            assignee,
        }),
        _ => Err(AppError::InvalidArgument(violations)),
    }
}

/// UNSPECIFIED means "the default", NORMAL; numbers outside the enum are refused.
fn priority_from_wire(value: i32) -> Result<TicketPriority, InvalidValue> {
    match v1::TicketPriority::try_from(value) {
        Ok(v1::TicketPriority::Unspecified | v1::TicketPriority::Normal) => {
            Ok(TicketPriority::Normal)
        }
        Ok(v1::TicketPriority::Low) => Ok(TicketPriority::Low),
        Ok(v1::TicketPriority::High) => Ok(TicketPriority::High),
        Ok(v1::TicketPriority::Urgent) => Ok(TicketPriority::Urgent),
        Err(_) => Err(InvalidValue::new(format!(
            "{value} is not a TicketPriority"
        ))),
    }
}

fn priority_to_wire(priority: TicketPriority) -> v1::TicketPriority {
    match priority {
        TicketPriority::Low => v1::TicketPriority::Low,
        TicketPriority::Normal => v1::TicketPriority::Normal,
        TicketPriority::High => v1::TicketPriority::High,
        TicketPriority::Urgent => v1::TicketPriority::Urgent,
    }
}

fn status_to_wire(status: TicketStatus) -> v1::TicketStatus {
    match status {
        TicketStatus::New => v1::TicketStatus::New,
        TicketStatus::Open => v1::TicketStatus::Open,
        TicketStatus::Pending => v1::TicketStatus::Pending,
        TicketStatus::Solved => v1::TicketStatus::Solved,
        TicketStatus::Closed => v1::TicketStatus::Closed,
    }
}

fn to_wire(ticket: Ticket) -> v1::Ticket {
    v1::Ticket {
        id: ticket.id.to_string(),
        account_id: ticket.account_id.to_string(),
        subject: ticket.subject.as_str().to_owned(),
        description: ticket.description.as_str().to_owned(),
        priority: priority_to_wire(ticket.priority).into(),
        status: status_to_wire(ticket.status).into(),
        requester_id: ticket.requester_id.to_string(),
        requester_email: ticket.requester_email.as_str().to_owned(),
        assignee_id: ticket
            .assignee_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        create_time: Some(timestamp(ticket.created_at)),
        update_time: Some(timestamp(ticket.updated_at)),
    }
}
