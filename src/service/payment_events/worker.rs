//! The webhook workers: they take the payment provider's events from the `webhook_events` queue
//! and apply each to its charge, durably and exactly once in effect (docs/webhooks.md).
//!
//! One event at a time, per worker:
//!
//! 1. **Claim** (one statement, committed at once): the due event that waited longest, under a
//!    lease of `WEBHOOK_LEASE_SECS`, its attempt counted (`FOR UPDATE SKIP LOCKED`, so the workers
//!    of every instance share the queue).
//! 2. **Read the provider**, outside any transaction: the payment the event names and its card
//!    charge (`amount_refunded`, `disputed`). The event's own copy of the object is never
//!    applied: whatever order events arrive in, each makes the charge agree with the provider's
//!    state at the time it is processed.
//! 3. **Complete** (one transaction): lock the charge, apply what the provider says through
//!    [`Charge::apply`], write the audit rows with the event's id, and mark the event processed
//!    with its outcome, only while the claim is still this worker's (its attempt number); else
//!    roll back. An event applied twice finds nothing left to change the second time.
//!
//! A failed attempt makes the event due again after a full-jitter exponential backoff, or dead
//! after `WEBHOOK_MAX_ATTEMPTS`; a worker that dies mid-event leaves it to the next worker once its
//! lease expires. The queue is hand-written on diesel-async: the Rust job queues on PostgreSQL
//! (apalis, sqlxmq, graphile-worker's port) are built on sqlx, a second database stack with its
//! own pool, migrations and types beside diesel's, for what is three short statements here.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::configuration::WebhookWorkerSettings;
use crate::db::models::webhook_event::{self, AttemptFailed, ClaimedEvent};
use crate::db::models::{
    ChargeRow, NewChargeActivity, NewChargeDispute, NewWebhookEventQuarantine, RefundRow,
};
use crate::db::{self, Limits, PgPool};
use crate::domain::{ChargeEvent, ChargeStatus, PaymentEvent, QuarantineReason, RefundStatus};
use crate::errors::AppError;
use crate::providers::payments::{Payment, PaymentProvider, ProviderCharge};
use crate::resilience::retry::RetryPolicy;
use crate::resilience::worker_pool::poll_until_stopped;
use crate::telemetry::metrics::Metrics;

/// What processing did, as stored in `webhook_events.outcome`.
pub mod outcome {
    /// The charge changed, or a dispute was recorded: audit rows name the event.
    pub const APPLIED: &str = "applied";
    /// The charge already agreed with the provider (a duplicate, or a later event got there first).
    pub const NO_CHANGE: &str = "no_change";
    /// A type the service does not handle: stored, nothing done.
    pub const IGNORED_TYPE: &str = "ignored_type";
    /// The payment is not one of our charges.
    pub const UNKNOWN_PAYMENT: &str = "unknown_payment";
    /// The object's metadata names one of our charges and the payment another (or none of ours):
    /// applied to none, filed under no account, the reason in `webhook_event_quarantines`.
    pub const QUARANTINED: &str = "quarantined";
}

/// How long the completing transaction waits for the charge's row (CreateCharge's phase 2 holds
/// it across its provider call) before the attempt fails and is retried later.
const CHARGE_LOCK_WAIT: Duration = Duration::from_secs(2);

/// The longest `last_error` kept.
const MAX_ERROR_CHARS: usize = 300;

/// The workers of one instance, sharing its pool, its provider client and one wake-up signal.
#[derive(Clone)]
pub struct PaymentEventWorkers {
    pool: PgPool,
    provider: Option<Arc<dyn PaymentProvider>>,
    settings: WebhookWorkerSettings,
    wake: Arc<Notify>,
    metrics: Metrics,
    /// The domain of the receipts' `Message-ID`s.
    message_domain: Arc<str>,
}

impl std::fmt::Debug for PaymentEventWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentEventWorkers")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Why an attempt ended without marking its event processed.
#[derive(Debug)]
enum Failure {
    /// The attempt failed; the message is stored as `last_error`.
    Attempt(String),
    /// The claim is no longer this worker's: another worker took the event after the lease ran
    /// out. Nothing is written.
    LeaseLost,
    /// The instance is stopping: the event is given back untried.
    Stopping,
}

