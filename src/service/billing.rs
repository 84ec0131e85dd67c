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
//! ([`crate::bulkhead`]), before anything is recorded: over the bound the request is refused at
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

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Page, paginate, rows_to_fetch};
use crate::auth::Caller;
use crate::billing::{
    BillingReference, CreatePayment, CreateRefund, Payment, PaymentProvider, PaymentStatus,
    ProviderError,
};
use crate::bulkhead::BulkheadPlace;
use crate::db::models::comment::actor_columns;
use crate::db::models::send_lease::{self, Leased, SendLease, Unsettled};
use crate::db::models::{
    ChargeListFilter, ChargeRow, NewCharge, NewChargeActivity, NewRefund, RefundRow, StoredCharge,
    StoredRefund, User, charge_dispute,
};
use crate::db::{Limits, PgPool};
use crate::domain::{
    AccountId, Actor, Charge, ChargeEvent, ChargeId, ChargeStatus, ChargeViolation, FailureKind,
    InvalidValue, Money, PageCursor, PageSize, RefundId, RefundStatus, Role, TicketId, UserId,
};
use crate::errors::{AppError, AppResult, PreconditionViolation, Reason, Resource};
use crate::idempotency::{Claimed, Idempotent, Outcome, RecoveryPoint, claiming_limits};
use crate::metrics::Metrics;

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

/// Stripe's documented ceiling of an amount: eight digits in the currency's smallest unit
/// (99,999,999: $999,999.99, ¥99,999,999) for every currency billing supports.
const PROVIDER_MAX_AMOUNT_MINOR: i64 = 99_999_999;

/// A charge to make, as the API parsed it.
#[derive(Clone, Debug)]
pub struct NewChargeRequest {
    pub customer_id: UserId,
    pub ticket_id: Option<TicketId>,
    pub amount: Money,
    /// The provider's payment method id (`pm_card_visa` in test mode).
    pub payment_method: String,
}

/// What the completer does.
#[derive(Clone, Debug)]
pub struct CompleterPolicy {
    /// A pending charge younger than this is left to the request that made it.
    pub min_age: Duration,
    /// How long the provider keeps idempotency keys: a charge older than this is never sent
    /// again (its key may be gone, and a second payment could follow).
    pub provider_key_retention: Duration,
    /// The deadline of each provider call the completer makes.
    pub call_timeout: Duration,
    /// At most this many charges and this many refunds per run.
    pub batch: usize,
    /// The first delay before a row the completer could not settle is tried again; it doubles
    /// with each attempt (with jitter) up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A row still unsettled this long after it was created is marked for an operator's
    /// attention (it keeps being tried at `backoff_max`).
    pub attention_after: Duration,
    /// At most this many rows are attempted a second (each attempt is one to three provider
    /// requests): the completer's share of the provider, whatever is pending.
    pub attempts_per_second: u32,
}

impl Default for CompleterPolicy {
    fn default() -> Self {
        Self {
            min_age: Duration::from_secs(5),
            provider_key_retention: Duration::from_secs(24 * 60 * 60),
            call_timeout: Duration::from_secs(10),
            batch: 100,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(10 * 60),
            attention_after: Duration::from_secs(60 * 60),
            attempts_per_second: 10,
        }
    }
}

impl CompleterPolicy {
    /// When a row that failed its `attempts`-th attempt is due again: exponential, capped, with
    /// "equal jitter" (half fixed, half random), so rows that failed together spread out and
    /// none comes back at once.
    fn retry_in(&self, attempts: i32) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let cap = self
            .backoff_base
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.backoff_max);
        let half = cap / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// What one completer run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completed {
    /// Charges settled.
    pub charges: usize,
    /// Refunds settled.
    pub refunds: usize,
    /// Charges and refunds tried and left pending for a later attempt.
    pub postponed: usize,
}

/// Whether a send may go to the provider at once, or must look for the payment first.
#[derive(Clone, Copy, Debug)]
pub(super) enum Resolution {
    /// The request path: send with the derived key (the provider replays a payment it made).
    Send,
    /// The completer: read the payment back by charge id; send only when the provider has none
    /// and its key is still kept.
    LookUpThenSend { retention: Duration },
    /// Reconciliation: read the payment back by charge id and never send; when the provider has
    /// none, the charge is abandoned (it never moved money).
    LookUpOnly,
}

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

/// What the provider said of a refund.
#[derive(Debug)]
enum RefundAnswer {
    Refunded {
        provider_refund_id: String,
    },
    /// Refused or failed at the provider: the refund ends FAILED with `code`, its amount released.
    Refused {
        provider_refund_id: Option<String>,
        code: String,
        refusal: RefundRefusal,
    },
}

/// How a refused refund is answered.
#[derive(Debug)]
enum RefundRefusal {
    /// The charge is disputed at the provider.
    Disputed,
    /// The provider accepted the refund and then failed or canceled it.
    FailedAtProvider,
    /// More is refunded at the provider than the service knew (a refund in its dashboard whose
    /// event has not arrived): the charge is refreshed from the provider, and the answer follows.
    NotEnoughLeft,
    /// Another refusal of the request, answered as the provider put it.
    Provider {
        param: Option<String>,
        message: String,
    },
}

/// The key of a request, with the row it claimed.
type ClaimedKey<'k, 'a> = Option<(&'k Idempotent<'a, StoredCharge>, Uuid)>;

