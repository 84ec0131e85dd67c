//! The result of one run: one JSON object on stdout (what `bench/run` tabulates) and one line for
//! people on stderr.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::Recording;
use crate::probes::{CounterDelta, RssSummary};

/// Latency percentiles in microseconds.
#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(histogram: &Histogram<u64>) -> Option<Self> {
        (!histogram.is_empty()).then(|| Self {
            count: histogram.len(),
            mean: histogram.mean(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    /// `closed`, `open` (fixed rate) or `one-at-a-time`.
    pub mode: String,
    pub target: String,
    pub workers: usize,
    pub connections: usize,
    pub rate: Option<f64>,
    pub seconds: f64,
    pub calls: u64,
    pub errors: u64,
    pub rps: f64,
    /// Calls by outcome: gRPC code names, HTTP statuses, or TRANSPORT.
    pub codes: BTreeMap<String, u64>,
    pub latency_us: Option<Percentiles>,
    /// Envoy's x-envoy-upstream-service-time (REST only; whole milliseconds, so coarse).
    pub upstream_time_us: Option<Percentiles>,
    pub counters: Option<CounterDelta>,
    pub rss: Option<RssSummary>,
    /// CPU time per call over the measured window (µs), of the load generator and of each
    /// process tree named with `--cpu-of`: where the machine's two cores went.
    pub cpu_us_per_call: Option<BTreeMap<String, f64>>,
}

impl Report {
    pub fn new(
        scenario: String,
        mode: &str,
        target: &str,
        (workers, connections, rate): (usize, usize, Option<f64>),
        recording: &Recording,
    ) -> Self {
        let calls: u64 = recording.labels.values().sum();
        let errors: u64 = recording
            .labels
            .iter()
            .filter(|(label, _)| !label.is_success())
            .map(|(_, count)| count)
            .sum();
        let seconds = recording.elapsed.as_secs_f64();
        Self {
            scenario,
            mode: mode.to_owned(),
            target: target.to_owned(),
            workers,
            connections,
            rate,
            seconds,
            calls,
            errors,
            rps: if seconds > 0.0 {
                calls as f64 / seconds
            } else {
                0.0
            },
            codes: recording
                .labels
                .iter()
                .map(|(label, count)| (label.name(), *count))
                .collect(),
            latency_us: Percentiles::of(&recording.latency),
            upstream_time_us: Percentiles::of(&recording.server_time),
            counters: None,
            rss: None,
            cpu_us_per_call: None,
        }
    }

    /// Prints the JSON line on stdout and the human line on stderr.
    pub fn emit(&self) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string(self)?);
        let latency = self.latency_us.as_ref().map_or_else(
            || "no calls".to_owned(),
            |l| {
                format!(
                    "p50 {} p99 {} p99.9 {} max {}",
                    ms(l.p50),
                    ms(l.p99),
                    ms(l.p999),
                    ms(l.max)
                )
            },
        );
        let codes: Vec<String> = self
            .codes
            .iter()
            .map(|(code, count)| format!("{code}={count}"))
            .collect();
        let mut line = format!(
            "{} ({}, {} workers): {:.0} req/s over {:.1} s, {} calls; {latency}; {}",
            self.scenario,
            self.mode,
            self.workers,
            self.rps,
            self.seconds,
            self.calls,
            codes.join(" ")
        );
        if let Some(counters) = &self.counters {
            line += &format!(
                "; limiter undecided {} refused {}",
                counters.limiter_undecided, counters.limiter_refused
            );
            if let Some(ratio) = counters.cache_hit_ratio {
                line += &format!("; cache hit ratio {:.1}%", ratio * 100.0);
            }
        }
        if let Some(rss) = &self.rss {
            line += &format!(
                "; RSS peak {} MiB end {} MiB",
                rss.peak_kib / 1024,
                rss.end_kib / 1024
            );
        }
        if let Some(cpu) = &self.cpu_us_per_call {
            let split: Vec<String> = cpu
                .iter()
                .map(|(name, micros)| format!("{name} {micros:.1}"))
                .collect();
            line += &format!("; CPU µs/call: {}", split.join(", "));
        }
        eprintln!("{line}");
        Ok(())
    }
}

/// Microseconds as milliseconds with two decimals.
fn ms(micros: u64) -> String {
    format!("{:.2}ms", micros as f64 / 1000.0)
}
