//! supportdesk: a support-desk service served over gRPC (tonic), reachable as REST/JSON through
//! Envoy's gRPC-JSON transcoder. `main.rs` only parses the command line; everything else is here
//! so that integration tests can build the same `Application` the binary runs.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod configuration;
pub mod db;
pub mod domain;
pub mod errors;
pub mod idempotency;
pub mod jobs;
pub mod middleware;
pub mod providers;
pub mod rate_limit;
pub mod redis;
pub mod resilience;
pub mod scope;
pub mod service;
pub mod telemetry;
pub mod wire;
