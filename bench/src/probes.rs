//! What is read from the server side during a run: the service's Prometheus counters (before
//! and after the measured window, so a scenario reports only its own cache hits and limiter
//! decisions) and the resident memory of a process (VmRSS from /proc), sampled while it runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::rest::HttpConnection;

/// The counters of one `GET /metrics`, by full sample name (`name{labels}`).
pub type Counters = BTreeMap<String, u64>;

pub const LIMITER_UNDECIDED: &str =
    r#"supportdesk_rate_limit_decisions_total{outcome="undecided"}"#;
pub const LIMITER_ALLOWED: &str = r#"supportdesk_rate_limit_decisions_total{outcome="allowed"}"#;
pub const LIMITER_REFUSED: &str = r#"supportdesk_rate_limit_decisions_total{outcome="refused"}"#;
pub const CACHE_HITS: &str = r#"supportdesk_ticket_cache_lookups_total{outcome="hit"}"#;
pub const CACHE_MISSES: &str = r#"supportdesk_ticket_cache_lookups_total{outcome="miss"}"#;
pub const CACHE_REDIS_FAILURES: &str = "supportdesk_ticket_cache_redis_failures_total";

/// Reads the Prometheus text of `addr` (`host:port`).
pub async fn scrape(addr: &str) -> anyhow::Result<Counters> {
    let mut connection = HttpConnection::open(addr).await?;
    let answer = connection.get("/metrics", &[]).await?;
    anyhow::ensure!(
        answer.status.is_success(),
        "GET http://{addr}/metrics answered {}",
        answer.status
    );
    let text = std::str::from_utf8(&answer.body).context("metrics are UTF-8")?;
    Ok(text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(name, value)| Some((name.to_owned(), value.parse::<u64>().ok()?)))
        .collect())
}

/// What the service counted during the measured window.
#[derive(Debug, Default, Serialize)]
pub struct CounterDelta {
    pub limiter_allowed: u64,
    pub limiter_refused: u64,
    pub limiter_undecided: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_redis_failures: u64,
    /// hits / (hits + misses); absent when the scenario made no cache lookup.
    pub cache_hit_ratio: Option<f64>,
}

impl CounterDelta {
    pub fn between(before: &Counters, after: &Counters) -> Self {
        let delta = |name: &str| {
            after
                .get(name)
                .copied()
                .unwrap_or(0)
                .saturating_sub(before.get(name).copied().unwrap_or(0))
        };
        let cache_hits = delta(CACHE_HITS);
        let cache_misses = delta(CACHE_MISSES);
        let lookups = cache_hits + cache_misses;
        Self {
            limiter_allowed: delta(LIMITER_ALLOWED),
            limiter_refused: delta(LIMITER_REFUSED),
            limiter_undecided: delta(LIMITER_UNDECIDED),
            cache_hits,
            cache_misses,
            cache_redis_failures: delta(CACHE_REDIS_FAILURES),
            cache_hit_ratio: (lookups > 0).then(|| cache_hits as f64 / lookups as f64),
        }
    }
}

/// Samples a process's VmRSS every `every` until dropped.
pub struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    last_kib: Arc<AtomicU64>,
    samples: Arc<std::sync::Mutex<Vec<u64>>>,
    task: tokio::task::JoinHandle<()>,
}

/// What the sampler saw, in KiB.
#[derive(Debug, Serialize)]
pub struct RssSummary {
    pub pid: u32,
    pub peak_kib: u64,
    pub end_kib: u64,
    pub samples_kib: Vec<u64>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let last_kib = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = {
            let (peak_kib, last_kib, samples) = (
                Arc::clone(&peak_kib),
                Arc::clone(&last_kib),
                Arc::clone(&samples),
            );
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                loop {
                    ticks.tick().await;
                    if let Some(kib) = vm_rss_kib(pid) {
                        peak_kib.fetch_max(kib, Ordering::Relaxed);
                        last_kib.store(kib, Ordering::Relaxed);
                        if let Ok(mut samples) = samples.lock() {
                            samples.push(kib);
                        }
                    }
                }
            })
        };
        Self {
            peak_kib,
            last_kib,
            samples,
            task,
        }
    }

    /// Takes a last sample and stops.
    pub fn finish(self, pid: u32) -> RssSummary {
        self.task.abort();
        if let Some(kib) = vm_rss_kib(pid) {
            self.peak_kib.fetch_max(kib, Ordering::Relaxed);
            self.last_kib.store(kib, Ordering::Relaxed);
        }
        let samples = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        RssSummary {
            pid,
            peak_kib: self.peak_kib.load(Ordering::Relaxed),
            end_kib: self.last_kib.load(Ordering::Relaxed),
            samples_kib: samples,
        }
    }
}

/// VmRSS of `pid` in KiB, from /proc/<pid>/status.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
