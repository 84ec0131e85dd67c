//! The gRPC server: where it listens, the limits it puts on requests, keep-alive, health probing,
//! shutdown, and the runtime's threads.

use std::net::SocketAddr;
use std::time::Duration;

use super::reader::Reader;

/// The least `MAX_REQUEST_HEADER_BYTES` accepted: hyper's own default.
const MIN_REQUEST_HEADER_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// `GRPC_LISTEN_ADDR`; port 0 picks a free port (tests).
    pub listen_addr: SocketAddr,
    /// `METRICS_LISTEN_ADDR`: where Prometheus scrapes `GET /metrics`; unset, nothing is served.
    pub metrics_listen_addr: Option<SocketAddr>,
    /// `REQUEST_TIMEOUT_MS`: the deadline of a request that brings none, and the longest one a
    /// client may ask for with `grpc-timeout`.
    pub request_timeout: Duration,
    /// `MAX_REQUEST_BYTES`: the largest request message accepted.
    pub max_request_bytes: usize,
    /// `MAX_REQUEST_HEADER_BYTES`: the largest request header list (metadata) accepted, counted
    /// as HTTP/2 counts it (name + value + 32 bytes per field). The default leaves room above
    /// Envoy's 32 KiB for what Envoy adds, so nothing Envoy forwards is refused here.
    pub max_request_header_bytes: usize,
    /// `MAX_CONCURRENT_STREAMS`: concurrent RPCs per HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// `HTTP2_KEEPALIVE_INTERVAL_MS`
    pub http2_keepalive_interval: Duration,
    /// `HTTP2_KEEPALIVE_TIMEOUT_MS`
    pub http2_keepalive_timeout: Duration,
    /// `HEALTH_PROBE_INTERVAL_MS`: how often PostgreSQL and Redis are probed.
    pub health_probe_interval: Duration,
    /// `QUEUE_SAMPLE_INTERVAL_MS`: how often the background queues' depth and oldest age are
    /// sampled for `/metrics` (only while `METRICS_LISTEN_ADDR` is set).
    pub queue_sample_interval: Duration,
    /// `SHUTDOWN_DELAY_MS`: after a signal, how long the server keeps serving while health says
    /// NOT_SERVING, so that load balancers stop sending traffic before it stops listening. Envoy's
    /// health-check interval is a third of it (supportdesk envoy-config): the one setting of the drain.
    pub shutdown_delay: Duration,
    /// `SHUTDOWN_DRAIN_TIMEOUT_MS`: how long in-flight RPCs may then take to finish.
    pub shutdown_drain_timeout: Duration,
    /// `WORKER_THREADS`: the async runtime's worker threads; unset, one per core. For a
    /// container whose CPU share is smaller than the cores it sees; on the benchmark's two shared
    /// cores one worker spent less CPU per call but served less (docs/performance.md).
    pub worker_threads: Option<std::num::NonZeroUsize>,
}

impl Reader<'_> {
    pub(super) fn server(&mut self) -> ServerSettings {
        let settings = ServerSettings {
            listen_addr: self.parsed(
                "GRPC_LISTEN_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 50051)),
            ),
            metrics_listen_addr: self.optional("METRICS_LISTEN_ADDR"),
            request_timeout: self.millis("REQUEST_TIMEOUT_MS", 10_000),
            max_request_bytes: self.parsed("MAX_REQUEST_BYTES", 1024 * 1024),
            max_request_header_bytes: self.parsed("MAX_REQUEST_HEADER_BYTES", 40 * 1024),
            max_concurrent_streams: self.parsed("MAX_CONCURRENT_STREAMS", 200),
            http2_keepalive_interval: self.millis("HTTP2_KEEPALIVE_INTERVAL_MS", 30_000),
            http2_keepalive_timeout: self.millis("HTTP2_KEEPALIVE_TIMEOUT_MS", 10_000),
            health_probe_interval: self.millis("HEALTH_PROBE_INTERVAL_MS", 1_000),
            queue_sample_interval: self.millis("QUEUE_SAMPLE_INTERVAL_MS", 15_000),
            shutdown_delay: self.millis_or_zero("SHUTDOWN_DELAY_MS", 3_000),
            shutdown_drain_timeout: self.millis("SHUTDOWN_DRAIN_TIMEOUT_MS", 30_000),
            worker_threads: self.optional("WORKER_THREADS"),
        };
        self.positive("MAX_CONCURRENT_STREAMS", settings.max_concurrent_streams);
        // Below hyper's own default every ordinary client would be refused (a token and a few
        // headers already take some kilobytes).
        if settings.max_request_header_bytes < MIN_REQUEST_HEADER_BYTES {
            self.problems.push(format!(
                "MAX_REQUEST_HEADER_BYTES must be at least {MIN_REQUEST_HEADER_BYTES}"
            ));
        }
        settings
    }
}
