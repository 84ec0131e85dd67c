//! What every layer records into, on the ground floor so that anything may record and nothing
//! here depends on what records: the metric families and their handles ([`metrics`]), the trace
//! spans and W3C trace context ([`traces`]), and the health statuses a component reports
//! ([`health`]). It imports nothing of the service's own but configuration and domain types.
//!
//! Rendering is not here: the `/metrics` listener, the log subscriber with its OTLP exporter and
//! the `grpc.health.v1` service are wired at the top, in `crate::app`.

pub mod health;
pub mod metrics;
pub mod traces;
