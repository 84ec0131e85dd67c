//! The integration suite: one binary, so the template database and the build are shared.

mod deadlines;
mod dependencies;
mod envoy;
mod helpers;
mod process;
mod proxy;
mod reflection;
mod request_id;
mod rest;
mod tickets;
mod tooling;
