//! What the notification workers did, by the notification's kind.

use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::instruments::{OneLabel, TwoLabels};
use crate::domain::NotificationKind;

/// What the notification workers did, by the notification's kind (the queue itself is in
/// [`QueueGauges`](super::QueueGauges)). A kind's series appear with its first event.
#[derive(Debug)]
pub struct NotificationCounters {
    sent: Family<OneLabel, PromCounter>,
    failed: Family<TwoLabels, PromCounter>,
}

impl NotificationCounters {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let counters = Self {
            sent: Family::default(),
            failed: Family::default(),
        };
        registry.register(
            "supportdesk_notifications_sent",
            "Notifications the email provider accepted, by kind.",
            counters.sent.clone(),
        );
        registry.register(
            "supportdesk_notifications_failed",
            "Notification attempts that did not send, by kind and outcome: retry (due again later), permanent (dead: refused for good, or its last attempt).",
            counters.failed.clone(),
        );
        counters
    }

    /// The `kind` label of a stored kind (`unknown` for one this build does not know).
    fn kind_label(kind: &str) -> &'static str {
        NotificationKind::parse(kind).map_or("unknown", NotificationKind::as_str)
    }

    /// Counts a notification of `kind` the provider accepted.
    pub fn sent(&self, kind: &str) {
        self.sent
            .get_or_create(&[("kind", Self::kind_label(kind))])
            .inc();
    }

    /// Counts an attempt of `kind` that did not send: `dead` when the notification is dead now,
    /// else it is due again later.
    pub fn failed(&self, kind: &str, dead: bool) {
        let outcome = if dead { "permanent" } else { "retry" };
        self.failed
            .get_or_create(&[("kind", Self::kind_label(kind)), ("outcome", outcome)])
            .inc();
    }
}
