//! The integration suite: one binary, so the template database and the build are shared.

mod accounts_and_users;
mod api_keys;
mod authentication;
mod command_line;
mod contract;
mod deadlines;
mod declarations;
mod dependencies;
mod envoy;
mod helpers;
mod idempotency;
mod metrics;
mod principal_states;
mod process;
mod proxy;
mod rate_limits;
mod reflection;
mod request_id;
mod rest;
mod round_trips;
mod tenancy;
mod ticket_lifecycle;
mod ticket_queries;
mod tickets;
mod tooling;
mod transport;
