//! Drives a scenario: N workers, each owning its state (an HTTP/1.1 connection, or clones of
//! gRPC clients over a few shared HTTP/2 connections), call in a loop until the time is up.
//! Closed loop: each worker calls again as soon as its call returns. Open loop (`--rate`): calls
//! are due at fixed intervals, shared among the workers, and a call's latency counts from when it
//! was due, so a stalled server is not flattered by the load generator waiting for it
//! (coordinated omission). Calls that start during the warm-up are not recorded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// What one call ended with, as a label of the report: a gRPC code name, an HTTP status, or a
/// failure below both (the connection).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Label {
    Grpc(&'static str),
    Http(u16),
    /// The refusal a scenario asks for (its HTTP status): a success of that scenario.
    Expected(u16),
    Transport,
    /// No answer within [`CALL_TIMEOUT`].
    Timeout,
}

/// How long one call may take before it counts as failed: a server that stops answering ends
/// the run with errors, not a hang.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Label {
    pub fn grpc(code: tonic::Code) -> Self {
        Self::Grpc(grpc_code_name(code))
    }

    pub fn is_success(&self) -> bool {
        match self {
            Self::Grpc(name) => *name == "OK",
            Self::Http(status) => (200..300).contains(status),
            Self::Expected(_) => true,
            Self::Transport | Self::Timeout => false,
        }
    }

    pub fn name(&self) -> String {
        match self {
            Self::Grpc(name) => (*name).to_owned(),
            Self::Http(status) => status.to_string(),
            Self::Expected(status) => format!("{status} as asked"),
            Self::Transport => "TRANSPORT".to_owned(),
            Self::Timeout => "TIMEOUT".to_owned(),
        }
    }
}

/// The canonical upper-case name of a gRPC status code.
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// One call's outcome; `server_time` when the answer said how long the server took (Envoy's
/// `x-envoy-upstream-service-time`, whole milliseconds).
pub struct Outcome {
    pub label: Label,
    pub server_time: Option<Duration>,
}

impl Outcome {
    pub fn of(label: Label) -> Self {
        Self {
            label,
            server_time: None,
        }
    }
}

/// A worker: its own connection or client clones, called one call at a time.
#[tonic::async_trait]
pub trait Worker: Send {
    async fn call(&mut self, rng: &mut StdRng) -> Outcome;
}

/// Makes the workers of a run.
#[tonic::async_trait]
pub trait Scenario: Send + Sync {
    async fn worker(&self, index: usize) -> anyhow::Result<Box<dyn Worker>>;
}

/// How to drive a scenario.
#[derive(Clone, Debug)]
pub struct LoadShape {
    pub workers: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Calls per second for an open loop; `None` for a closed loop.
    pub rate: Option<f64>,
    /// Stop after this many recorded calls (latency runs, `run --calls`); `None`: run the duration.
    pub max_calls: Option<u64>,
}

/// What the workers recorded, merged.
pub struct Recording {
    pub latency: Histogram<u64>,
    pub server_time: Histogram<u64>,
    pub labels: BTreeMap<Label, u64>,
    /// The measured window: from the end of the warm-up to the last recorded call's end.
    pub elapsed: Duration,
}

impl Recording {
    fn new() -> Self {
        Self {
            latency: new_histogram(),
            server_time: new_histogram(),
            labels: BTreeMap::new(),
            elapsed: Duration::ZERO,
        }
    }

    fn record(&mut self, outcome: &Outcome, latency: Duration) {
        self.latency.saturating_record(micros(latency));
        if let Some(server_time) = outcome.server_time {
            self.server_time.saturating_record(micros(server_time));
        }
        *self.labels.entry(outcome.label.clone()).or_default() += 1;
    }

    fn merge(&mut self, other: &Self) {
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
        self.server_time
            .add(&other.server_time)
            .expect("same histogram bounds");
        for (label, count) in &other.labels {
            *self.labels.entry(label.clone()).or_default() += count;
        }
    }
}

/// Microseconds, 1 µs to 60 s, 3 significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Runs `scenario` as `shape` says and returns what was recorded after the warm-up.
pub async fn drive(scenario: Arc<dyn Scenario>, shape: &LoadShape) -> anyhow::Result<Recording> {
    let mut workers = Vec::with_capacity(shape.workers);
    for index in 0..shape.workers {
        workers.push(
            scenario
                .worker(index)
                .await
                .with_context(|| format!("start worker {index}"))?,
        );
    }
    let start = Instant::now();
    let measure_from = start + shape.warmup;
    let end = measure_from + shape.duration;
    let next_slot = Arc::new(AtomicU64::new(0));
    let recorded = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(workers.len());
    for (index, mut worker) in workers.into_iter().enumerate() {
        let shape = shape.clone();
        let next_slot = Arc::clone(&next_slot);
        let recorded = Arc::clone(&recorded);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(0x5eed_0000 + index as u64);
            let mut recording = Recording::new();
            let mut last_end = measure_from;
            loop {
                let due = match shape.rate {
                    Some(rate) => {
                        let slot = next_slot.fetch_add(1, Ordering::Relaxed);
                        let due = start + Duration::from_secs_f64(slot as f64 / rate);
                        tokio::time::sleep_until(due).await;
                        due
                    }
                    None => Instant::now(),
                };
                if due >= end {
                    break;
                }
                let outcome = worker.call(&mut rng).await;
                let finished = Instant::now();
                if due >= measure_from {
                    recording.record(&outcome, finished - due);
                    last_end = last_end.max(finished);
                    let total = recorded.fetch_add(1, Ordering::Relaxed) + 1;
                    if shape.max_calls.is_some_and(|max| total >= max) {
                        break;
                    }
                }
            }
            recording.elapsed = last_end - measure_from;
            recording
        }));
    }
    let mut merged = Recording::new();
    for task in tasks {
        let recording = task.await.context("a worker panicked")?;
        merged.elapsed = merged.elapsed.max(recording.elapsed);
        merged.merge(&recording);
    }
    Ok(merged)
}

/// One HTTP/2 connection to a gRPC server at `addr` (`host:port`), Nagle off.
pub async fn connect(addr: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("connect to {addr}"))
}

/// `connections` HTTP/2 connections: workers spread over them.
pub async fn connect_many(addr: &str, connections: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        channels.push(connect(addr).await?);
    }
    Ok(channels)
}

/// `Bearer <token>` as a metadata value, parsed once and cloned per call.
pub fn bearer(token: &str) -> anyhow::Result<MetadataValue<tonic::metadata::Ascii>> {
    MetadataValue::try_from(format!("Bearer {token}")).context("a token is ASCII")
}

/// A request with `authorization: Bearer <token>`.
pub fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = bearer(token) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}
