//! Billing: charging a customer and refunding a charge through the payment provider, exactly
//! once, in phases (Stripe's "atomic phases", as in brandur's `rocket-rides-atomic`), each phase
//! its own transaction and the provider call between them:
//!
//! 1. **Record.** One PostgreSQL transaction claims the idempotency key, checks the request and
//!    inserts the charge (or the refund, its amount reserved on the locked charge) as PENDING
//!    with its audit record, and records on the key the recovery point `charge_created:<id>`.
//!    It commits before the provider is called: from here on the charge exists whatever happens.
//! 2. **Lease.** One committed statement takes the row's *send lease* (`db::models::send_lease`):
//!    whoever holds it is the only one sending this charge, across retries of the key, instances
//!    and the completer; the others answer IDEMPOTENCY_KEY_IN_USE or pass over it. No pooled
//!    connection is held while the provider is called.
//! 3. **Record the outcome.** A second transaction locks the row, applies what the provider said
//!    through [`Charge::apply`], writes the audit record and the key's stored answer, and ends
//!    the lease. Provider trouble gives the lease back instead: the charge stays pending for a
//!    retry with the same key or for the completer.
//!
//! Every provider call of a request first takes a place in the provider's bulkhead
//! ([`crate::resilience::bulkhead`]), before anything is recorded: over the bound the request is refused at
//! once, PROVIDER_BUSY, and a slow provider can hold up only billing. The provider's refusals of a
//! request (an amount over its maximum, an unknown payment method) end the charge FAILED with the
//! provider's code and are answered as the client's errors, never sent again.
//!
//! [`Billing::complete_pending`] (run by the completer) settles what is left pending: the next
//! due first, each row with its own attempts and backoff, at a bounded rate; what it cannot settle
//! within `attention_after` is marked for an operator, never reported as a decline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Page, paginate, rows_to_fetch};
use crate::auth::Caller;
use crate::db::models::comment::actor_columns;
use crate::db::models::notification;
use crate::db::models::send_lease::{self, Leased, SendLease, Unsettled};
use crate::db::models::{
    ChargeListFilter, ChargeRow, NewCharge, NewChargeActivity, NewRefund, RefundRow, StoredCharge,
    StoredRefund, UserRow, charge_dispute,
};
use crate::db::{self, Limits, PgPool};
use crate::domain::{
    AccountId, Actor, Charge, ChargeEvent, ChargeId, ChargeStatus, ChargeViolation, FailureKind,
    InvalidValue, Money, PageCursor, PageSize, RefundId, RefundStatus, Role, TicketId, UserId,
};
use crate::errors::{
    AppError, AppResult, FieldViolations, PreconditionViolation, Reason, Resource,
};
use crate::idempotency::{
    Claimed, Idempotent, KeyedWrite, Outcome, RecoveryPoint, claiming_limits,
};
use crate::providers::payments::{
    BillingReference, CreatePayment, CreateRefund, Payment, PaymentProvider, PaymentStatus,
    ProviderError,
};
use crate::resilience::bulkhead::BulkheadPlace;
use crate::scope::RequestScope;
use crate::telemetry::metrics::Metrics;

mod charges;
mod completer;
pub mod reconciliation;
mod refunds;

pub use charges::NewChargeRequest;
pub use completer::{Completed, CompleterPolicy};
pub use reconciliation::{ReconciliationPolicy, ReconciliationReport};
pub(in crate::service) use refunds::{ProviderRefunded, apply_refunded_at_provider, changed_since};

/// The recovery point of a CreateCharge whose charge is committed, pending.
pub const CHARGE_CREATED: &str = "charge_created";
/// The recovery point of a RefundCharge whose refund is committed, pending.
pub const REFUND_CREATED: &str = "refund_created";
/// The phases CreateCharge's key may stop at.
pub const CHARGE_PHASES: &[&str] = &[CHARGE_CREATED];
/// The phases RefundCharge's key may stop at.
pub const REFUND_PHASES: &[&str] = &[REFUND_CREATED];

