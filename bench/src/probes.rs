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

/// CPU time (user + system) of a process and all its descendants, living or waited for, in clock ticks of 1/100 s
/// (Linux's USER_HZ): PostgreSQL's postmaster with its backends, a service, Redis, Envoy.
pub fn cpu_ticks_of_tree(root: u32) -> Option<u64> {
    let mut stats = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((parent, ticks)) = stat_of(pid) {
            stats.push((pid, parent, ticks));
        }
    }
    let mut tree = vec![root];
    let mut total = 0;
    let mut at = 0;
    while at < tree.len() {
        let pid = tree[at];
        at += 1;
        for &(child, parent, ticks) in &stats {
            if child == pid {
                total += ticks;
            }
            if parent == pid && child != pid {
                tree.push(child);
            }
        }
    }
    stats.iter().any(|&(pid, ..)| pid == root).then_some(total)
}

/// CPU ticks of this process (every thread).
pub fn own_cpu_ticks() -> Option<u64> {
    stat_of(std::process::id()).map(|(_, ticks)| ticks)
}

/// (parent pid, CPU ticks of it and its waited-for children) of `pid`, from /proc/<pid>/stat.
fn stat_of(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count from its end.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let parent = fields.get(1)?.parse().ok()?;
    // utime, stime, and cutime, cstime: the children it has waited for (PostgreSQL's backends
    // of connections that closed, such as pgbench's, count towards the postmaster).
    let mut ticks = 0;
    for field in 11..=14 {
        ticks += fields.get(field)?.parse::<u64>().ok()?;
    }
    Some((parent, ticks))
}

/// CPU ticks of the load generator and of named process trees, read at one moment.
#[derive(Clone, Debug)]
pub struct CpuReading(Vec<(String, u64)>);

impl CpuReading {
    pub fn now(trees: &[(String, u32)]) -> Self {
        let mut readings = vec![("loadgen".to_owned(), own_cpu_ticks().unwrap_or(0))];
        for (name, pid) in trees {
            readings.push((name.clone(), cpu_ticks_of_tree(*pid).unwrap_or(0)));
        }
        Self(readings)
    }

    /// Microseconds of CPU per call of each process tree between `before` and `self`; trees
    /// given the same name (the instances of a fleet) add up.
    pub fn per_call_since(&self, before: &Self, calls: u64) -> BTreeMap<String, f64> {
        let mut per_call = BTreeMap::new();
        for ((name, after), (_, before)) in self.0.iter().zip(&before.0) {
            let micros = after.saturating_sub(*before) as f64 * 10_000.0;
            *per_call.entry(name.clone()).or_insert(0.0) += micros / calls.max(1) as f64;
        }
        per_call
    }
}

/// `NAME=PID`, as `--cpu-of` takes it.
pub fn parse_named_pid(text: &str) -> Result<(String, u32), String> {
    let (name, pid) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=PID"))?;
    let pid = pid
        .parse()
        .map_err(|_| format!("{text:?}: {pid:?} is not a process id"))?;
    Ok((name.to_owned(), pid))
}

#[cfg(test)]
mod tests {
    use super::CpuReading;

    fn reading(ticks: &[(&str, u64)]) -> CpuReading {
        CpuReading(ticks.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect())
    }

    #[test]
    fn trees_named_alike_add_up_per_call() {
        let before = reading(&[
            ("loadgen", 0),
            ("service", 10),
            ("service", 20),
            ("envoy", 5),
        ]);
        let after = reading(&[
            ("loadgen", 1),
            ("service", 30),
            ("service", 60),
            ("envoy", 7),
        ]);
        let per_call = after.per_call_since(&before, 100);
        // 20 + 40 ticks of 10 ms over 100 calls: 6,000 µs a call.
        assert_eq!(per_call["service"], 6_000.0);
        assert_eq!(per_call["envoy"], 200.0);
        assert_eq!(per_call["loadgen"], 100.0);
        assert_eq!(per_call.len(), 3);
    }
}
