//! Wiring and lifecycle, the top of the house: the [`startup::Application`] that builds every
//! part, the [`lifecycle`] it then runs (serve until stopped, then drain), and the rendering of
//! what the service records: the `/metrics` listener ([`metrics_endpoint`]) and the log
//! subscriber with its OTLP exporter ([`telemetry`]). Nothing but `main.rs` and `crate::cli`
//! imports it.

pub mod lifecycle;
pub mod metrics_endpoint;
pub mod startup;
pub mod telemetry;