impl From<diesel::result::Error> for Failure {
    fn from(error: diesel::result::Error) -> Self {
        Self::from(AppError::from(error))
    }
}

impl From<AppError> for Failure {
    fn from(error: AppError) -> Self {
        // An internal error's own message is generic ("internal error"); its cause says what.
        let message = match std::error::Error::source(&error) {
            Some(cause) if matches!(error, AppError::Internal(_)) => cause.to_string(),
            Some(_) | None => error.to_string(),
        };
        Self::Attempt(message)
    }
}

/// What the provider says about the payment an event names.
struct ProviderState {
    payment: Payment,
    charge: Option<ProviderCharge>,
    /// When the reading began, by PostgreSQL's clock: a refund of ours settled since may not
    /// be counted in it.
    read_at: chrono::DateTime<chrono::Utc>,
}

impl PaymentEventWorkers {
    /// Workers over `pool`; `provider` is `None` while billing is unconfigured (handled events
    /// then fail, and end dead, until it is configured and they are re-driven). Each worker waits
    /// on `wake` (the receiving side calls `notify_one` after storing an event) or the poll
    /// interval, whichever comes first.
    pub fn new(
        pool: PgPool,
        provider: Option<Arc<dyn PaymentProvider>>,
        settings: WebhookWorkerSettings,
        wake: Arc<Notify>,
        metrics: Metrics,
    ) -> Self {
        Self {
            pool,
            provider,
            settings,
            wake,
            metrics,
            message_domain: Arc::from(crate::service::billing::UNCONFIGURED_MESSAGE_DOMAIN),
        }
    }

    /// Gives the receipts a webhook's success writes `Message-ID`s on `domain`.
    pub fn with_message_domain(self, domain: &str) -> Self {
        Self {
            message_domain: Arc::from(domain),
            ..self
        }
    }

