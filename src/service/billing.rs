//! Billing: charging a customer and refunding a charge through the payment provider, exactly
//! once, in phases (Stripe's "atomic phases", as in brandur's `rocket-rides-atomic`):
//!
//! 1. **Record.** One PostgreSQL transaction claims the idempotency key, checks the request and
//!    inserts the charge (or the refund, its amount reserved on the locked charge) as PENDING
//!    with its audit record, and records on the key the recovery point `charge_created:<id>`.
//!    It commits before the provider is called: from here on the charge exists whatever happens.
//! 2. **Send and finish.** A second transaction locks the pending row, calls the provider with an
//!    idempotency key derived from our id (`supportdesk-charge-<charge id>`), and writes the
//!    outcome, its audit record and the key's stored answer before committing. The row lock is
//!    held across the call, so a retry of the same key, another instance and the completer never
//!    send the same charge at once (they find the row locked and back off); a crash during the
//!    call rolls back to "pending, recovery point `charge_created`".
//!
//! A retry of the same client key that finds the charge pending resumes at phase 2 with the same
//! provider key, so the provider executes the payment at most once; one that finds it final
//! answers from the charge and stores that answer on the key. An unknown provider outcome leaves
//! the charge pending and answers UNAVAILABLE with RetryInfo. [`Billing::complete_pending`]
//! (run periodically) finishes charges and refunds left pending: it reads the payment back by our
//! charge id and, only when the provider has none and the charge is younger than the provider
//! keeps keys, sends it again with the same key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Page, paginate, rows_to_fetch};
use crate::auth::Caller;
use crate::billing::{
    BillingReference, CreatePayment, CreateRefund, Payment, PaymentProvider, PaymentStatus,
    ProviderError,
};
use crate::db::models::comment::actor_columns;
use crate::db::models::{
    ChargeListFilter, ChargeRow, NewCharge, NewChargeActivity, NewRefund, RefundRow, StoredCharge,
    StoredRefund, User,
};
use crate::db::{Limits, PgPool};
use crate::domain::{
    Actor, Charge, ChargeEvent, ChargeId, ChargeStatus, ChargeViolation, InvalidValue, Money,
    PageCursor, PageSize, RefundId, RefundStatus, Role, TicketId, UserId,
};
use crate::errors::{AppError, AppResult, PreconditionViolation, Reason, Resource};
use crate::idempotency::{Claimed, Idempotent, Outcome, RecoveryPoint, claiming_limits};

/// The recovery point of a CreateCharge whose charge is committed, pending.
pub const CHARGE_CREATED: &str = "charge_created";
/// The recovery point of a RefundCharge whose refund is committed, pending.
pub const REFUND_CREATED: &str = "refund_created";
/// The phases CreateCharge's key may stop at.
pub const CHARGE_PHASES: &[&str] = &[CHARGE_CREATED];
/// The phases RefundCharge's key may stop at.
pub const REFUND_PHASES: &[&str] = &[REFUND_CREATED];

/// How long a retry waits for a row another request holds while it talks to the provider,
/// before answering ABORTED (`IDEMPOTENCY_KEY_IN_USE`, retry shortly).
const ROW_WAIT: Duration = Duration::from_millis(100);

/// How long a client should wait before retrying a charge whose provider outcome is unknown.
const UNKNOWN_OUTCOME_RETRY: Duration = Duration::from_secs(1);

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
}

impl Default for CompleterPolicy {
    fn default() -> Self {
        Self {
            min_age: Duration::from_secs(5),
            provider_key_retention: Duration::from_secs(24 * 60 * 60),
            call_timeout: Duration::from_secs(10),
            batch: 100,
        }
    }
}

/// What one completer run finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completed {
    pub charges: usize,
    pub refunds: usize,
}

/// Whether phase 2 may send a payment the provider has not seen, or must look for it first.
#[derive(Clone, Copy, Debug)]
enum Resolution {
    /// The request path: send with the derived key (the provider replays a payment it made).
    Send,
    /// The completer: read the payment back by charge id; send only when the provider has none
    /// and its key is still kept.
    LookUpThenSend { retention: Duration },
}

/// The key of a request, with the row it claimed.
type ClaimedKey<'k, 'a> = Option<(&'k Idempotent<'a, StoredCharge>, Uuid)>;

