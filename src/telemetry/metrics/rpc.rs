//! Every RPC answered, by method and gRPC code, with a latency histogram by method.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::instruments::{OneLabel, TwoLabels};

/// The gRPC code names, by number, as the `code` label shows them.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Where `UNKNOWN` is in [`GRPC_CODES`]: what a status outside them is counted as.
const UNKNOWN_CODE_INDEX: usize = 2;

/// The name of gRPC code `code` (`OK`, `NOT_FOUND`, ...), `UNKNOWN` for a number that is none.
pub fn grpc_code_name(code: u16) -> &'static str {
    GRPC_CODES
        .get(usize::from(code))
        .copied()
        .unwrap_or(GRPC_CODES[UNKNOWN_CODE_INDEX])
}

/// The latency histogram's upper bounds: 1 ms doubling to about 16 s (15 buckets and +Inf).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every RPC answered, by method and gRPC code, and how long each took, by method. The method is
/// the declared path (`/supportdesk.v1.TicketService/GetTicket`), `unknown` for a path the
/// method table does not know, so the series are bounded by the API.
///
/// A declared RPC's series are found by its index in the method table, in an array filled on
/// first use: counting costs no hashing of labels on the hot path.
#[derive(Clone, Debug)]
pub struct RpcMetrics {
    requests: Family<TwoLabels, PromCounter>,
    latency: Family<OneLabel, Histogram, fn() -> Histogram>,
    by_index: Arc<[OnceLock<MethodSeries>; MAX_INDEXED_METHODS]>,
}

/// How many RPCs get array slots; any beyond (none today) are found by their labels.
const MAX_INDEXED_METHODS: usize = 256;

/// One RPC's series: its latency histogram and its counter of each code used so far.
#[derive(Debug)]
struct MethodSeries {
    latency: Histogram,
    codes: [OnceLock<PromCounter>; GRPC_CODES.len()],
}

/// The RPC an answer is counted under: its path and, for a declared RPC, its index in the method
/// table.
#[derive(Clone, Copy, Debug)]
pub struct RpcName {
    pub path: &'static str,
    pub index: Option<usize>,
}

impl RpcMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            by_index: Arc::new(std::array::from_fn(|_| OnceLock::new())),
        };
        registry.register(
            "supportdesk_rpc_requests",
            "RPCs answered, by method and gRPC code (refusals of the middleware included)",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "supportdesk_rpc_duration",
            "Time from receiving an RPC to sending its status, by method",
            prometheus_client::registry::Unit::Seconds,
            metrics.latency.clone(),
        );
        metrics
    }

    /// Counts an RPC answered with gRPC code `code` after `took`.
    pub fn answered(&self, rpc: RpcName, code: u16, took: Duration) {
        let code = Some(usize::from(code))
            .filter(|code| *code < GRPC_CODES.len())
            .unwrap_or(UNKNOWN_CODE_INDEX);
        let method = rpc.path;
        let Some(slot) = rpc.index.and_then(|index| self.by_index.get(index)) else {
            self.requests
                .get_or_create(&[("method", method), ("code", GRPC_CODES[code])])
                .inc();
            self.latency
                .get_or_create(&[("method", method)])
                .observe(took.as_secs_f64());
            return;
        };
        let series = slot.get_or_init(|| MethodSeries {
            latency: self.latency.get_or_create_owned(&[("method", method)]),
            codes: std::array::from_fn(|_| OnceLock::new()),
        });
        series.codes[code]
            .get_or_init(|| {
                self.requests
                    .get_or_create_owned(&[("method", method), ("code", GRPC_CODES[code])])
            })
            .inc();
        series.latency.observe(took.as_secs_f64());
    }

    /// How many RPCs of `method` were answered with the code named `code`.
    pub fn count(&self, method: &'static str, code: &'static str) -> u64 {
        self.requests
            .get(&[("method", method), ("code", code)])
            .map_or(0, |counter| counter.get())
    }
}