    /// Runs `WEBHOOK_WORKERS` workers until `stop`, and returns once every one has stopped: a
    /// worker reading the provider gives its event back untried; one completing an event
    /// finishes that transaction first.
    ///
    /// A worker that panics stops the others and the panic goes on to the caller (the job
    /// runner, which restarts them all): a worker never vanishes unseen while the rest run on.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let workers = self.settings.workers;
        crate::resilience::worker_pool::run("webhook worker", workers, stop, |worker, stop| {
            self.clone().run_worker(worker, stop)
        })
        .await
    }

    async fn run_worker(self, worker: u32, stop: CancellationToken) {
        poll_until_stopped(
            &stop,
            self.settings.poll_interval,
            Some(&self.wake),
            || self.work_once(&stop),
            |error| tracing::warn!(worker, %error, "the webhook queue cannot be read; will retry"),
        )
        .await;
    }

    /// Claims one due event and processes it; false when no event was due.
    pub async fn work_once(&self, stop: &CancellationToken) -> Result<bool, AppError> {
        let max_attempts = i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX);
        let lease_millis = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX);
        let claimed = {
            let mut conn = crate::db::connection(&self.pool).await?;
            let buried = webhook_event::bury_abandoned(&mut conn, max_attempts).await?;
            if buried > 0 {
                tracing::warn!(
                    buried,
                    "webhook events whose worker stopped during their last attempt are dead"
                );
            }
            // The lease begins when PostgreSQL runs the claim, after this: the deadline below,
            // counted from here, never ends later than it would from the lease's real start.
            let asked = Instant::now();
            (
                webhook_event::claim_next(&mut conn, lease_millis, max_attempts).await?,
                asked,
            )
        };
        let (Some(event), asked) = claimed else {
            return Ok(false);
        };
        // Provider calls end well within the lease, leaving a quarter of it to complete: past
        // it, another worker may hold the event and this one's work would be rolled back. Reckoned
        // from before the claim, as a claim answered late shortens the time left.
        let deadline = asked + self.settings.lease * 3 / 4;
        let result = self.process(&event, deadline, stop).await;
        let mut conn = crate::db::connection(&self.pool).await?;
        match result {
            Ok(outcome::QUARANTINED) => {
                self.metrics.webhooks().quarantined.increment();
                tracing::error!(event_id = %event.id, event_type = %event.event_type,
                    "a webhook event names charges that disagree: quarantined, applied to none \
                     (webhook_event_quarantines has why)");
            }
            Ok(outcome) => {
                tracing::info!(event_id = %event.id, event_type = %event.event_type,
                    attempt = event.attempts, outcome, "webhook event processed");
            }
            Err(Failure::Stopping) => {
                webhook_event::release(&mut conn, &event.id, event.attempts).await?;
                tracing::info!(event_id = %event.id, "stopping: webhook event given back untried");
            }
            Err(Failure::LeaseLost) => {
                tracing::warn!(event_id = %event.id, attempt = event.attempts,
                    "the lease ran out and another worker took the webhook event: nothing written");
            }
            Err(Failure::Attempt(message)) => {
                let message = truncated(&message);
                let retry_in = self.backoff(event.attempts);
                let state = webhook_event::record_failure(
                    &mut conn,
                    &event.id,
                    event.attempts,
                    &message,
                    i64::try_from(retry_in.as_millis()).unwrap_or(i64::MAX),
                    max_attempts,
                )
                .await?;
                match state {
                    AttemptFailed::Retrying => tracing::warn!(event_id = %event.id,
                        attempt = event.attempts, error = %message, ?retry_in,
                        "a webhook event failed; it will be retried"),
                    AttemptFailed::Dead => tracing::error!(event_id = %event.id,
                        attempt = event.attempts, error = %message,
                        "a webhook event failed its last attempt and is dead"),
                    AttemptFailed::LeaseLost => tracing::warn!(event_id = %event.id,
                        "a webhook event failed after another worker took it: not recorded"),
                }
            }
        }
        Ok(true)
    }

    /// The delay before the attempt after attempt `attempt`: full jitter under a cap that
    /// doubles per attempt from `WEBHOOK_RETRY_BASE_MS` up to `WEBHOOK_RETRY_MAX_MS`.
    fn backoff(&self, attempt: i32) -> Duration {
        RetryPolicy {
            max_attempts: self.settings.max_attempts,
            base_delay: self.settings.retry_base,
            max_delay: self.settings.retry_max,
        }
        .backoff(u32::try_from(attempt).unwrap_or(1))
    }

    async fn process(
        &self,
        event: &ClaimedEvent,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> Result<&'static str, Failure> {
        let parsed = PaymentEvent::parse(&event.event_type, &event.payload)
            .map_err(|problem| Failure::Attempt(problem.to_string()))?;
        let Some(parsed) = parsed else {
            return self.complete(event, None).await;
        };
        let Some(provider) = self.provider.as_deref() else {
            return Err(Failure::Attempt(
                "billing is not configured (PAYMENT_PROVIDER_URL): the payment cannot be read"
                    .to_owned(),
            ));
        };
        let read_at = crate::db::now(&self.pool).await?;
        let state = tokio::select! {
            state = read_provider(provider, &parsed.payment_id, deadline, read_at) => state?,
            () = stop.cancelled() => return Err(Failure::Stopping),
        };
        self.complete(event, Some((&state, &parsed))).await
    }

    /// The completing transaction: applies what the provider said (`None`: an ignored type) and
    /// marks the event processed; a failure rolls everything back.
    async fn complete(
        &self,
        event: &ClaimedEvent,
        provider_said: Option<(&ProviderState, &PaymentEvent)>,
    ) -> Result<&'static str, Failure> {
        let mut conn = crate::db::connection(&self.pool).await?;
        let limits =
            Limits::within(Duration::from_secs(10)).waiting_for_locks_at_most(CHARGE_LOCK_WAIT);
        db::transaction(&mut conn, limits, async |conn| match provider_said {
            None => mark_processed(conn, event, outcome::IGNORED_TYPE, None).await,
            Some((state, named)) => apply(conn, event, state, named, &self.message_domain).await,
        })
        .await
    }
}

/// The payment and its card charge, as the provider holds them now; `read_at` is PostgreSQL's
/// time just before the reading.
async fn read_provider(
    provider: &dyn PaymentProvider,
    payment_id: &str,
    deadline: Instant,
    read_at: chrono::DateTime<chrono::Utc>,
) -> Result<ProviderState, Failure> {
    let provider_failure = |error: crate::providers::payments::ProviderError| {
        Failure::Attempt(format!("reading the payment from the provider: {error}"))
    };
    let payment = provider
        .get_payment(payment_id, deadline)
        .await
        .map_err(provider_failure)?;
    let charge = match &payment.latest_charge {
        Some(charge_id) => Some(
            provider
                .get_charge(charge_id, deadline)
                .await
                .map_err(provider_failure)?,
        ),
        None => None,
    };
    Ok(ProviderState {
        payment,
        charge,
        read_at,
    })
}

