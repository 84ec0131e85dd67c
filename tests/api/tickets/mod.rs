//! TicketService: tickets, comments, their lifecycle and queries.

pub(crate) mod basics;
pub(crate) mod lifecycle;
pub(crate) mod queries;
