//! Wiring and lifecycle, the top of the house: the [`startup::Application`] that builds every
//! part (the domain services in [`services`], the API servers in [`servers`], health and its
//! gates in [`health`], which background tasks run in [`tasks`]), the [`lifecycle`] it then runs
//! (serve until stopped, then drain), and the rendering of what the service records: the
//! `/metrics` listener ([`metrics_endpoint`]) and the log subscriber with its OTLP exporter
//! ([`telemetry`]). Nothing but `main.rs` and `crate::cli` imports it.

mod health;
pub mod lifecycle;
pub mod metrics_endpoint;
mod servers;
mod services;
pub mod startup;
mod tasks;
pub mod telemetry;