/// Makes our charge agree with the provider's state, inside the completing transaction; an event
/// whose metadata names another charge than the payment's is quarantined instead.
async fn apply(
    conn: &mut AsyncPgConnection,
    event: &ClaimedEvent,
    state: &ProviderState,
    named: &PaymentEvent,
    message_domain: &str,
) -> Result<&'static str, Failure> {
    let payment = &state.payment;
    let our_id = payment
        .charge_id
        .as_deref()
        .and_then(|raw| Uuid::parse_str(raw).ok());
    let stored = ChargeRow::lock_for_payment(conn, our_id, &payment.id).await?;
    if let Some(named_charge) = named.named_charge
        && let Some(named_account) = ChargeRow::account_of(conn, named_charge).await?
    {
        let payment_charge = stored.as_ref().map(|stored| {
            (
                stored.charge.account_id.as_uuid(),
                stored.charge.id.as_uuid(),
            )
        });
        if let Some(reason) =
            QuarantineReason::between((named_account, named_charge), payment_charge)
        {
            NewWebhookEventQuarantine {
                event_id: &event.id,
                reason: reason.as_str(),
                named_account_id: named_account,
                named_charge_id: named_charge,
                payment_id: &payment.id,
                payment_account_id: payment_charge.map(|(account, _)| account),
                payment_charge_id: payment_charge.map(|(_, charge)| charge),
            }
            .insert(conn)
            .await?;
            return if webhook_event::mark_quarantined(conn, &event.id, event.attempts).await? {
                Ok(outcome::QUARANTINED)
            } else {
                Err(Failure::LeaseLost)
            };
        }
    }
    let Some(stored) = stored else {
        return mark_processed(conn, event, outcome::UNKNOWN_PAYMENT, None).await;
    };
    let dispute = named.dispute.as_ref();
    let last_changed_at = stored.updated_at;
    let before = stored.charge;
    if before
        .provider_payment_id
        .as_deref()
        .is_some_and(|recorded| recorded != payment.id)
    {
        // Our charge was paid by another payment: this one is not the charge's to apply.
        tracing::error!(event_id = %event.id, charge_id = %before.id, payment_id = %payment.id,
            "a payment names one of our charges that records another payment");
        return mark_processed(conn, event, outcome::UNKNOWN_PAYMENT, None).await;
    }
    let mut charge = before.clone();
    let mut audit: Vec<(&'static str, serde_json::Value)> = Vec::new();

    if charge.status == ChargeStatus::Pending {
        // Still processing at the provider: nothing to learn yet (a later event will tell).
        if let Ok(finished) = crate::service::billing::event_for_payment(payment) {
            let decision = charge.apply(&finished).map_err(refused)?;
            audit.push((
                decision.action,
                json!({"status": {"old": charge.status.as_str(), "new": decision.after.status.as_str()}}),
            ));
            charge = decision.after;
        }
    }

    if let Some(provider_charge) = &state.charge
        && is_paid(charge.status)
        && provider_charge.amount_refunded != charge.amount_refunded
    {
        let in_flight = RefundRow::list_for_charge(conn, charge.account_id, charge.id)
            .await?
            .into_iter()
            .filter(|refund| {
                refund.status == RefundStatus::Pending
                    || crate::service::billing::changed_since(refund, state.read_at)
            })
            .count();
        if last_changed_at >= state.read_at {
            // Another event's worker (or a reconciliation run) may have written a newer figure
            // since this one was read: taking ours would undo it. Read again and compare then.
            return Err(Failure::Attempt(format!(
                "charge {} changed since the provider was read; retried with a new reading",
                charge.id
            )));
        }
        if in_flight > 0 {
            // Our figure counts the refund, the provider's may or may not yet (in flight, or
            // settled after we read the provider): comparing now could count it twice or drop
            // it. Once it settles, and the provider is read again, the figures are comparable.
            return Err(Failure::Attempt(format!(
                "{in_flight} refund(s) of charge {} in flight or settled since the provider was \
                 read; retried once they settle",
                charge.id
            )));
        }
        let decision = charge
            .apply(&ChargeEvent::RefundedAtProvider {
                amount_refunded: provider_charge.amount_refunded,
            })
            .map_err(refused)?;
        audit.push((
            decision.action,
            json!({
                "amount_refunded_minor": {
                    "old": charge.amount_refunded.amount_minor(),
                    "new": decision.after.amount_refunded.amount_minor(),
                },
                "status": {"old": charge.status.as_str(), "new": decision.after.status.as_str()},
                "provider_charge_id": provider_charge.id,
            }),
        ));
        charge = decision.after;
    }

    if let Some(dispute) = dispute {
        if dispute.amount.currency() != charge.amount.currency() {
            return Err(Failure::Attempt(format!(
                "dispute {} is in {}, the charge in {}",
                dispute.id,
                dispute.amount.currency(),
                charge.amount.currency()
            )));
        }
        let recorded = NewChargeDispute {
            id: Uuid::now_v7(),
            account_id: charge.account_id.as_uuid(),
            charge_id: charge.id.as_uuid(),
            provider_dispute_id: &dispute.id,
            amount_minor: dispute.amount.amount_minor(),
            currency: dispute.amount.currency().code(),
            reason: &dispute.reason,
            status: &dispute.status,
            opened_at: dispute.opened_at,
        }
        .insert_once(conn)
        .await?;
        if recorded {
            audit.push((
                "disputed",
                json!({
                    "provider_dispute_id": dispute.id,
                    "amount_minor": dispute.amount.amount_minor(),
                    "reason": dispute.reason,
                }),
            ));
        }
    }

    if charge != before {
        ChargeRow::save(conn, &charge).await?;
        // The receipt, when this event is what tells us the charge was paid: once per charge,
        // even if the completer records the same success.
        crate::service::billing::receipt_if_paid_now(conn, before.status, &charge, message_domain)
            .await?;
    }
    for (action, changes) in audit.iter().cloned() {
        NewChargeActivity {
            id: Uuid::now_v7(),
            account_id: charge.account_id.as_uuid(),
            charge_id: charge.id.as_uuid(),
            actor_user_id: None,
            actor_api_key_id: None,
            action,
            changes,
            webhook_event_id: Some(&event.id),
            reconciliation_run_id: None,
        }
        .insert(conn)
        .await?;
    }
    let done = if audit.is_empty() {
        outcome::NO_CHANGE
    } else {
        outcome::APPLIED
    };
    mark_processed(
        conn,
        event,
        done,
        Some((charge.account_id.as_uuid(), charge.id.as_uuid())),
    )
    .await
}