#[derive(Clone)]
pub struct Billing {
    pool: PgPool,
    provider: Arc<dyn PaymentProvider>,
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
        Self { pool, provider }
    }

    /// Charges a customer of the caller's account. Agents, admins and API keys only; the
    /// customer must be a user of the account, the ticket a ticket of it. The outcome is the
    /// succeeded charge, `Failed(CARD_DECLINED)` for a decline (the charge is kept, FAILED), or
    /// the error PAYMENT_PROVIDER_UNAVAILABLE while the outcome is not known (the charge stays
    /// pending for a retry with the same key or for the completer).
    pub async fn create_charge(
        &self,
        caller: &Caller,
        request: NewChargeRequest,
        deadline: Instant,
        idempotent: Option<&Idempotent<'_, StoredCharge>>,
    ) -> AppResult<Outcome<StoredCharge>> {
        caller.require(Role::Agent)?;
        let actor = caller.actor();
        let mut connection = crate::db::connection(&self.pool).await?;
        let recorded: AppResult<_> = crate::transaction_on!(
            &mut connection,
            claiming_limits(remaining(deadline)?, idempotent),
            |conn| {
                let key = match claim_for_phase_one(conn, idempotent).await? {
                    Ok(key) => key,
                    Err(known) => return Ok(known),
                };
                // An open breaker refuses at once and records nothing (the claim rolls back
                // with this transaction): no pending charge for the completer to send later.
                self.ensure_provider_accepts_calls()?;
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
            .finish_charge(
                caller.account_id,
                ChargeId::from_uuid(resource),
                deadline,
                Some(actor),
                key,
            )
            .await?;
        Ok(outcome_of(charge))
    }

    /// Refunds `amount` of a charge (all that is left with `None`). Agents, admins and API keys
    /// only. The amount is reserved on the locked charge before the provider is asked, so
    /// concurrent refunds never add up to more than the charge: those that do not fit are
    /// FAILED_PRECONDITION `REFUND_EXCEEDS_CHARGE`.
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
        let (charge, status) = self
            .finish_refund(
                account_id,
                RefundId::from_uuid(resource),
                deadline,
                Some(actor),
                key,
            )
            .await?;
        match status {
            RefundStatus::Succeeded => Ok(Outcome::Done(charge)),
            RefundStatus::Pending | RefundStatus::Failed => {
                Err(AppError::internal(anyhow::anyhow!(
                    "the provider refused refund {resource} of a charge we hold refundable"
                )))
            }
        }
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

    /// Finishes charges and refunds left pending for at least `policy.min_age` (a crash between
    /// the phases, an unknown provider outcome, a client that gave up): at most `policy.batch` of
    /// each, oldest first. Instances share the work through `FOR UPDATE SKIP LOCKED`. One that
    /// cannot be finished now (the provider is down, the payment still processing) is logged and
    /// passed over until the next run, so it never blocks the ones behind it.
    pub async fn complete_pending(&self, policy: &CompleterPolicy) -> AppResult<Completed> {
        let mut completed = Completed::default();
        let retention = policy.provider_key_retention;
        let mut passed_over = Vec::new();
        while completed.charges + passed_over.len() < policy.batch {
            let deadline = Instant::now() + policy.call_timeout;
            let mut connection = crate::db::connection(&self.pool).await?;
            let mut attempted = None;
            let finished = connection
                .transaction::<_, AppError, _>(async |conn| {
                    let before = Utc::now() - to_chrono(policy.min_age);
                    let Some(stored) =
                        ChargeRow::lock_oldest_pending(conn, before, &passed_over).await?
                    else {
                        return Ok(false);
                    };
                    attempted = Some(stored.charge.id.as_uuid());
                    self.finish_locked_charge(
                        conn,
                        stored,
                        deadline,
                        None,
                        None,
                        Resolution::LookUpThenSend { retention },
                    )
                    .await?;
                    Ok(true)
                })
                .await;
            match (finished, attempted) {
                (Ok(false), _) => break,
                (Ok(true), _) => completed.charges += 1,
                (Err(error), Some(charge_id)) => {
                    tracing::warn!(%charge_id, %error, "a pending charge could not be finished yet");
                    passed_over.push(charge_id);
                }
                (Err(error), None) => return Err(error),
            }
        }
        let mut passed_over = Vec::new();
        while completed.refunds + passed_over.len() < policy.batch {
            let deadline = Instant::now() + policy.call_timeout;
            let mut connection = crate::db::connection(&self.pool).await?;
            let mut attempted = None;
            let finished = connection
                .transaction::<_, AppError, _>(async |conn| {
                    let before = Utc::now() - to_chrono(policy.min_age);
                    let Some(refund) =
                        RefundRow::lock_oldest_pending(conn, before, &passed_over).await?
                    else {
                        return Ok(false);
                    };
                    attempted = Some(refund.id.as_uuid());
                    self.finish_locked_refund(conn, refund, deadline, None, None)
                        .await?;
                    Ok(true)
                })
                .await;
            match (finished, attempted) {
                (Ok(false), _) => break,
                (Ok(true), _) => completed.refunds += 1,
                (Err(error), Some(refund_id)) => {
                    tracing::warn!(%refund_id, %error, "a pending refund could not be finished yet");
                    passed_over.push(refund_id);
                }
                (Err(error), None) => return Err(error),
            }
        }
        Ok(completed)
    }

    /// Phase 2 of a charge the request path resumes: lock it (waiting at most [`ROW_WAIT`] for
    /// another holder), send it if still pending, record the outcome and the key's answer.
    async fn finish_charge(
        &self,
        account_id: crate::domain::AccountId,
        charge_id: ChargeId,
        deadline: Instant,
        actor: Option<Actor>,
        key: ClaimedKey<'_, '_>,
    ) -> AppResult<StoredCharge> {
        let mut connection = crate::db::connection(&self.pool).await?;
        let limits = Limits::within(remaining(deadline)?).waiting_for_locks_at_most(ROW_WAIT);
        crate::transaction_on!(&mut connection, limits, |conn| {
            let stored = ChargeRow::lock(conn, account_id, charge_id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::Charge, charge_id))?;
            set_lock_timeout(conn, Duration::ZERO).await?;
            self.finish_locked_charge(conn, stored, deadline, actor, key, Resolution::Send)
                .await
        })
    }

    /// Sends (or looks up) a locked charge that is still pending and records its outcome; a final
    /// charge is only answered. Either way the answer is stored on the request's key, in this
    /// transaction. Provider trouble leaves the charge pending: the transaction fails, having
    /// written nothing.
    async fn finish_locked_charge(
        &self,
        conn: &mut AsyncPgConnection,
        stored: StoredCharge,
        deadline: Instant,
        actor: Option<Actor>,
        key: ClaimedKey<'_, '_>,
        resolution: Resolution,
    ) -> AppResult<StoredCharge> {
        let finished = if stored.charge.status == ChargeStatus::Pending {
            let event = self.resolve_payment(&stored, deadline, resolution).await?;
            let decision = stored
                .charge
                .apply(&event)
                .map_err(|violation| AppError::internal(anyhow::anyhow!(violation)))?;
            let saved = ChargeRow::save(conn, &decision.after).await?;
            record(
                conn,
                &saved.charge,
                actor,
                decision.action,
                json!({"status": {"old": stored.charge.status.as_str(), "new": saved.charge.status.as_str()}}),
            )
            .await?;
            saved
        } else {
            stored
        };
        if let Some((idempotent, id)) = key {
            match answer_for_charge(&finished.charge) {
                Ok(()) => idempotent.succeeded(conn, id, &finished).await?,
                Err(error) => idempotent.failed(conn, id, &error).await?,
            }
        }
        Ok(finished)
    }

    /// What the provider says of a pending charge, as the event that finishes it.
    async fn resolve_payment(
        &self,
        stored: &StoredCharge,
        deadline: Instant,
        resolution: Resolution,
    ) -> AppResult<ChargeEvent> {
        let charge = &stored.charge;
        let reference = reference(charge.id.as_uuid())?;
        if let Resolution::LookUpThenSend { retention } = resolution {
            let found = self
                .provider
                .find_payments_by_charge_id(&reference, deadline)
                .await
                .map_err(provider_trouble)?;
            if found.len() > 1 {
                tracing::error!(charge_id = %charge.id, payments = found.len(),
                    "the provider holds more than one payment for one charge");
            }
            if let Some(payment) = found.into_iter().next() {
                let payment = self
                    .provider
                    .get_payment(&payment.id, deadline)
                    .await
                    .map_err(provider_trouble)?;
                return event_for_payment(&payment);
            }
            let age = (Utc::now() - stored.created_at)
                .to_std()
                .unwrap_or_default();
            if age >= retention {
                // The provider has no payment and may have forgotten the key: sending now could
                // make a second payment if the first is merely late. Nothing was charged.
                return Ok(ChargeEvent::Failed {
                    provider_payment_id: None,
                    code: "abandoned".to_owned(),
                    decline_code: None,
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
        .map_err(|problem| AppError::internal(anyhow::anyhow!("{problem}")))?;
        match self.provider.create_payment(&payment, deadline).await {
            Ok(payment) => event_for_payment(&payment),
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
            Err(error) => Err(provider_trouble(error)),
        }
    }

    /// Phase 2 of a refund: lock it, ask the provider if still pending, record the answer.
    async fn finish_refund(
        &self,
        account_id: crate::domain::AccountId,
        refund_id: RefundId,
        deadline: Instant,
        actor: Option<Actor>,
        key: ClaimedKey<'_, '_>,
    ) -> AppResult<(StoredCharge, RefundStatus)> {
        let mut connection = crate::db::connection(&self.pool).await?;
        let limits = Limits::within(remaining(deadline)?).waiting_for_locks_at_most(ROW_WAIT);
        crate::transaction_on!(&mut connection, limits, |conn| {
            let refund = RefundRow::lock(conn, account_id, refund_id)
                .await?
                .ok_or_else(|| AppError::internal(anyhow::anyhow!("refund {refund_id} is gone")))?;
            set_lock_timeout(conn, Duration::ZERO).await?;
            self.finish_locked_refund(conn, refund, deadline, actor, key)
                .await
        })
    }

    async fn finish_locked_refund(
        &self,
        conn: &mut AsyncPgConnection,
        refund: StoredRefund,
        deadline: Instant,
        actor: Option<Actor>,
        key: ClaimedKey<'_, '_>,
    ) -> AppResult<(StoredCharge, RefundStatus)> {
        let charge = ChargeRow::find(conn, refund.account_id, None, refund.charge_id)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("the charge of a refund is gone")))?;
        let (finished, status) = if refund.status == RefundStatus::Pending {
            let payment_id = charge.charge.provider_payment_id.clone().ok_or_else(|| {
                AppError::internal(anyhow::anyhow!("a refunded charge has no payment id"))
            })?;
            let request = CreateRefund::new(
                reference(refund.id.as_uuid())?,
                payment_id,
                Some(refund.amount),
            )
            .map_err(|problem| AppError::internal(anyhow::anyhow!("{problem}")))?;
            let (status, provider_id, failure) =
                match self.provider.create_refund(&request, deadline).await {
                    Ok(answer) => match answer.status {
                        crate::billing::RefundStatus::Succeeded
                        | crate::billing::RefundStatus::Pending
                        | crate::billing::RefundStatus::RequiresAction => {
                            (RefundStatus::Succeeded, Some(answer.id), None)
                        }
                        crate::billing::RefundStatus::Failed
                        | crate::billing::RefundStatus::Canceled => (
                            RefundStatus::Failed,
                            Some(answer.id),
                            Some("refund_failed".to_owned()),
                        ),
                    },
                    Err(ProviderError::InvalidRequest { code, .. }) => {
                        (RefundStatus::Failed, None, Some(code))
                    }
                    Err(error) => return Err(provider_trouble(error)),
                };
            RefundRow::finish(
                conn,
                refund.id,
                status,
                provider_id.as_deref(),
                failure.as_deref(),
            )
            .await?;
            if status == RefundStatus::Failed {
                // The money was not returned: its amount is available to refund again.
                let locked = ChargeRow::lock(conn, refund.account_id, refund.charge_id)
                    .await?
                    .ok_or_else(|| AppError::internal(anyhow::anyhow!("the charge is gone")))?;
                let decision = locked
                    .charge
                    .apply(&ChargeEvent::RefundReleased {
                        amount: refund.amount,
                    })
                    .map_err(|violation| AppError::internal(anyhow::anyhow!(violation)))?;
                let saved = ChargeRow::save(conn, &decision.after).await?;
                record(
                    conn,
                    &saved.charge,
                    actor,
                    decision.action,
                    json!({"refund_id": refund.id.to_string(), "amount_minor": refund.amount.amount_minor()}),
                )
                .await?;
                (saved, status)
            } else {
                record(
                    conn,
                    &charge.charge,
                    actor,
                    "refunded",
                    json!({"refund_id": refund.id.to_string(), "amount_minor": refund.amount.amount_minor()}),
                )
                .await?;
                (charge, status)
            }
        } else {
            (charge, refund.status)
        };
        // A refund the provider refused is no answer to store: the request's error is INTERNAL
        // (our checks should have made it impossible), and a retry finds it failed again.
        if let (Some((idempotent, id)), RefundStatus::Succeeded) = (key, status) {
            idempotent.succeeded(conn, id, &finished).await?;
        }
        Ok((finished, status))
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
/// and inserts the refund pending, with the audit record.
async fn reserve_refund(
    conn: &mut AsyncPgConnection,
    account_id: crate::domain::AccountId,
    actor: Actor,
    charge_id: ChargeId,
    amount: Option<Money>,
) -> AppResult<StoredRefund> {
    let locked = ChargeRow::lock(conn, account_id, charge_id)
        .await?
        .ok_or_else(|| AppError::not_found(Resource::Charge, charge_id))?;
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

/// The answer a finished charge gives: itself when paid, CARD_DECLINED when declined.
fn answer_for_charge(charge: &Charge) -> AppResult<()> {
    match charge.status {
        ChargeStatus::Failed => Err(AppError::PaymentDeclined {
            code: charge
                .failure_code
                .clone()
                .unwrap_or_else(|| "card_declined".to_owned()),
            decline_code: charge.decline_code.clone(),
        }),
        ChargeStatus::Pending
        | ChargeStatus::Succeeded
        | ChargeStatus::PartiallyRefunded
        | ChargeStatus::Refunded => Ok(()),
    }
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

/// Provider trouble that leaves the operation pending: UNAVAILABLE with the breaker's or the
/// provider's own retry delay; a contract problem is INTERNAL.
fn provider_trouble(error: ProviderError) -> AppError {
    let unavailable = |retry_after| AppError::PaymentProviderUnavailable {
        detail: error.to_string(),
        retry_after,
    };
    match &error {
        ProviderError::CircuitOpen { retry_after } => unavailable(*retry_after),
        ProviderError::RateLimited { retry_after } => {
            unavailable(retry_after.unwrap_or(UNKNOWN_OUTCOME_RETRY))
        }
        ProviderError::Unavailable { .. }
        | ProviderError::UnknownOutcome { .. }
        | ProviderError::DeadlineExceeded => unavailable(UNKNOWN_OUTCOME_RETRY),
        ProviderError::Declined { .. }
        | ProviderError::InvalidRequest { .. }
        | ProviderError::IdempotencyConflict { .. }
        | ProviderError::UnexpectedResponse { .. } => AppError::internal(error),
    }
}

async fn record(
    conn: &mut AsyncPgConnection,
    charge: &Charge,
    actor: Option<Actor>,
    action: &str,
    changes: serde_json::Value,
) -> AppResult<()> {
    let (actor_user_id, actor_api_key_id) = actor.map(actor_columns).unwrap_or((None, None));
    NewChargeActivity {
        id: Uuid::now_v7(),
        account_id: charge.account_id.as_uuid(),
        charge_id: charge.id.as_uuid(),
        actor_user_id,
        actor_api_key_id,
        action,
        changes,
        webhook_event_id: None,
    }
    .insert(conn)
    .await
}

fn reference(id: Uuid) -> AppResult<BillingReference> {
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

fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

async fn set_lock_timeout(conn: &mut AsyncPgConnection, timeout: Duration) -> AppResult<()> {
    crate::db::set_for_transaction(conn, "lock_timeout", timeout.as_millis().to_string()).await
}
