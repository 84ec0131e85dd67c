//! Wiring and lifecycle: the [`startup::Application`] that builds every part, the
//! [`lifecycle`] it then runs (serve until stopped, then drain), the health statuses ([`health`]), the `/metrics` listener ([`metrics`]) and the
//! log subscriber ([`telemetry`]) with the trace spans it may export ([`traces`]).

pub mod health;
pub mod lifecycle;
pub mod metrics;
pub mod startup;
pub mod telemetry;
pub mod traces;
