//! The account events the desk sends (WatchEvents and the webhook deliveries): the ones this
//! instance could not read.

use prometheus_client::registry::Registry;

use super::instruments::{Counter, counters_by};

/// What the event consumers counted.
#[derive(Debug)]
pub struct EventCounters {
    /// Events a WatchEvents stream skipped because this build cannot read them (a type or a
    /// snapshot of another version): once per stream that came to them.
    pub unreadable_watched: Counter,
    /// Delivery attempts recorded failed because this build cannot read their event.
    pub unreadable_delivered: Counter,
}

impl EventCounters {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let [unreadable_watched, unreadable_delivered] = counters_by(
            registry,
            "supportdesk_events_unreadable",
            "Events this build cannot read (a type or snapshot of another version), by consumer: skipped by a WatchEvents stream, or a delivery attempt recorded failed",
            "consumer",
            ["watch", "delivery"],
        );
        Self {
            unreadable_watched,
            unreadable_delivered,
        }
    }
}