/// How much longer a send lease lasts than the provider call it covers: the call never runs
/// past its deadline, so a live lease always means a live holder.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// Kept from the request's deadline for recording the provider's answer: a call that used the
/// whole deadline would leave its outcome to the completer.
const RECORD_RESERVE: Duration = Duration::from_millis(300);

/// How long recording an outcome may take, whatever is left of the request's deadline: the
/// provider has answered, and the answer is worth keeping.
const RECORD_BUDGET: Duration = Duration::from_secs(5);

/// How long recording waits for the row's lock (a refund being reserved, a webhook event being
/// applied: short transactions, never a provider call).
const RECORD_LOCK_WAIT: Duration = Duration::from_secs(2);

/// How long a client should wait before retrying a charge whose provider outcome is unknown.
const UNKNOWN_OUTCOME_RETRY: Duration = Duration::from_secs(1);

/// Whether a send may go to the provider at once, or must look for the payment first.
#[derive(Clone, Copy, Debug)]
pub(super) enum Resolution {
    /// The request path: send with the derived key (the provider replays a payment it made).
    Send,
    /// The completer: read the payment back by charge id; send only when the provider has none
    /// and its key is still kept.
    LookUpThenSend { key_kept: bool },
    /// Reconciliation: read the payment back by charge id and never send. When the provider has
    /// none and no longer keeps its key, the charge is abandoned (it never moved money); while it
    /// keeps the key, "none" may be its search lagging behind a send whose answer was lost, and
    /// a send under the key is still safe, so the charge is left to the completer.
    LookUpOnly { key_kept: bool },
}

/// Why a look-up that found no payment, under a key the provider still keeps, settles nothing.
const NOT_FOUND_YET: &str = "no payment found at the provider yet; its search may lag a send whose \
     answer was lost, and the provider still keeps the charge's key: left to the completer";

/// A provider call that settled nothing: the error the request answers, and the attempt's
/// error as recorded on the row.
#[derive(Debug)]
pub(super) struct Unsettling {
    pub(super) answer: AppError,
    pub(super) detail: String,
}

impl Unsettling {
    fn from_provider(error: ProviderError) -> Self {
        let detail = error.to_string();
        Self {
            answer: provider_trouble(&error),
            detail,
        }
    }
}

/// The `Message-ID` domain while no public base URL is configured (a reserved name).
pub(crate) const UNCONFIGURED_MESSAGE_DOMAIN: &str = "supportdesk.invalid";

/// Whether a charge in `status` has been paid (refunds later do not unpay it).
fn paid(status: ChargeStatus) -> bool {
    match status {
        ChargeStatus::Succeeded | ChargeStatus::PartiallyRefunded | ChargeStatus::Refunded => true,
        ChargeStatus::Pending | ChargeStatus::Failed => false,
    }
}

/// Writes the charge's receipt to the outbox when the change being recorded took it from unpaid
/// to paid, in the transaction that records it. Every path that records a success calls this
/// (the request, the completer, a webhook, reconciliation); the outbox's `dedupe_key` keeps it to
/// one receipt however many of them see the success.
pub(crate) async fn receipt_if_paid_now(
    conn: &mut AsyncPgConnection,
    before: ChargeStatus,
    after: &Charge,
    message_domain: &str,
) -> AppResult<()> {
    if !paid(before) && paid(after.status) {
        notification::payment_notices::charge_receipt(conn, after.id.as_uuid(), message_domain)
            .await?;
    }
    Ok(())
}

/// The key of a request, with the row it claimed.
type ClaimedKey<'k, 'a> = Option<(&'k Idempotent<'a, StoredCharge>, Uuid)>;