/// Marks the event processed, or fails with [`Failure::LeaseLost`] (rolling the transaction
/// back) when the claim is no longer this worker's.
async fn mark_processed(
    conn: &mut AsyncPgConnection,
    event: &ClaimedEvent,
    done: &'static str,
    charge: Option<(Uuid, Uuid)>,
) -> Result<&'static str, Failure> {
    if webhook_event::mark_processed(conn, &event.id, event.attempts, done, charge).await? {
        Ok(done)
    } else {
        Err(Failure::LeaseLost)
    }
}

fn is_paid(status: ChargeStatus) -> bool {
    matches!(
        status,
        ChargeStatus::Succeeded | ChargeStatus::PartiallyRefunded | ChargeStatus::Refunded
    )
}

/// The lifecycle refused what the provider says: our state and the provider's disagree in a way
/// no event can settle (a bug, or a hand-edited row). Retried, then dead for an operator.
fn refused(violation: crate::domain::ChargeViolation) -> Failure {
    Failure::Attempt(format!(
        "the charge cannot take the provider's state: {violation}"
    ))
}

fn truncated(message: &str) -> String {
    message.chars().take(MAX_ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_error_is_cut_to_what_the_column_keeps() {
        assert_eq!(
            truncated(&"é".repeat(1000)).chars().count(),
            MAX_ERROR_CHARS
        );
        assert_eq!(truncated("short"), "short");
    }

    #[test]
    fn only_charges_that_took_money_have_refunds_to_compare() {
        assert!(is_paid(ChargeStatus::Refunded));
        assert!(!is_paid(ChargeStatus::Pending));
        assert!(!is_paid(ChargeStatus::Failed));
    }
}
