//! The instruments every family is made of: a counter, a gauge, a gauge of seconds and a
//! latency histogram, each shared by its clones, and the helpers that register them.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge as PromGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A label set of one label, and of two.
pub(crate) type OneLabel = [(&'static str, &'static str); 1];
pub(crate) type TwoLabels = [(&'static str, &'static str); 2];

/// A monotonic count; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Counter(pub(crate) PromCounter);

impl Counter {
    pub fn increment(&self) {
        self.0.inc();
    }

    /// Adds `amount` (bytes, for a count of bytes).
    pub fn add(&self, amount: u64) {
        self.0.inc_by(amount);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Gauge(pub(crate) PromGauge<u64, AtomicU64>);

impl Gauge {
    pub fn set(&self, value: u64) {
        self.0.set(value);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }

    /// Raises the value to `value` when it is higher: a gauge of the most ever seen.
    pub fn raise_to(&self, value: u64) {
        self.0
            .inner()
            .fetch_max(value, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Registers one family of counters labelled `label`, one series per value (all exported from
/// the start, at 0), and returns their counters in the order of `values`.
pub(crate) fn counters_by<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let family = Family::<OneLabel, PromCounter>::default();
    registry.register(name, help, family.clone());
    values.map(|value| Counter(family.get_or_create_owned(&[(label, value)])))
}

/// A value in seconds, with a fraction; clones share it.
#[derive(Clone, Debug, Default)]
pub struct SecondsGauge(pub(crate) PromGauge<f64, AtomicU64>);

impl SecondsGauge {
    pub fn set(&self, seconds: f64) {
        self.0.set(seconds);
    }

    pub fn get(&self) -> f64 {
        self.0.get()
    }
}

/// Registers one unlabelled counter.
pub(crate) fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register(name, help, counter.0.clone());
    counter
}

/// Registers one unlabelled gauge.
pub(crate) fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let gauge = Gauge::default();
    registry.register(name, help, gauge.0.clone());
    gauge
}

/// One latency histogram; clones share it.
#[derive(Clone, Debug)]
pub struct Timing(pub(crate) Histogram);

impl Timing {
    /// Records one event that took `took`.
    pub fn observe(&self, took: Duration) {
        self.0.observe(took.as_secs_f64());
    }
}