#[derive(Clone)]
pub struct Billing {
    pub(super) pool: PgPool,
    pub(super) provider: Arc<dyn PaymentProvider>,
    pub(super) metrics: Metrics,
    /// The domain of receipts' and refund notices' `Message-ID`s.
    pub(super) message_domain: Arc<str>,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl Billing {
    /// How long the provider keeps idempotency keys ([`PaymentProvider::key_retention`]).
    pub fn provider_key_retention(&self) -> Duration {
        self.provider.key_retention()
    }

    pub fn new(pool: PgPool, provider: Arc<dyn PaymentProvider>) -> Self {
        Self {
            pool,
            provider,
            metrics: Metrics::default(),
            message_domain: Arc::from(UNCONFIGURED_MESSAGE_DOMAIN),
        }
    }

    /// Counts into the instance's metrics (a bare [`Billing::new`] counts into its own).
    pub fn counting_into(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    /// Gives receipts and refund notices `Message-ID`s on `domain` (the public base URL's host;
    /// a bare [`Billing::new`] uses `supportdesk.invalid`).
    pub fn with_message_domain(self, domain: &str) -> Self {
        Self {
            message_domain: Arc::from(domain),
            ..self
        }
    }

    /// A place in the provider's bulkhead, or PROVIDER_BUSY at once.
    fn enter_bulkhead(&self) -> AppResult<BulkheadPlace> {
        self.provider.bulkhead().try_enter().map_err(|full| {
            self.metrics.billing().provider_busy.increment();
            AppError::ProviderBusy {
                provider: full.provider,
                retry_after: full.retry_after,
            }
        })
    }

    /// PAYMENT_PROVIDER_UNAVAILABLE, with the breaker's remaining cool-down, while every call to
    /// the provider would be refused unsent.
    fn ensure_provider_accepts_calls(&self) -> AppResult<()> {
        match self.provider.refusing_calls_for() {
            None => Ok(()),
            Some(retry_after) => Err(AppError::PaymentProviderUnavailable {
                detail: "the payment provider's circuit breaker is open".to_owned(),
                retry_after,
            }),
        }
    }

    /// A charge of the caller's account; a customer sees only their own (others are NOT_FOUND,
    /// as if they did not exist).
    pub async fn get(&self, scope: &RequestScope, id: ChargeId) -> AppResult<StoredCharge> {
        let caller = scope.caller()?;
        let mut connection = crate::db::connection(&self.pool).await?;
        ChargeRow::find(
            &mut connection,
            caller.account_id,
            caller.restricted_to_user(),
            id,
        )
        .await?
        .ok_or_else(|| AppError::not_found(Resource::Charge, id))
    }

    /// A page of the account's charges, newest first; a customer's list holds only their own.
    pub async fn list(
        &self,
        scope: &RequestScope,
        mut filter: ChargeListFilter,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<StoredCharge>> {
        let caller = scope.caller()?;
        if let Some(customer) = caller.restricted_to_user() {
            if filter.customer_id.is_some_and(|asked| asked != customer) {
                return Err(AppError::invalid_field(
                    "customer_id",
                    &InvalidValue::new("customers can list only their own charges"),
                ));
            }
            filter.customer_id = Some(customer);
        }
        let mut connection = crate::db::connection(&self.pool).await?;
        let rows = ChargeRow::list_for_account(
            &mut connection,
            caller.account_id,
            &filter,
            after,
            rows_to_fetch(page_size),
        )
        .await?;
        Ok(paginate(rows, page_size, StoredCharge::cursor))
    }

    /// Gives a request's lease back after provider trouble: the row is due for the completer.
    pub(super) async fn give_back(
        &self,
        table: Leased,
        lease: SendLease,
        detail: &str,
    ) -> AppResult<()> {
        let mut connection = crate::db::connection(&self.pool).await?;
        send_lease::release(
            &mut connection,
            table,
            lease,
            &Unsettled {
                retry_in: Duration::ZERO,
                error: detail,
                attention: None,
            },
        )
        .await
        .map(drop)
    }
}

/// What the first phase of a request found or did.
enum Recorded<'k, 'a> {
    /// The key's stored answer.
    Replay(crate::idempotency::StoredResponse),
    /// Refused, and the refusal stored on the key.
    Refused(AppError),
    /// A charge or refund (`resource`) committed pending: phase 2 comes next.
    Resume {
        key: ClaimedKey<'k, 'a>,
        resource: Uuid,
    },
}

/// The start of phase 1: the request's key claimed (`Ok`), or what the key already knows
/// (`Err`): a stored answer to replay, or a pending charge or refund to resume at phase 2.
async fn claim_for_phase_one<'k, 'a>(
    conn: &mut AsyncPgConnection,
    idempotent: Option<&'k Idempotent<'a, StoredCharge>>,
) -> AppResult<Result<ClaimedKey<'k, 'a>, Recorded<'k, 'a>>> {
    let Some(idempotent) = idempotent else {
        return Ok(Ok(None));
    };
    Ok(match idempotent.claim(conn).await? {
        Claimed::Fresh(id) => Ok(Some((idempotent, id))),
        Claimed::Replay(stored) => Err(Recorded::Replay(stored)),
        Claimed::Resume { id, recovery_point } => Err(Recorded::Resume {
            key: Some((idempotent, id)),
            resource: recovery_point.resource,
        }),
    })
}

/// The end of phase 1: the pending `resource` becomes the key's recovery point at `phase`; a
/// final refusal of the work (run in a savepoint) is stored on the key for retries instead.
async fn close_phase_one<'k, 'a>(
    conn: &mut AsyncPgConnection,
    key: ClaimedKey<'k, 'a>,
    phase: &'static str,
    inserted: AppResult<Uuid>,
) -> AppResult<Recorded<'k, 'a>> {
    match (inserted, key) {
        (Ok(resource), Some((idempotent, id))) => {
            idempotent
                .reach_keeping_key(conn, id, &RecoveryPoint { phase, resource })
                .await?;
            Ok(Recorded::Resume { key, resource })
        }
        (Ok(resource), None) => Ok(Recorded::Resume {
            key: None,
            resource,
        }),
        (Err(error), Some((idempotent, id))) if error.is_final() => {
            idempotent.failed(conn, id, &error).await?;
            Ok(Recorded::Refused(error))
        }
        (Err(error), _) => Err(error),
    }
}

fn disputed(charge: &Charge) -> AppError {
    AppError::FailedPrecondition {
        reason: Reason::ChargeDisputed,
        message: "the charge is disputed (a chargeback); it cannot be refunded".to_owned(),
        violations: vec![PreconditionViolation {
            kind: "CHARGE_DISPUTED".to_owned(),
            subject: format!("charges/{}", charge.id),
            description: "a dispute was opened on this charge".to_owned(),
        }],
    }
}

/// Why a refund is refused, as the client hears it.
fn refusal(charge: &Charge, violation: &ChargeViolation) -> AppError {
    let subject = format!("charges/{}", charge.id);
    match violation {
        ChargeViolation::RefundExceedsCharge { .. } => AppError::FailedPrecondition {
            reason: Reason::RefundExceedsCharge,
            message: violation.to_string(),
            violations: vec![PreconditionViolation {
                kind: "CHARGE_REFUNDABLE_AMOUNT".to_owned(),
                subject,
                description: violation.to_string(),
            }],
        },
        ChargeViolation::WrongStatus { .. } => AppError::FailedPrecondition {
            reason: Reason::ChargeNotRefundable,
            message: violation.to_string(),
            violations: vec![PreconditionViolation {
                kind: "CHARGE_STATUS".to_owned(),
                subject,
                description: violation.to_string(),
            }],
        },
        ChargeViolation::CurrencyMismatch { .. } => AppError::invalid_field(
            "amount.currency_code",
            &InvalidValue::new(violation.to_string()),
        ),
    }
}

/// The answer a settled charge gives: itself when paid; when failed, the error of its kind.
fn answer_for_charge(charge: &Charge) -> AppResult<()> {
    if charge.status != ChargeStatus::Failed {
        return Ok(());
    }
    let code = charge
        .failure_code
        .clone()
        .unwrap_or_else(|| "card_declined".to_owned());
    Err(match charge.failure_kind.unwrap_or(FailureKind::Declined) {
        FailureKind::Declined => AppError::PaymentDeclined {
            code,
            decline_code: charge.decline_code.clone(),
        },
        FailureKind::Refused => AppError::PaymentRefused {
            field: charge.failure_param.as_deref().and_then(charge_field),
            provider_param: charge.failure_param.clone(),
            message: format!("the payment provider refused the charge ({code})"),
            provider_code: code,
            subject: format!("charges/{}", charge.id),
        },
        FailureKind::Abandoned => AppError::FailedPrecondition {
            reason: Reason::ChargeAbandoned,
            message: format!(
                "the charge was given up ({code}): the payment provider never charged it; charge again with a new key"
            ),
            violations: vec![PreconditionViolation {
                kind: "CHARGE_STATUS".to_owned(),
                subject: format!("charges/{}", charge.id),
                description: code,
            }],
        },
    })
}

/// The request field a provider's parameter of a payment stands for.
fn charge_field(param: &str) -> Option<String> {
    let field = match param {
        "amount" => "charge.amount.amount_minor",
        "currency" => "charge.amount.currency_code",
        "payment_method" => "charge.payment_method",
        "customer" => "charge.customer_id",
        _ => return None,
    };
    Some(field.to_owned())
}

fn outcome_of(charge: StoredCharge) -> Outcome<StoredCharge> {
    match answer_for_charge(&charge.charge) {
        Ok(()) => Outcome::Done(charge),
        Err(error) => Outcome::Failed(error),
    }
}

/// The event a payment the provider holds stands for; one still in flight is provider trouble
/// for now (the charge stays pending and is read back later).
pub(crate) fn event_for_payment(payment: &Payment) -> AppResult<ChargeEvent> {
    match payment.status {
        PaymentStatus::Succeeded => Ok(ChargeEvent::Succeeded {
            provider_payment_id: payment.id.clone(),
        }),
        // Declined: with the provider's code and decline code when it says them (a payment read
        // back after a crash is recorded as the 402 would have been).
        PaymentStatus::RequiresPaymentMethod | PaymentStatus::Canceled => {
            let failure = payment.last_payment_error.clone();
            Ok(ChargeEvent::Failed {
                provider_payment_id: Some(payment.id.clone()),
                code: failure.as_ref().map_or_else(
                    || "card_declined".to_owned(),
                    |failure| failure.code.clone(),
                ),
                decline_code: failure.and_then(|failure| failure.decline_code),
            })
        }
        PaymentStatus::Processing
        | PaymentStatus::RequiresConfirmation
        | PaymentStatus::RequiresAction => Err(AppError::PaymentProviderUnavailable {
            detail: format!("payment {} is still {:?}", payment.id, payment.status),
            retry_after: UNKNOWN_OUTCOME_RETRY,
        }),
    }
}

/// A provider 4xx that refuses the request itself, as opposed to our credentials (401, 403),
/// a conflict or a rate limit (409, 429): those are the provider's trouble or ours, and leave the
/// operation pending.
fn is_refusal(status: u16) -> bool {
    matches!(status, 0 | 400..=499) && !matches!(status, 401 | 403 | 408 | 409 | 429)
}

fn refusal_code(code: String) -> String {
    if code.is_empty() {
        "invalid_request".to_owned()
    } else {
        code
    }
}

/// Provider trouble that leaves the operation pending: UNAVAILABLE with the breaker's or the
/// provider's own retry delay. Never INTERNAL: whatever the provider answered, the operation is
/// pending and settles later (a contract problem or a reused key is logged as an error).
fn provider_trouble(error: &ProviderError) -> AppError {
    let unavailable = |retry_after| AppError::PaymentProviderUnavailable {
        detail: error.to_string(),
        retry_after,
    };
    match error {
        ProviderError::CircuitOpen { retry_after } => unavailable(*retry_after),
        ProviderError::RateLimited { retry_after } => {
            unavailable(retry_after.unwrap_or(UNKNOWN_OUTCOME_RETRY))
        }
        ProviderError::Unavailable { .. }
        | ProviderError::UnknownOutcome { .. }
        | ProviderError::DeadlineExceeded
        | ProviderError::Declined { .. } => unavailable(UNKNOWN_OUTCOME_RETRY),
        ProviderError::InvalidRequest { .. }
        | ProviderError::IdempotencyConflict { .. }
        | ProviderError::UnexpectedResponse { .. } => {
            tracing::error!(%error, "the payment provider answered what billing cannot settle on");
            unavailable(UNKNOWN_OUTCOME_RETRY)
        }
    }
}

/// A failure of ours (the database, a bug) during an attempt: the request answers it as is.
fn unsettling_from(error: AppError) -> Unsettling {
    Unsettling {
        detail: error.to_string(),
        answer: error,
    }
}

/// A row that must exist (it was just read or leased) is gone: a bug or a hand-edited database.
fn gone(what: &str, id: Uuid) -> AppError {
    AppError::internal(anyhow::anyhow!("{what} {id} is gone"))
}

/// The deadline of a request's provider call: the request's, less the time kept to record the
/// answer.
/// The most by which a key is taken for forgotten before the provider's retention is up.
const KEY_RETENTION_MARGIN: Duration = Duration::from_secs(60 * 60);

/// Whether the provider surely still keeps the key of a row `age` old (PostgreSQL's clock, from
/// its send lease: the clock that wrote `created_at`, not this instance's), `retention` being
/// what the provider states. A margin below it, a twenty-fourth of it and at most an hour (23 h
/// of Stripe's 24): the call runs after the age was read, the provider's clock is not
/// PostgreSQL's, and its retention is a minimum it states, not a promise to the second. Judged
/// kept when it is not, a send makes a second payment; judged forgotten, a look-up goes first.
pub(super) fn key_kept(age: Duration, retention: Duration) -> bool {
    age < retention.saturating_sub((retention / 24).min(KEY_RETENTION_MARGIN))
}

fn call_deadline(deadline: Instant) -> Instant {
    deadline
        .checked_sub(RECORD_RESERVE)
        .filter(|reserved| *reserved > Instant::now())
        .unwrap_or(deadline)
}

async fn record(
    conn: &mut AsyncPgConnection,
    charge: &Charge,
    actor: Option<Actor>,
    action: &str,
    changes: serde_json::Value,
) -> AppResult<()> {
    record_on(
        conn,
        charge.account_id.as_uuid(),
        charge.id.as_uuid(),
        actor,
        action,
        changes,
        None,
    )
    .await
}

pub(super) async fn record_on(
    conn: &mut AsyncPgConnection,
    account_id: Uuid,
    charge_id: Uuid,
    actor: Option<Actor>,
    action: &str,
    changes: serde_json::Value,
    reconciliation_run_id: Option<Uuid>,
) -> AppResult<()> {
    let (actor_user_id, actor_api_key_id) = actor.map(actor_columns).unwrap_or((None, None));
    NewChargeActivity {
        id: Uuid::now_v7(),
        account_id,
        charge_id,
        actor_user_id,
        actor_api_key_id,
        action,
        changes,
        webhook_event_id: None,
        reconciliation_run_id,
    }
    .insert(conn)
    .await
}

pub(super) fn reference(id: Uuid) -> AppResult<BillingReference> {
    BillingReference::parse(&id.to_string())
        .map_err(|problem| AppError::internal(anyhow::anyhow!("{problem}")))
}

fn remaining(deadline: Instant) -> AppResult<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(AppError::DeadlineExceeded)
    } else {
        Ok(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_of_the_request_end_a_charge_and_credentials_or_limits_do_not() {
        for status in [0, 400, 402, 404, 422] {
            assert!(is_refusal(status), "{status}");
        }
        for status in [401, 403, 408, 409, 429, 500, 503] {
            assert!(!is_refusal(status), "{status}");
        }
    }
}
