//! The service as a whole: its process and command line, compression, logs, transport, edge, deadlines, dependencies, rate limits, idempotency, metrics, alert rules, traces, the job runner, reflection, REST (and its strict contract) and a real browser.

pub(crate) mod alerts;
pub(crate) mod browser;
pub(crate) mod command_line;
pub(crate) mod compression;
pub(crate) mod deadlines;
pub(crate) mod dependencies;
pub(crate) mod edge;
pub(crate) mod idempotency;
pub(crate) mod job_runner;
pub(crate) mod logs;
pub(crate) mod metrics;
pub(crate) mod plain_routes;
pub(crate) mod process;
pub(crate) mod rate_limits;
pub(crate) mod reflection;
pub(crate) mod request_id;
pub(crate) mod rest;
pub(crate) mod security_headers;
pub(crate) mod strict_rest;
pub(crate) mod tooling;
pub(crate) mod traces;
pub(crate) mod transport;