#[derive(Clone)]
pub struct Billing {
    pub(super) pool: PgPool,
    pub(super) provider: Arc<dyn PaymentProvider>,
    pub(super) metrics: Metrics,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl Billing {
    pub fn new(pool: PgPool, provider: Arc<dyn PaymentProvider>) -> Self {
        Self {
            pool,
            provider,
            metrics: Metrics::default(),
        }
    }

    /// Counts into the instance's metrics (a bare [`Billing::new`] counts into its own).
    pub fn counting_into(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    /// Charges a customer of the caller's account. Agents, admins and API keys only; the
    /// customer must be a user of the account, the ticket a ticket of it. The outcome is the
    /// succeeded charge; `Failed` with CARD_DECLINED, PAYMENT_REFUSED or REFUSED_BY_PROVIDER
    /// when the provider declined or refused it (the charge is kept, FAILED); or the error
    /// PAYMENT_PROVIDER_UNAVAILABLE while the outcome is not known (the charge stays pending for
    /// a retry with the same key or for the completer).
    pub async fn create_charge(
        &self,
        caller: &Caller,
        request: NewChargeRequest,
        deadline: Instant,
        idempotent: Option<&Idempotent<'_, StoredCharge>>,
    ) -> AppResult<Outcome<StoredCharge>> {
        caller.require(Role::Agent)?;
        check_within_provider_limits(&request)?;
        let actor = caller.actor();
        let mut place = None;
        let mut connection = crate::db::connection(&self.pool).await?;
        let recorded: AppResult<_> = crate::transaction_on!(
            &mut connection,
            claiming_limits(remaining(deadline)?, idempotent),
            |conn| {
                let key = match claim_for_phase_one(conn, idempotent).await? {
                    Ok(key) => key,
                    Err(known) => return Ok(known),
                };
                // An open breaker or a full bulkhead refuses at once and records nothing (the
                // claim rolls back with this transaction): no pending charge left behind.
                self.ensure_provider_accepts_calls()?;
                place = Some(self.enter_bulkhead()?);
                // A savepoint: a refused request undoes its work but keeps the claim, to store
                // the refusal for retries.
                let inserted: AppResult<_> = crate::in_savepoint!(&mut *conn, |conn| {
                    insert_pending_charge(conn, caller, actor, &request).await
                });
                let inserted = inserted.map(|charge| charge.charge.id.as_uuid());
                close_phase_one(conn, key, CHARGE_CREATED, inserted).await
            }
        );
        let recorded = recorded?;
        drop(connection);
        let (key, resource) = match recorded {
            Recorded::Replay(stored) => return Ok(Outcome::Replay(stored)),
            Recorded::Refused(error) => return Ok(Outcome::Failed(error)),
            Recorded::Resume { key, resource } => (key, resource),
        };
        let charge = self
            .send_charge(
                caller.account_id,
                ChargeId::from_uuid(resource),
                (deadline, place),
                actor,
                key,
            )
            .await?;
        Ok(outcome_of(charge))
    }

    /// Refunds `amount` of a charge (all that is left with `None`). Agents, admins and API keys
    /// only. The amount is reserved on the locked charge before the provider is asked, so
    /// concurrent refunds never add up to more than the charge: those that do not fit are
    /// FAILED_PRECONDITION `REFUND_EXCEEDS_CHARGE`; a disputed charge is `CHARGE_DISPUTED`.
    pub async fn refund_charge(
        &self,
        caller: &Caller,
        charge_id: ChargeId,
        amount: Option<Money>,
        deadline: Instant,
        idempotent: Option<&Idempotent<'_, StoredCharge>>,
    ) -> AppResult<Outcome<StoredCharge>> {
        caller.require(Role::Agent)?;
        let actor = caller.actor();
        let account_id = caller.account_id;
        let mut place = None;
        let mut connection = crate::db::connection(&self.pool).await?;
        let recorded: AppResult<_> = crate::transaction_on!(
            &mut connection,
            claiming_limits(remaining(deadline)?, idempotent),
            |conn| {
                let key = match claim_for_phase_one(conn, idempotent).await? {
                    Ok(key) => key,
                    Err(known) => return Ok(known),
                };
                self.ensure_provider_accepts_calls()?;
                place = Some(self.enter_bulkhead()?);
                let reserved: AppResult<_> = crate::in_savepoint!(&mut *conn, |conn| {
                    reserve_refund(conn, account_id, actor, charge_id, amount).await
                });
                let reserved = reserved.map(|refund| refund.id.as_uuid());
                close_phase_one(conn, key, REFUND_CREATED, reserved).await
            }
        );
        let recorded = recorded?;
        drop(connection);
        let (key, resource) = match recorded {
            Recorded::Replay(stored) => return Ok(Outcome::Replay(stored)),
            Recorded::Refused(error) => return Ok(Outcome::Failed(error)),
            Recorded::Resume { key, resource } => (key, resource),
        };
        self.send_refund(
            account_id,
            RefundId::from_uuid(resource),
            (deadline, place),
            actor,
            key,
        )
        .await
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
    pub async fn get(&self, caller: &Caller, id: ChargeId) -> AppResult<StoredCharge> {
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
        caller: &Caller,
        mut filter: ChargeListFilter,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<StoredCharge>> {
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

    /// Settles charges and refunds left pending for at least `policy.min_age` (a crash between
    /// the phases, an unknown provider outcome, a client that gave up): at most `policy.batch`
    /// of each, the one due longest first, at most `policy.attempts_per_second`. Instances share
    /// the work through send leases taken with `SKIP LOCKED`. One that cannot be settled now
    /// (the provider is down, the payment still processing) is due again after its backoff, and
    /// marked for attention once older than `policy.attention_after`.
    pub async fn complete_pending(&self, policy: &CompleterPolicy) -> AppResult<Completed> {
        let mut completed = Completed::default();
        let pace = Duration::from_secs(1) / policy.attempts_per_second.max(1);
        let mut next_slot = Instant::now();
        for table in [Leased::Charges, Leased::Refunds] {
            let mut attempted = 0;
            while attempted < policy.batch {
                tokio::time::sleep_until(next_slot).await;
                next_slot = Instant::now() + pace;
                let Some(lease) = self.claim_due(table, policy).await? else {
                    break;
                };
                attempted += 1;
                self.metrics.billing().completer_attempts.increment();
                let deadline = Instant::now() + policy.call_timeout;
                let settled = match table {
                    Leased::Charges => self.complete_charge(lease, deadline, policy).await,
                    Leased::Refunds => self.complete_refund(lease, deadline).await,
                };
                match settled {
                    Ok(()) => match table {
                        Leased::Charges => completed.charges += 1,
                        Leased::Refunds => completed.refunds += 1,
                    },
                    Err(unsettling) => {
                        completed.postponed += 1;
                        tracing::warn!(id = %lease.id, table = ?table, error = %unsettling.detail,
                            "a pending charge or refund could not be settled yet");
                        self.postpone(table, lease, &unsettling.detail, policy)
                            .await?;
                    }
                }
            }
        }
        self.count_needing_attention().await?;
        Ok(completed)
    }

    async fn claim_due(
        &self,
        table: Leased,
        policy: &CompleterPolicy,
    ) -> AppResult<Option<SendLease>> {
        let mut connection = crate::db::connection(&self.pool).await?;
        send_lease::claim_due(
            &mut connection,
            table,
            policy.min_age,
            policy.call_timeout + LEASE_MARGIN,
        )
        .await
    }

    /// Gives a lease the completer could not settle back, due again after its backoff, marked
    /// for attention (with an audit row and a count) once the row is old enough.
    async fn postpone(
        &self,
        table: Leased,
        lease: SendLease,
        detail: &str,
        policy: &CompleterPolicy,
    ) -> AppResult<()> {
        let age = (Utc::now() - lease.created_at).to_std().unwrap_or_default();
        let attention = (age >= policy.attention_after).then(|| {
            format!(
                "unsettled after {} attempts over {} s: {detail}",
                lease.attempts,
                age.as_secs()
            )
        });
        let unsettled = Unsettled {
            retry_in: policy.retry_in(lease.attempts),
            error: detail,
            attention: attention.as_deref(),
        };
        let mut connection = crate::db::connection(&self.pool).await?;
        let marked: AppResult<_> = crate::transaction_on!(
            &mut connection,
            Limits::within(RECORD_BUDGET),
            |conn| {
                let marked = send_lease::release(conn, table, lease, &unsettled).await?;
                if marked {
                    let charge_id = match table {
                        Leased::Charges => lease.id,
                        Leased::Refunds => RefundRow::lock(
                            conn,
                            AccountId::from_uuid(lease.account_id),
                            RefundId::from_uuid(lease.id),
                        )
                        .await?
                        .ok_or_else(|| gone("refund", lease.id))?
                        .charge_id
                        .as_uuid(),
                    };
                    record_on(
                        conn,
                        lease.account_id,
                        charge_id,
                        None,
                        "needs_attention",
                        json!({
                            "subject": match table { Leased::Charges => "charge", Leased::Refunds => "refund" },
                            "id": lease.id.to_string(),
                            "reason": unsettled.attention,
                        }),
                        None,
                    )
                    .await?;
                }
                Ok(marked)
            }
        );
        if marked? {
            self.metrics.billing().marked_for_attention.increment();
        }
        Ok(())
    }

    async fn count_needing_attention(&self) -> AppResult<()> {
        let mut connection = crate::db::connection(&self.pool).await?;
        let count = ChargeRow::count_needing_attention(&mut connection).await?;
        self.metrics.billing().needing_attention.set(count);
        Ok(())
    }

    /// The completer's attempt at a pending charge it holds the lease of.
    async fn complete_charge(
        &self,
        lease: SendLease,
        deadline: Instant,
        policy: &CompleterPolicy,
    ) -> Result<(), Unsettling> {
        let stored = self
            .read_charge(
                AccountId::from_uuid(lease.account_id),
                ChargeId::from_uuid(lease.id),
            )
            .await
            .map_err(unsettling_from)?;
        let _place = self
            .provider
            .bulkhead()
            .enter(deadline)
            .await
            .map_err(|full| Unsettling {
                detail: full.to_string(),
                answer: AppError::ProviderBusy {
                    provider: full.provider,
                    retry_after: full.retry_after,
                },
            })?;
        let event = self
            .resolve_payment(
                &stored,
                deadline,
                Resolution::LookUpThenSend {
                    retention: policy.provider_key_retention,
                },
            )
            .await?;
        self.record_charge(&stored, Some(&event), None, None)
            .await
            .map(drop)
            .map_err(unsettling_from)
    }

    /// The completer's attempt at a pending refund it holds the lease of.
    async fn complete_refund(&self, lease: SendLease, deadline: Instant) -> Result<(), Unsettling> {
        let account_id = AccountId::from_uuid(lease.account_id);
        let (refund, charge) = self
            .read_refund(account_id, RefundId::from_uuid(lease.id))
            .await
            .map_err(unsettling_from)?;
        let _place = self
            .provider
            .bulkhead()
            .enter(deadline)
            .await
            .map_err(|full| Unsettling {
                detail: full.to_string(),
                answer: AppError::ProviderBusy {
                    provider: full.provider,
                    retry_after: full.retry_after,
                },
            })?;
        let answer = self.ask_for_refund(&refund, &charge, deadline).await?;
        self.record_refund(&refund, answer, deadline, None, None)
            .await
            .map(drop)
            .map_err(unsettling_from)
    }

    /// Phases 2 and 3 of a charge on the request path: take its send lease, send it, record
    /// the outcome and the key's answer. A charge already final is only answered; one whose
    /// lease another holds is IDEMPOTENCY_KEY_IN_USE.
    async fn send_charge(
        &self,
        account_id: AccountId,
        charge_id: ChargeId,
        (deadline, place): (Instant, Option<BulkheadPlace>),
        actor: Actor,
        key: ClaimedKey<'_, '_>,
    ) -> AppResult<StoredCharge> {
        let lease_for = remaining(deadline)? + LEASE_MARGIN;
        let (lease, stored) = {
            let mut connection = crate::db::connection(&self.pool).await?;
            let lease = send_lease::claim(
                &mut connection,
                Leased::Charges,
                account_id.as_uuid(),
                charge_id.as_uuid(),
                lease_for,
            )
            .await?;
            let stored = ChargeRow::find(&mut connection, account_id, None, charge_id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::Charge, charge_id))?;
            (lease, stored)
        };
        let Some(lease) = lease else {
            if stored.charge.status == ChargeStatus::Pending {
                return Err(AppError::idempotency_key_in_use());
            }
            // Settled meanwhile (the completer, a retry): answer it, and store the answer.
            return self.record_charge(&stored, None, None, key).await;
        };
        // A request resuming its key takes its place now, after the lease: a retry that finds
        // the charge busy or settled needs none.
        let _place = match place {
            Some(place) => place,
            None => match self.enter_bulkhead() {
                Ok(place) => place,
                Err(busy) => {
                    self.give_back(Leased::Charges, lease, &busy.to_string())
                        .await?;
                    return Err(busy);
                }
            },
        };
        let sent = self
            .resolve_payment(&stored, call_deadline(deadline), Resolution::Send)
            .await;
        match sent {
            Ok(event) => {
                self.record_charge(&stored, Some(&event), Some(actor), key)
                    .await
            }
            Err(unsettling) => {
                self.give_back(Leased::Charges, lease, &unsettling.detail)
                    .await?;
                Err(unsettling.answer)
            }
        }
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

    async fn read_charge(
        &self,
        account_id: AccountId,
        charge_id: ChargeId,
    ) -> AppResult<StoredCharge> {
        let mut connection = crate::db::connection(&self.pool).await?;
        ChargeRow::find(&mut connection, account_id, None, charge_id)
            .await?
            .ok_or_else(|| gone("charge", charge_id.as_uuid()))
    }

    /// Phase 3 of a charge: applies `event` to the charge if it is still pending (someone may
    /// have settled it meanwhile: then it is only answered), with its audit record, and stores
    /// the answer on the request's key.
    async fn record_charge(
        &self,
        sent: &StoredCharge,
        event: Option<&ChargeEvent>,
        actor: Option<Actor>,
        key: ClaimedKey<'_, '_>,
    ) -> AppResult<StoredCharge> {
        let charge = &sent.charge;
        let mut connection = crate::db::connection(&self.pool).await?;
        let limits = Limits::within(RECORD_BUDGET).waiting_for_locks_at_most(RECORD_LOCK_WAIT);
        crate::transaction_on!(&mut connection, limits, |conn| {
            let locked = ChargeRow::lock(conn, charge.account_id, charge.id)
                .await?
                .ok_or_else(|| gone("charge", charge.id.as_uuid()))?;
            let finished = if let (ChargeStatus::Pending, Some(event)) =
                (locked.charge.status, event)
            {
                let decision = locked
                    .charge
                    .apply(event)
                    .map_err(|violation| AppError::internal(anyhow::anyhow!(violation)))?;
                let saved = ChargeRow::save(conn, &decision.after).await?;
                record(
                    conn,
                    &saved.charge,
                    actor,
                    decision.action,
                    json!({"status": {"old": locked.charge.status.as_str(), "new": saved.charge.status.as_str()}}),
                )
                .await?;
                saved
            } else {
                locked
            };
            if let Some((idempotent, id)) = key {
                match answer_for_charge(&finished.charge) {
                    Ok(()) if finished.charge.status == ChargeStatus::Pending => {}
                    Ok(()) => idempotent.succeeded(conn, id, &finished).await?,
                    Err(error) => idempotent.failed(conn, id, &error).await?,
                }
            }
            Ok(finished)
        })
    }

    /// What the provider says of a pending charge, as the event that settles it; provider
    /// trouble settles nothing.
    pub(super) async fn resolve_payment(
        &self,
        stored: &StoredCharge,
        deadline: Instant,
        resolution: Resolution,
    ) -> Result<ChargeEvent, Unsettling> {
        let charge = &stored.charge;
        let reference = reference(charge.id.as_uuid()).map_err(unsettling_from)?;
        if let Resolution::LookUpThenSend { .. } | Resolution::LookUpOnly = resolution {
            let found = self
                .provider
                .find_payments_by_charge_id(&reference, deadline)
                .await
                .map_err(Unsettling::from_provider)?;
            if found.len() > 1 {
                tracing::error!(charge_id = %charge.id, payments = found.len(),
                    "the provider holds more than one payment for one charge");
            }
            if let Some(payment) = found.into_iter().next() {
                let payment = self
                    .provider
                    .get_payment(&payment.id, deadline)
                    .await
                    .map_err(Unsettling::from_provider)?;
                return event_for_payment(&payment).map_err(unsettling_from);
            }
            let age = (Utc::now() - stored.created_at)
                .to_std()
                .unwrap_or_default();
            let give_up = match resolution {
                Resolution::LookUpThenSend { retention } => age >= retention,
                Resolution::LookUpOnly => true,
                Resolution::Send => false,
            };
            if give_up {
                // The provider has no payment and may have forgotten the key: sending now could
                // make a second payment if the first is merely late. Nothing was charged.
                return Ok(ChargeEvent::Abandoned {
                    reason: "not_at_provider".to_owned(),
                });
            }
        }
        let payment = CreatePayment::new(
            reference,
            charge.amount,
            charge.customer_id.to_string(),
            charge.payment_method.clone(),
            BTreeMap::from([("account_id".to_owned(), charge.account_id.to_string())]),
        )
        .map_err(|problem| unsettling_from(AppError::internal(anyhow::anyhow!("{problem}"))))?;
        match self.provider.create_payment(&payment, deadline).await {
            Ok(payment) => event_for_payment(&payment).map_err(unsettling_from),
            Err(ProviderError::Declined {
                code,
                decline_code,
                payment_id,
                ..
            }) => Ok(ChargeEvent::Failed {
                provider_payment_id: payment_id,
                code,
                decline_code,
            }),
            Err(ProviderError::InvalidRequest {
                status,
                code,
                param,
                ..
            }) if is_refusal(status) => {
                tracing::info!(charge_id = %charge.id, %code, ?param,
                    "the provider refused the charge");
                Ok(ChargeEvent::Refused {
                    code: refusal_code(code),
                    param,
                })
            }
            Err(error) => Err(Unsettling::from_provider(error)),
        }
    }

    /// Phases 2 and 3 of a refund on the request path, as [`Self::send_charge`].
    async fn send_refund(
        &self,
        account_id: AccountId,
        refund_id: RefundId,
        (deadline, place): (Instant, Option<BulkheadPlace>),
        actor: Actor,
        key: ClaimedKey<'_, '_>,
    ) -> AppResult<Outcome<StoredCharge>> {
        let lease_for = remaining(deadline)? + LEASE_MARGIN;
        let lease = {
            let mut connection = crate::db::connection(&self.pool).await?;
            send_lease::claim(
                &mut connection,
                Leased::Refunds,
                account_id.as_uuid(),
                refund_id.as_uuid(),
                lease_for,
            )
            .await?
        };
        let (refund, charge) = self.read_refund(account_id, refund_id).await?;
        let Some(lease) = lease else {
            if refund.status == RefundStatus::Pending {
                return Err(AppError::idempotency_key_in_use());
            }
            let answer = settled_refund_answer(&refund);
            return self
                .record_refund(&refund, answer, deadline, Some(actor), key)
                .await;
        };
        let _place = match place {
            Some(place) => place,
            None => match self.enter_bulkhead() {
                Ok(place) => place,
                Err(busy) => {
                    self.give_back(Leased::Refunds, lease, &busy.to_string())
                        .await?;
                    return Err(busy);
                }
            },
        };
        match self
            .ask_for_refund(&refund, &charge, call_deadline(deadline))
            .await
        {
            Ok(answer) => {
                self.record_refund(&refund, answer, deadline, Some(actor), key)
                    .await
            }
            Err(unsettling) => {
                self.give_back(Leased::Refunds, lease, &unsettling.detail)
                    .await?;
                Err(unsettling.answer)
            }
        }
    }

    async fn read_refund(
        &self,
        account_id: AccountId,
        refund_id: RefundId,
    ) -> AppResult<(StoredRefund, StoredCharge)> {
        let mut connection = crate::db::connection(&self.pool).await?;
        let refund = RefundRow::find(&mut connection, account_id, refund_id)
            .await?
            .ok_or_else(|| gone("refund", refund_id.as_uuid()))?;
        let charge = ChargeRow::find(&mut connection, account_id, None, refund.charge_id)
            .await?
            .ok_or_else(|| gone("charge", refund.charge_id.as_uuid()))?;
        Ok((refund, charge))
    }

    /// Sends a pending refund with its derived key; what the provider answered.
    async fn ask_for_refund(
        &self,
        refund: &StoredRefund,
        charge: &StoredCharge,
        deadline: Instant,
    ) -> Result<RefundAnswer, Unsettling> {
        let payment_id = charge.charge.provider_payment_id.clone().ok_or_else(|| {
            unsettling_from(AppError::internal(anyhow::anyhow!(
                "a refunded charge has no payment id"
            )))
        })?;
        let request = CreateRefund::new(
            reference(refund.id.as_uuid()).map_err(unsettling_from)?,
            payment_id,
            Some(refund.amount),
        )
        .map_err(|problem| unsettling_from(AppError::internal(anyhow::anyhow!("{problem}"))))?;
        match self.provider.create_refund(&request, deadline).await {
            Ok(answer) => Ok(match answer.status {
                crate::billing::RefundStatus::Succeeded
                | crate::billing::RefundStatus::Pending
                | crate::billing::RefundStatus::RequiresAction => RefundAnswer::Refunded {
                    provider_refund_id: answer.id,
                },
                crate::billing::RefundStatus::Failed | crate::billing::RefundStatus::Canceled => {
                    RefundAnswer::Refused {
                        provider_refund_id: Some(answer.id),
                        code: "refund_failed".to_owned(),
                        refusal: RefundRefusal::FailedAtProvider,
                    }
                }
            }),
            Err(ProviderError::InvalidRequest {
                status,
                code,
                param,
                message,
            }) if is_refusal(status) => {
                let refusal = match code.as_str() {
                    "charge_disputed" => RefundRefusal::Disputed,
                    "charge_already_refunded" | "amount_too_large" => RefundRefusal::NotEnoughLeft,
                    _ => RefundRefusal::Provider { param, message },
                };
                Ok(RefundAnswer::Refused {
                    provider_refund_id: None,
                    code: refusal_code(code),
                    refusal,
                })
            }
            Err(ProviderError::Declined { code, message, .. }) => Ok(RefundAnswer::Refused {
                provider_refund_id: None,
                code: code.clone(),
                refusal: RefundRefusal::Provider {
                    param: None,
                    message,
                },
            }),
            Err(error) => Err(Unsettling::from_provider(error)),
        }
    }

    /// Phase 3 of a refund: records the provider's answer over the refund if it is still
    /// pending (a refused one releases its amount on the charge), refreshes the charge from the
    /// provider when the provider knows of refunds the service does not, and stores the
    /// request's answer on its key.
    async fn record_refund(
        &self,
        refund: &StoredRefund,
        answer: RefundAnswer,
        deadline: Instant,
        actor: Option<Actor>,
        key: ClaimedKey<'_, '_>,
    ) -> AppResult<Outcome<StoredCharge>> {
        let refresh = matches!(
            answer,
            RefundAnswer::Refused {
                refusal: RefundRefusal::NotEnoughLeft,
                ..
            }
        );
        let mut connection = crate::db::connection(&self.pool).await?;
        let limits = Limits::within(RECORD_BUDGET).waiting_for_locks_at_most(RECORD_LOCK_WAIT);
        let recorded: AppResult<_> = crate::transaction_on!(&mut connection, limits, |conn| {
            let locked = RefundRow::lock(conn, refund.account_id, refund.id)
                .await?
                .ok_or_else(|| gone("refund", refund.id.as_uuid()))?;
            let charge = if locked.status == RefundStatus::Pending {
                finish_refund(conn, &locked, &answer, actor).await?
            } else {
                ChargeRow::find(conn, refund.account_id, None, refund.charge_id)
                    .await?
                    .ok_or_else(|| gone("charge", refund.charge_id.as_uuid()))?
            };
            let outcome = refund_outcome(&charge, refund, &answer);
            // The answer of a refund that found too little left waits for the refresh below.
            if !refresh && let Some((idempotent, id)) = key {
                match &outcome {
                    Outcome::Done(charge) => idempotent.succeeded(conn, id, charge).await?,
                    Outcome::Failed(error) => idempotent.failed(conn, id, error).await?,
                    Outcome::Replay(_) => {}
                }
            }
            Ok(outcome)
        });
        let recorded = recorded?;
        drop(connection);
        if !refresh {
            return Ok(recorded);
        }
        let refreshed = self.refresh_refunded(refund, deadline).await;
        let mut connection = crate::db::connection(&self.pool).await?;
        crate::transaction_on!(&mut connection, limits, |conn| {
            let charge = match refreshed {
                Some(amount_refunded) => {
                    apply_refunded_at_provider(
                        conn,
                        (refund.account_id, refund.charge_id),
                        amount_refunded,
                        actor,
                        None,
                    )
                    .await?
                    .charge
                }
                None => ChargeRow::find(conn, refund.account_id, None, refund.charge_id)
                    .await?
                    .ok_or_else(|| gone("charge", refund.charge_id.as_uuid()))?,
            };
            let error = refused_for_lack_of_refundable(&charge, refund);
            if let Some((idempotent, id)) = key {
                idempotent.failed(conn, id, &error).await?;
            }
            Ok(Outcome::Failed(error))
        })
    }

    /// What the provider counts as refunded of the refund's charge, read back; `None` when the
    /// provider cannot say now (the answer then follows from what the service knows).
    async fn refresh_refunded(&self, refund: &StoredRefund, deadline: Instant) -> Option<Money> {
        let payment_id = {
            let mut connection = crate::db::connection(&self.pool).await.ok()?;
            ChargeRow::find(&mut connection, refund.account_id, None, refund.charge_id)
                .await
                .ok()??
                .charge
                .provider_payment_id?
        };
        let deadline = deadline.max(Instant::now() + RECORD_BUDGET);
        match self.provider.get_payment(&payment_id, deadline).await {
            Ok(payment) => payment.amount_refunded,
            Err(error) => {
                tracing::warn!(%payment_id, %error, "could not refresh a charge from the provider");
                None
            }
        }
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
                .reach(conn, id, &RecoveryPoint { phase, resource })
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

/// What the provider documents it refuses, checked before anything is recorded or sent.
fn check_within_provider_limits(request: &NewChargeRequest) -> AppResult<()> {
    let amount = request.amount;
    if amount.amount_minor() > PROVIDER_MAX_AMOUNT_MINOR {
        return Err(AppError::invalid_field(
            "charge.amount.amount_minor",
            &InvalidValue::new(format!(
                "must be at most {PROVIDER_MAX_AMOUNT_MINOR} (the payment provider's maximum, {})",
                Money::new(PROVIDER_MAX_AMOUNT_MINOR, amount.currency())
                    .map_or_else(|_| String::new(), |most| most.to_string())
            )),
        ));
    }
    // Stripe takes three-decimal currencies (KWD, BHD, ...) in whole hundredths only.
    if amount.currency().exponent() == 3 && amount.amount_minor() % 10 != 0 {
        return Err(AppError::invalid_field(
            "charge.amount.amount_minor",
            &InvalidValue::new(format!(
                "must be a multiple of 10 in {}: the payment provider takes three-decimal currencies in hundredths",
                amount.currency()
            )),
        ));
    }
    if !is_payment_method_id(&request.payment_method) {
        return Err(AppError::invalid_field(
            "charge.payment_method",
            &InvalidValue::new(
                "must be a payment method id: pm_ followed by letters, digits and underscores",
            ),
        ));
    }
    Ok(())
}

/// The shape of the provider's payment method ids (`pm_card_visa`, `pm_1Nx...`).
fn is_payment_method_id(raw: &str) -> bool {
    raw.strip_prefix("pm_").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 250
            && rest
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
    })
}

/// Checks a new charge against the account and inserts it pending, with its audit record.
async fn insert_pending_charge(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    actor: Actor,
    request: &NewChargeRequest,
) -> AppResult<StoredCharge> {
    let account_id = caller.account_id;
    User::find_in_account(conn, account_id.as_uuid(), request.customer_id.as_uuid())
        .await?
        .ok_or_else(|| AppError::not_found(Resource::User, request.customer_id))?;
    if let Some(ticket_id) = request.ticket_id {
        crate::db::models::TicketRow::find(conn, account_id, None, ticket_id)
            .await?
            .ok_or_else(|| AppError::not_found(Resource::Ticket, ticket_id))?;
    }
    let charge = NewCharge {
        id: ChargeId::generate().as_uuid(),
        account_id: account_id.as_uuid(),
        customer_id: request.customer_id.as_uuid(),
        ticket_id: request.ticket_id.map(|id| id.as_uuid()),
        amount_minor: request.amount.amount_minor(),
        currency: request.amount.currency().code(),
        payment_method: &request.payment_method,
        status: ChargeStatus::Pending.as_str(),
    }
    .insert(conn)
    .await?;
    record(
        conn,
        &charge.charge,
        Some(actor),
        "created",
        json!({"amount_minor": charge.charge.amount.amount_minor(), "currency": charge.charge.amount.currency().code()}),
    )
    .await?;
    Ok(charge)
}

/// Locks the charge, reserves the refund's amount on it (the domain decides whether it fits),
/// and inserts the refund pending, with the audit record. A disputed charge is refused, as the
/// provider would refuse it.
async fn reserve_refund(
    conn: &mut AsyncPgConnection,
    account_id: AccountId,
    actor: Actor,
    charge_id: ChargeId,
    amount: Option<Money>,
) -> AppResult<StoredRefund> {
    let locked = ChargeRow::lock(conn, account_id, charge_id)
        .await?
        .ok_or_else(|| AppError::not_found(Resource::Charge, charge_id))?;
    if !charge_dispute::disputes_of_charge(conn, charge_id.as_uuid())
        .await?
        .is_empty()
    {
        return Err(disputed(&locked.charge));
    }
    let amount = amount.unwrap_or_else(|| locked.charge.refundable());
    let decision = locked
        .charge
        .apply(&ChargeEvent::RefundReserved { amount })
        .map_err(|violation| refusal(&locked.charge, &violation))?;
    let saved = ChargeRow::save(conn, &decision.after).await?;
    let refund = NewRefund {
        id: RefundId::generate().as_uuid(),
        account_id: account_id.as_uuid(),
        charge_id: charge_id.as_uuid(),
        amount_minor: amount.amount_minor(),
        currency: amount.currency().code(),
        status: RefundStatus::Pending.as_str(),
    }
    .insert(conn)
    .await?;
    record(
        conn,
        &saved.charge,
        Some(actor),
        decision.action,
        json!({
            "refund_id": refund.id.to_string(),
            "amount_minor": amount.amount_minor(),
            "status": {"old": locked.charge.status.as_str(), "new": saved.charge.status.as_str()},
        }),
    )
    .await?;
    Ok(refund)
}

/// Records the provider's answer over a locked pending refund: succeeded, or failed with its
/// amount released on the charge. The charge as it is after.
async fn finish_refund(
    conn: &mut AsyncPgConnection,
    refund: &StoredRefund,
    answer: &RefundAnswer,
    actor: Option<Actor>,
) -> AppResult<StoredCharge> {
    let changes =
        json!({"refund_id": refund.id.to_string(), "amount_minor": refund.amount.amount_minor()});
    match answer {
        RefundAnswer::Refunded { provider_refund_id } => {
            RefundRow::finish(
                conn,
                refund.id,
                RefundStatus::Succeeded,
                Some(provider_refund_id),
                None,
            )
            .await?;
            let charge = ChargeRow::find(conn, refund.account_id, None, refund.charge_id)
                .await?
                .ok_or_else(|| gone("charge", refund.charge_id.as_uuid()))?;
            record(conn, &charge.charge, actor, "refunded", changes).await?;
            Ok(charge)
        }
        RefundAnswer::Refused {
            provider_refund_id,
            code,
            ..
        } => {
            RefundRow::finish(
                conn,
                refund.id,
                RefundStatus::Failed,
                provider_refund_id.as_deref(),
                Some(code),
            )
            .await?;
            // The money was not returned: its amount is available to refund again.
            let locked = ChargeRow::lock(conn, refund.account_id, refund.charge_id)
                .await?
                .ok_or_else(|| gone("charge", refund.charge_id.as_uuid()))?;
            let decision = locked
                .charge
                .apply(&ChargeEvent::RefundReleased {
                    amount: refund.amount,
                })
                .map_err(|violation| AppError::internal(anyhow::anyhow!(violation)))?;
            let saved = ChargeRow::save(conn, &decision.after).await?;
            record(conn, &saved.charge, actor, decision.action, changes).await?;
            Ok(saved)
        }
    }
}

/// The answer of a refund the provider answered: the charge when refunded, else the refusal
/// as the client hears it (a refusal for lack of refundable amount is decided after the refresh).
fn refund_outcome(
    charge: &StoredCharge,
    refund: &StoredRefund,
    answer: &RefundAnswer,
) -> Outcome<StoredCharge> {
    let subject = format!("charges/{}", charge.charge.id);
    match answer {
        RefundAnswer::Refunded { .. } => Outcome::Done(charge.clone()),
        RefundAnswer::Refused { code, refusal, .. } => Outcome::Failed(match refusal {
            RefundRefusal::Disputed => disputed(&charge.charge),
            RefundRefusal::FailedAtProvider => AppError::PaymentRefused {
                provider_code: code.clone(),
                provider_param: None,
                field: None,
                subject,
                message: format!(
                    "the payment provider failed the refund of {}; nothing was returned and the amount can be refunded again",
                    refund.amount
                ),
            },
            RefundRefusal::NotEnoughLeft => refused_for_lack_of_refundable(charge, refund),
            RefundRefusal::Provider { param, message } => AppError::PaymentRefused {
                provider_code: code.clone(),
                provider_param: param.clone(),
                field: param
                    .as_deref()
                    .filter(|param| *param == "amount")
                    .map(|_| "amount.amount_minor".to_owned()),
                subject,
                message: message.clone(),
            },
        }),
    }
}

/// What a refund already settled answers to a retry that finds it so (its key's answer was
/// not stored: the completer settled it).
fn settled_refund_answer(refund: &StoredRefund) -> RefundAnswer {
    match (refund.status, refund.failure_code.as_deref()) {
        (RefundStatus::Succeeded | RefundStatus::Pending, _) => RefundAnswer::Refunded {
            provider_refund_id: refund.provider_refund_id.clone().unwrap_or_default(),
        },
        (RefundStatus::Failed, code) => {
            let code = code.unwrap_or("refund_failed").to_owned();
            let refusal = match code.as_str() {
                "charge_disputed" => RefundRefusal::Disputed,
                "refund_failed" => RefundRefusal::FailedAtProvider,
                "charge_already_refunded" | "amount_too_large" => RefundRefusal::NotEnoughLeft,
                _ => RefundRefusal::Provider {
                    param: None,
                    message: format!("the payment provider refused the refund ({code})"),
                },
            };
            RefundAnswer::Refused {
                provider_refund_id: refund.provider_refund_id.clone(),
                code,
                refusal,
            }
        }
    }
}

/// What [`apply_refunded_at_provider`] did: the charge as it now stands, what it counted as
/// refunded before, and the transition's audit action when it changed.
pub(super) struct RefreshedCharge {
    pub(super) charge: StoredCharge,
    pub(super) before: Money,
    pub(super) action: Option<&'static str>,
}

/// Sets the charge's refunded amount to the provider's figure (refunds made in its dashboard, or
/// one that failed there), as a webhook event would, while none of our own refunds of it is in
/// flight; the audit row names the reconciliation run that found it, if one did.
pub(super) async fn apply_refunded_at_provider(
    conn: &mut AsyncPgConnection,
    (account_id, charge_id): (AccountId, ChargeId),
    amount_refunded: Money,
    actor: Option<Actor>,
    reconciliation_run: Option<Uuid>,
) -> AppResult<RefreshedCharge> {
    let locked = ChargeRow::lock(conn, account_id, charge_id)
        .await?
        .ok_or_else(|| gone("charge", charge_id.as_uuid()))?;
    let before = locked.charge.amount_refunded;
    let unchanged = |charge| RefreshedCharge {
        charge,
        before,
        action: None,
    };
    let in_flight = RefundRow::list_for_charge(conn, account_id, charge_id)
        .await?
        .iter()
        .any(|other| other.status == RefundStatus::Pending);
    if in_flight || amount_refunded == before {
        return Ok(unchanged(locked));
    }
    match locked
        .charge
        .apply(&ChargeEvent::RefundedAtProvider { amount_refunded })
    {
        Ok(decision) => {
            let saved = ChargeRow::save(conn, &decision.after).await?;
            let (actor_user_id, actor_api_key_id) =
                actor.map(actor_columns).unwrap_or((None, None));
            NewChargeActivity {
                id: Uuid::now_v7(),
                account_id: account_id.as_uuid(),
                charge_id: charge_id.as_uuid(),
                actor_user_id,
                actor_api_key_id,
                action: decision.action,
                changes: json!({
                    "source": if reconciliation_run.is_some() { "reconciliation" } else { "provider" },
                    "amount_refunded_minor": {"old": before.amount_minor(), "new": amount_refunded.amount_minor()},
                }),
                webhook_event_id: None,
                reconciliation_run_id: reconciliation_run,
            }
            .insert(conn)
            .await?;
            Ok(RefreshedCharge {
                charge: saved,
                before,
                action: Some(decision.action),
            })
        }
        Err(violation) => {
            tracing::warn!(charge_id = %locked.charge.id, %violation,
                "the provider's refunded amount does not fit the charge");
            Ok(unchanged(locked))
        }
    }
}

/// The answer of a refund the provider refused for lack of refundable amount, from the charge
/// as refreshed: what the domain says of the same refund now.
fn refused_for_lack_of_refundable(charge: &StoredCharge, refund: &StoredRefund) -> AppError {
    match charge.charge.apply(&ChargeEvent::RefundReserved {
        amount: refund.amount,
    }) {
        Err(violation) => refusal(&charge.charge, &violation),
        // The provider still counts more refunded than the service can see: say so as it did.
        Ok(_) => AppError::FailedPrecondition {
            reason: Reason::RefundExceedsCharge,
            message: format!(
                "the payment provider has less than {} left to refund of this charge",
                refund.amount
            ),
            violations: vec![PreconditionViolation {
                kind: "CHARGE_REFUNDABLE_AMOUNT".to_owned(),
                subject: format!("charges/{}", charge.charge.id),
                description: "refunded at the payment provider beyond what this service recorded"
                    .to_owned(),
            }],
        },
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
    fn payment_method_ids_have_the_providers_shape() {
        for good in [
            "pm_card_visa",
            "pm_1NxQb2",
            "pm_card_chargeDeclinedExpiredCard",
        ] {
            assert!(is_payment_method_id(good), "{good} refused");
        }
        for bad in [
            "",
            "pm_",
            "card_visa",
            "pm_card visa",
            "pm_card-visa",
            "pm_é",
        ] {
            assert!(!is_payment_method_id(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_completer_backs_off_exponentially_within_its_cap_and_never_to_zero() {
        let policy = CompleterPolicy::default();
        for attempts in 1..40 {
            let cap = policy
                .backoff_base
                .saturating_mul(2u32.saturating_pow(u32::try_from(attempts - 1).unwrap().min(30)))
                .min(policy.backoff_max);
            let delay = policy.retry_in(attempts);
            assert!(
                delay >= cap / 2 && delay <= cap,
                "{attempts}: {delay:?} vs {cap:?}"
            );
        }
    }

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
