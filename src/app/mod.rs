//! Wiring and lifecycle: the [`startup::Application`] that builds every part and runs it until
//! it is stopped, the health statuses ([`health`]), the `/metrics` listener ([`metrics`]) and the
//! log subscriber ([`telemetry`]).

pub mod health;
pub mod metrics;
pub mod startup;
pub mod telemetry;
