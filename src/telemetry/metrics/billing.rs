//! Billing: its bulkhead, completer and reconciliation, and the payment webhooks this instance
//! could not apply.

use prometheus_client::registry::Registry;

use super::instruments::{Counter, Gauge, counter, counters_by, gauge};
use crate::domain::FindingKind;

/// What billing counts: its bulkhead, its completer and reconciliation.
#[derive(Debug)]
pub struct BillingCounters {
    /// Charges and refunds refused at once because the provider's bulkhead was full.
    pub provider_busy: Counter,
    /// Attempts the completer made on pending charges and refunds.
    pub completer_attempts: Counter,
    /// Charges and refunds the completer marked for an operator's attention.
    pub marked_for_attention: Counter,
    /// Pending charges and refunds marked for attention, as the completer last counted them.
    pub needing_attention: Gauge,
    /// Reconciliation runs that completed, and that failed (the provider or the database gave
    /// up mid-run).
    pub reconciliation_runs_completed: Counter,
    pub reconciliation_runs_failed: Counter,
    /// Reconciliation findings recorded, by kind (in `FindingKind::ALL`'s order).
    reconciliation_findings: [Counter; FindingKind::ALL.len()],
}

impl BillingCounters {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let [provider_busy] = counters_by(
            registry,
            "supportdesk_provider_bulkhead_refusals",
            "Requests refused at once (PROVIDER_BUSY) because this instance had as many calls in flight to the provider as it allows",
            "provider",
            ["payments"],
        );
        let [reconciliation_runs_completed, reconciliation_runs_failed] = counters_by(
            registry,
            "supportdesk_billing_reconciliation_runs",
            "Reconciliation runs against the provider's ledger, by outcome",
            "outcome",
            ["completed", "failed"],
        );
        Self {
            provider_busy,
            completer_attempts: counter(
                registry,
                "supportdesk_billing_completer_attempts",
                "Attempts the billing completer made to settle pending charges and refunds",
            ),
            marked_for_attention: counter(
                registry,
                "supportdesk_billing_marked_for_attention",
                "Pending charges and refunds the completer could not settle in time and marked for an operator",
            ),
            needing_attention: gauge(
                registry,
                "supportdesk_billing_needing_attention",
                "Pending charges and refunds marked for an operator's attention, as the completer last counted them",
            ),
            reconciliation_runs_completed,
            reconciliation_runs_failed,
            reconciliation_findings: counters_by(
                registry,
                "supportdesk_billing_reconciliation_findings",
                "Differences reconciliation found between the service and the provider's ledger, by kind (repaired or reported)",
                "kind",
                FindingKind::ALL.map(FindingKind::as_str),
            ),
        }
    }

    /// The counter of findings of `kind`.
    pub fn reconciliation_finding(&self, kind: FindingKind) -> &Counter {
        let index = FindingKind::ALL
            .iter()
            .position(|known| *known == kind)
            .unwrap_or_default();
        &self.reconciliation_findings[index]
    }
}

/// What this instance's webhook workers did with events they could not apply.
#[derive(Debug)]
pub struct WebhookCounters {
    /// Events quarantined: their fields named charges that disagree (docs/webhooks.md).
    pub quarantined: Counter,
}

impl WebhookCounters {
    pub(super) fn register(registry: &mut Registry) -> Self {
        Self {
            quarantined: counter(
                registry,
                "supportdesk_webhook_events_quarantined",
                "Webhook events applied to no charge and filed under no account because their fields named charges that disagree",
            ),
        }
    }
}
