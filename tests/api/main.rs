//! The integration suite: one binary, so the template database and the build are shared.

mod attachments;
mod billing;
mod cross_cutting;
mod custom_fields;
mod dashboard;
mod deployment;
mod identity;
mod notifications;
mod operations;
mod outbound_webhooks;
mod pipeline;
mod rest_contract;
mod scale_out;
mod server;
mod sla;
mod support;
mod tickets;
mod webhooks;
