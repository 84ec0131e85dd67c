//! TicketService: tickets, comments, their lifecycle and queries.

pub(crate) mod basics;
pub(crate) mod by_view;
pub(crate) mod changes;
pub(crate) mod custom_values;
pub(crate) mod export;
pub(crate) mod filter;
pub(crate) mod groups;
pub(crate) mod lifecycle;
pub(crate) mod queries;
pub(crate) mod search;
pub(crate) mod tag_list;
pub(crate) mod tags;
pub(crate) mod views;
pub(crate) mod waiting;
