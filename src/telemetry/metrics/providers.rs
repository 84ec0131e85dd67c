//! Each outside provider's circuit breaker state and the time of each call to it.

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge as PromGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::instruments::{Gauge, Timing, TwoLabels};

/// The state of each outside provider's circuit breaker (`provider`: `payments`, `email`,
/// `storage`), read when `/metrics` is scraped: 1 for the current state, 0 for the others; and
/// the latency of each call to the provider, by how it ended. A breaker reports itself here
/// (`crate::resilience::breaker::CircuitBreaker::report_to`): this module knows states and
/// outcomes only by their labels.
pub struct BreakerGauges {
    states: Family<TwoLabels, PromGauge<u64, AtomicU64>>,
    latency: Family<TwoLabels, Histogram, fn() -> Histogram>,
    tracked: Mutex<Vec<TrackedBreaker>>,
}

/// How a tracked breaker's current state is read: the label of the state it is in now.
pub(super) type CurrentState = Box<dyn Fn() -> &'static str + Send + Sync>;

/// One breaker's state series, by state label, and how to read its state.
struct TrackedBreaker {
    series: Vec<(&'static str, Gauge)>,
    current: CurrentState,
}

impl std::fmt::Debug for BreakerGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerGauges").finish_non_exhaustive()
    }
}

/// A provider call's upper bounds: 5 ms doubling to about 41 s (14 buckets and +Inf), past the
/// longest provider timeout.
fn provider_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl BreakerGauges {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let gauges = Self {
            states: Family::default(),
            latency: Family::new_with_constructor(provider_histogram),
            tracked: Mutex::default(),
        };
        registry.register(
            "supportdesk_provider_breaker_state",
            "The circuit breaker of each outside provider: 1 for its current state (closed, open, half_open), 0 for the others.",
            gauges.states.clone(),
        );
        registry.register_with_unit(
            "supportdesk_provider_call_duration",
            "Time of each call (each attempt) to an outside provider, by provider and outcome (ok, refused, failed, no_answer)",
            prometheus_client::registry::Unit::Seconds,
            gauges.latency.clone(),
        );
        gauges
    }

    /// The histogram of `provider`'s calls that ended with `outcome` (exported from now on,
    /// empty).
    pub fn call_timing(&self, provider: &'static str, outcome: &'static str) -> Timing {
        Timing(
            self.latency
                .get_or_create_owned(&[("provider", provider), ("outcome", outcome)]),
        )
    }

    /// Exports `provider`'s breaker state from now on: one series per label of `states`, the
    /// one `current` names at each scrape set to 1.
    pub fn track_state(
        &self,
        provider: &'static str,
        states: &[&'static str],
        current: CurrentState,
    ) {
        let series = states
            .iter()
            .map(|state| {
                let gauge = Gauge(
                    self.states
                        .get_or_create_owned(&[("provider", provider), ("state", state)]),
                );
                (*state, gauge)
            })
            .collect();
        self.tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(TrackedBreaker { series, current });
        self.refresh();
    }

    /// Reads every tracked breaker's state into its series.
    pub(super) fn refresh(&self) {
        for breaker in self
            .tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let now = (breaker.current)();
            for (state, gauge) in &breaker.series {
                gauge.set(u64::from(*state == now));
            }
        }
    }
}
