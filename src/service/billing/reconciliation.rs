//! Reconciliation against the provider's ledger (docs/billing.md, "Reconciliation"): a run
//! compares every charge and refund created in a period with the provider's payments and refunds
//! (its list endpoints), repairs drift through the charge's own transitions ([`Charge::apply`])
//! with an audit row naming the run, reports what it cannot repair, and never moves money: it
//! reads the provider and never creates a payment or a refund.
//!
//! The rules that make a repair happen once, whatever runs beside it:
//!
//! - Rows younger than the settle time are left alone: the request path and the completer are
//!   still working on them.
//! - A pending charge is settled only under its **send lease** (the same lease the request path
//!   and the completer take): while the run holds it nobody sends the charge, and a live lease
//!   held by someone else makes the run pass over the row.
//! - Every repair locks the row in a short transaction, re-checks the state it saw, applies the
//!   transition, and inserts its audit row and its finding in that same transaction: a second
//!   run (or a second instance) finds the row already repaired and records nothing.
//! - No pooled connection is held while the provider is called; the provider's own bulkhead
//!   bounds the run's calls, waiting for a place as the completer does.
//!
//! [`Charge::apply`]: crate::domain::Charge::apply

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    Billing, ProviderRefunded, Resolution, apply_refunded_at_provider, changed_since, key_kept,
    record_on,
};
use crate::db::models::send_lease::{self, Leased};
use crate::db::models::{
    ChargeRow, NewReconciliationFinding, NewReconciliationRun, ReconciliationFindingRow,
    ReconciliationRunRow, RefundRow, RunCounts, StoredCharge, StoredFinding, StoredRefund,
};
use crate::db::{self, Limits};
use crate::domain::{
    ChargeEvent, ChargeStatus, FindingKind, Money, PageCursor, PageSize, RefundStatus, Role,
};
use crate::errors::{AppError, AppResult};
use crate::providers::payments::{LedgerPeriod, Payment, PaymentStatus, Refund};
use crate::scope::RequestScope;
use crate::service::{Page, paginate, rows_to_fetch};

/// How long a repair waits for a row's lock (only short transactions hold it).
const LOCK_WAIT: Duration = Duration::from_secs(2);
/// How long one repair transaction may take.
const REPAIR_BUDGET: Duration = Duration::from_secs(5);
/// Rows read per query.
const BATCH: i64 = 500;
/// The provider's clock and ours may disagree a little: its lists are read from this much before
/// the period, so a payment made just after its charge was inserted is never missed.
const CLOCK_MARGIN: Duration = Duration::from_secs(5 * 60);

/// What a run does.
#[derive(Clone, Debug)]
pub struct ReconciliationPolicy {
    /// Charges and refunds younger than this are left to the request path and the completer.
    pub settle: Duration,
    /// The deadline of each provider call of the run.
    pub call_timeout: Duration,
}

impl Default for ReconciliationPolicy {
    fn default() -> Self {
        Self {
            settle: Duration::from_secs(10 * 60),
            call_timeout: Duration::from_secs(10),
        }
    }
}

/// What a run whose instance shut down before it finished records as its error.
pub const STOPPED_BEFORE_FINISHING: &str =
    "stopped: the instance shut down before the run finished; the next run reads the period again";

/// How far a run's comparison got.
enum Compared {
    Whole,
    /// Stopped between two rows or two pages: what was repaired so far stays repaired.
    Stopped,
}

/// What one run found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconciliationReport {
    pub run_id: Uuid,
    pub charges_checked: usize,
    pub refunds_checked: usize,
    pub payments_listed: usize,
    /// Every finding recorded, with whether it was repaired.
    pub findings: Vec<(FindingKind, bool)>,
}

impl ReconciliationReport {
    /// How many findings of `kind` the run recorded.
    pub fn count(&self, kind: FindingKind) -> usize {
        self.findings
            .iter()
            .filter(|(found, _)| *found == kind)
            .count()
    }
}

/// A difference to record.
struct Finding<'a> {
    kind: FindingKind,
    charge: Option<&'a StoredCharge>,
    refund: Option<&'a StoredRefund>,
    provider_object_id: Option<&'a str>,
    details: Value,
}

/// The provider's side of the period.
struct ProviderLedger {
    payments: Vec<Payment>,
    refunds: Vec<Refund>,
    /// When the reading began: a refund of ours settled since may be missing from it.
    read_at: DateTime<Utc>,
}

impl ProviderLedger {
    fn payment_by_id(&self) -> HashMap<&str, &Payment> {
        self.payments
            .iter()
            .map(|payment| (payment.id.as_str(), payment))
            .collect()
    }
}

impl Billing {
    /// One reconciliation run over the charges and refunds created in `period` (those younger
    /// than `policy.settle` excepted), recorded in `reconciliation_runs` with its findings.
    pub async fn reconcile(
        &self,
        period: LedgerPeriod,
        policy: &ReconciliationPolicy,
    ) -> AppResult<ReconciliationReport> {
        self.reconcile_until(period, policy, &CancellationToken::new())
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("a run nobody stopped stopped")))
    }

    /// How long until a run is due, `interval` after the latest run of any instance began (zero
    /// when overdue); `None` before the first run. An instance restarted more often than
    /// `interval` would otherwise never run one.
    pub async fn next_reconciliation_in(&self, interval: Duration) -> AppResult<Option<Duration>> {
        let mut connection = crate::db::connection(&self.pool).await?;
        ReconciliationRunRow::next_due_in(&mut connection, interval).await
    }

    /// [`Self::reconcile`] until `stop` is cancelled: the run then ends between two rows or two
    /// provider pages, recorded `failed` with [`STOPPED_BEFORE_FINISHING`] (never left
    /// `running`), and answers `None`.
    pub async fn reconcile_until(
        &self,
        period: LedgerPeriod,
        policy: &ReconciliationPolicy,
        stop: &CancellationToken,
    ) -> AppResult<Option<ReconciliationReport>> {
        let run_id = Uuid::now_v7();
        {
            let mut connection = crate::db::connection(&self.pool).await?;
            NewReconciliationRun {
                id: run_id,
                period_start: period.from,
                period_end: period.until,
            }
            .insert(&mut connection)
            .await?;
        }
        let mut report = ReconciliationReport {
            run_id,
            charges_checked: 0,
            refunds_checked: 0,
            payments_listed: 0,
            findings: Vec::new(),
        };
        let outcome = self.compare(period, policy, stop, &mut report).await;
        let counts = RunCounts {
            charges_checked: count(report.charges_checked),
            refunds_checked: count(report.refunds_checked),
            payments_listed: count(report.payments_listed),
            findings: count(report.findings.len()),
            repaired: count(
                report
                    .findings
                    .iter()
                    .filter(|(_, repaired)| *repaired)
                    .count(),
            ),
        };
        let error = match &outcome {
            Ok(Compared::Whole) => None,
            Ok(Compared::Stopped) => Some(STOPPED_BEFORE_FINISHING.to_owned()),
            Err(error) => Some(error.to_string()),
        };
        let mut connection = crate::db::connection(&self.pool).await?;
        ReconciliationRunRow::finish(&mut connection, run_id, counts, error.as_deref()).await?;
        let failed = || {
            self.metrics
                .billing()
                .reconciliation_runs_failed
                .increment();
        };
        match outcome {
            Ok(Compared::Whole) => {
                self.metrics
                    .billing()
                    .reconciliation_runs_completed
                    .increment();
                Ok(Some(report))
            }
            Ok(Compared::Stopped) => {
                failed();
                Ok(None)
            }
            Err(error) => {
                failed();
                Err(error)
            }
        }
    }

    /// The findings of the caller's account, newest first; of one run with `run_id`. Admins
    /// only.
    pub async fn list_findings(
        &self,
        scope: &RequestScope,
        run_id: Option<Uuid>,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<StoredFinding>> {
        let caller = scope.caller()?;
        caller.require(Role::Admin)?;
        let mut connection = crate::db::connection(&self.pool).await?;
        let rows = ReconciliationFindingRow::list_for_account(
            &mut connection,
            caller.account_id,
            run_id,
            after,
            rows_to_fetch(page_size),
        )
        .await?;
        Ok(paginate(rows, page_size, StoredFinding::cursor))
    }

    async fn compare(
        &self,
        period: LedgerPeriod,
        policy: &ReconciliationPolicy,
        stop: &CancellationToken,
        report: &mut ReconciliationReport,
    ) -> AppResult<Compared> {
        // Settled by PostgreSQL's clock, the one that wrote the rows' `created_at`: an instance
        // whose clock ran ahead would compare a charge its request is still making.
        let settled_before = crate::db::now(&self.pool).await? - chrono_of(policy.settle);
        let until = period.until.min(settled_before);
        if until <= period.from {
            return Ok(Compared::Whole);
        }
        let Some(ledger) = self.read_provider(period, policy, stop).await? else {
            return Ok(Compared::Stopped);
        };
        report.payments_listed = ledger.payments.len();
        let by_id = ledger.payment_by_id();
        let mut ours: HashSet<String> = HashSet::new();

        let mut after = None;
        loop {
            let batch = {
                let mut connection = crate::db::connection(&self.pool).await?;
                ChargeRow::list_created_between(&mut connection, period.from, until, after, BATCH)
                    .await?
            };
            let Some(last) = batch.last() else { break };
            after = Some(last.cursor());
            for stored in &batch {
                if stop.is_cancelled() {
                    return Ok(Compared::Stopped);
                }
                report.charges_checked += 1;
                ours.insert(stored.charge.id.to_string());
                self.compare_charge(stored, &ledger, &by_id, policy, report)
                    .await?;
            }
        }

        // Payments carrying a charge id of ours that no charge of ours has.
        for payment in &ledger.payments {
            if stop.is_cancelled() {
                return Ok(Compared::Stopped);
            }
            let Some(charge_id) = payment.charge_id.as_deref() else {
                continue;
            };
            if ours.contains(charge_id) {
                continue;
            }
            let known = match Uuid::parse_str(charge_id) {
                Ok(id) => {
                    let mut connection = crate::db::connection(&self.pool).await?;
                    ChargeRow::exists_anywhere(&mut connection, id).await?
                }
                Err(_) => false,
            };
            if !known {
                self.report(
                    Finding {
                        kind: FindingKind::UnknownPayment,
                        charge: None,
                        refund: None,
                        provider_object_id: Some(&payment.id),
                        details: json!({
                            "provider": {"charge_id": charge_id, "status": format!("{:?}", payment.status),
                                "amount_minor": payment.amount.amount_minor(), "currency": payment.amount.currency().code()},
                        }),
                    },
                    report,
                )
                .await?;
            }
        }

        let provider_refunds: HashMap<&str, &Refund> = ledger
            .refunds
            .iter()
            .filter_map(|refund| refund.refund_id.as_deref().map(|id| (id, refund)))
            .collect();
        let mut after = None;
        loop {
            let batch = {
                let mut connection = crate::db::connection(&self.pool).await?;
                RefundRow::list_created_between(&mut connection, period.from, until, after, BATCH)
                    .await?
            };
            let Some(last) = batch.last() else { break };
            after = Some((last.created_at, last.id.as_uuid()));
            for refund in &batch {
                if stop.is_cancelled() {
                    return Ok(Compared::Stopped);
                }
                report.refunds_checked += 1;
                self.compare_refund(refund, &provider_refunds, ledger.read_at, report)
                    .await?;
            }
        }
        Ok(Compared::Whole)
    }

    /// Every payment and refund the provider made since the period began (later ones included:
    /// a charge of the period may have been sent late), page by page, no connection held;
    /// `None` once `stop` is cancelled.
    async fn read_provider(
        &self,
        period: LedgerPeriod,
        policy: &ReconciliationPolicy,
        stop: &CancellationToken,
    ) -> AppResult<Option<ProviderLedger>> {
        let wide = LedgerPeriod {
            from: period.from - chrono_of(CLOCK_MARGIN),
            until: Utc::now() + chrono_of(CLOCK_MARGIN),
        };
        let mut ledger = ProviderLedger {
            payments: Vec::new(),
            refunds: Vec::new(),
            read_at: crate::db::now(&self.pool).await?,
        };
        let mut cursor: Option<String> = None;
        loop {
            if stop.is_cancelled() {
                return Ok(None);
            }
            let deadline = Instant::now() + policy.call_timeout;
            let _place = self.wait_for_place(deadline).await?;
            let page = self
                .provider
                .list_payments(&wide, cursor.as_deref(), deadline)
                .await
                .map_err(|error| provider_failed("listing payments", &error))?;
            ledger.payments.extend(page.items);
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        loop {
            if stop.is_cancelled() {
                return Ok(None);
            }
            let deadline = Instant::now() + policy.call_timeout;
            let _place = self.wait_for_place(deadline).await?;
            let page = self
                .provider
                .list_refunds(&wide, cursor.as_deref(), deadline)
                .await
                .map_err(|error| provider_failed("listing refunds", &error))?;
            ledger.refunds.extend(page.items);
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        Ok(Some(ledger))
    }

    async fn wait_for_place(
        &self,
        deadline: Instant,
    ) -> AppResult<crate::resilience::bulkhead::BulkheadPlace> {
        self.provider
            .bulkhead()
            .enter(deadline)
            .await
            .map_err(|full| AppError::ProviderBusy {
                provider: full.provider,
                retry_after: full.retry_after,
            })
    }

    async fn compare_charge(
        &self,
        stored: &StoredCharge,
        ledger: &ProviderLedger,
        by_id: &HashMap<&str, &Payment>,
        policy: &ReconciliationPolicy,
        report: &mut ReconciliationReport,
    ) -> AppResult<()> {
        let charge = &stored.charge;
        let charge_id = charge.id.to_string();
        match charge.status {
            ChargeStatus::Pending => self.settle_pending(stored, policy, report).await,
            ChargeStatus::Failed => {
                // Failed here, paid there: money was taken for a charge the service calls failed.
                let paid = ledger.payments.iter().find(|payment| {
                    payment.charge_id.as_deref() == Some(charge_id.as_str())
                        && payment.status == PaymentStatus::Succeeded
                });
                match paid {
                    Some(payment) => {
                        self.report(
                            Finding {
                                kind: FindingKind::PaidAtProvider,
                                charge: Some(stored),
                                refund: None,
                                provider_object_id: Some(&payment.id),
                                details: json!({
                                    "service": {"status": charge.status.as_str()},
                                    "provider": {"status": "succeeded"},
                                }),
                            },
                            report,
                        )
                        .await
                    }
                    None => Ok(()),
                }
            }
            ChargeStatus::Succeeded | ChargeStatus::PartiallyRefunded | ChargeStatus::Refunded => {
                let Some(payment_id) = charge.provider_payment_id.as_deref() else {
                    return Ok(());
                };
                // Not in the list (the provider's clock far from ours, a list that lagged): read
                // it by id before calling it missing.
                let read;
                let payment = match by_id.get(payment_id) {
                    Some(payment) => Some(*payment),
                    None => {
                        read = self.read_payment(payment_id, policy).await?;
                        read.as_ref()
                    }
                };
                let Some(payment) = payment else {
                    return self
                        .report(
                            Finding {
                                kind: FindingKind::UnknownToProvider,
                                charge: Some(stored),
                                refund: None,
                                provider_object_id: Some(payment_id),
                                details: json!({
                                    "service": {"status": charge.status.as_str()},
                                    "provider": null,
                                }),
                            },
                            report,
                        )
                        .await;
                };
                if payment.amount != charge.amount {
                    return self
                        .report(
                            Finding {
                                kind: FindingKind::AmountMismatch,
                                charge: Some(stored),
                                refund: None,
                                provider_object_id: Some(payment_id),
                                details: json!({
                                    "service": money_json(charge.amount),
                                    "provider": money_json(payment.amount),
                                }),
                            },
                            report,
                        )
                        .await;
                }
                if payment.status != PaymentStatus::Succeeded {
                    return self
                        .report(
                            Finding {
                                kind: FindingKind::DeclinedAtProvider,
                                charge: Some(stored),
                                refund: None,
                                provider_object_id: Some(payment_id),
                                details: json!({
                                    "service": {"status": charge.status.as_str()},
                                    "provider": {"status": format!("{:?}", payment.status)},
                                }),
                            },
                            report,
                        )
                        .await;
                }
                match payment.amount_refunded {
                    Some(refunded) if refunded != charge.amount_refunded => {
                        self.repair_refunded(stored, payment, (refunded, ledger.read_at), report)
                            .await
                    }
                    Some(_) | None => Ok(()),
                }
            }
        }
    }

    /// The provider's payment `payment_id`, or `None` when the provider says it has none (404);
    /// any other trouble ends the run (the next one tries again).
    async fn read_payment(
        &self,
        payment_id: &str,
        policy: &ReconciliationPolicy,
    ) -> AppResult<Option<Payment>> {
        let deadline = Instant::now() + policy.call_timeout;
        let _place = self.wait_for_place(deadline).await?;
        match self.provider.get_payment(payment_id, deadline).await {
            Ok(payment) => Ok(Some(payment)),
            Err(crate::providers::payments::ProviderError::InvalidRequest {
                status: 404, ..
            }) => Ok(None),
            Err(error) => Err(provider_failed("reading a payment", &error)),
        }
    }

    /// A pending charge old enough to be settled: under its send lease, the provider is asked
    /// (never sent), and the answer applied through the charge's transition.
    async fn settle_pending(
        &self,
        stored: &StoredCharge,
        policy: &ReconciliationPolicy,
        report: &mut ReconciliationReport,
    ) -> AppResult<()> {
        let charge = &stored.charge;
        let lease = {
            let mut connection = crate::db::connection(&self.pool).await?;
            send_lease::claim(
                &mut connection,
                Leased::Charges,
                charge.account_id.as_uuid(),
                charge.id.as_uuid(),
                policy.call_timeout * 2 + LOCK_WAIT,
            )
            .await?
        };
        let Some(lease) = lease else {
            // Settled meanwhile, or someone is sending it now.
            return Ok(());
        };
        let deadline = Instant::now() + policy.call_timeout;
        let resolved = match self.wait_for_place(deadline).await {
            Ok(_place) => {
                let key_kept = key_kept(lease.age, self.provider_key_retention());
                self.resolve_payment(stored, deadline, Resolution::LookUpOnly { key_kept })
                    .await
            }
            Err(busy) => Err(super::Unsettling {
                detail: busy.to_string(),
                answer: busy,
            }),
        };
        let event = match resolved {
            Ok(event) => event,
            Err(unsettling) => {
                // Still processing at the provider, or the provider is away: not drift yet.
                self.give_back(Leased::Charges, lease, &unsettling.detail)
                    .await?;
                return Ok(());
            }
        };
        let kind = match &event {
            ChargeEvent::Succeeded { .. } => FindingKind::PaidAtProvider,
            ChargeEvent::Failed { .. } | ChargeEvent::Refused { .. } => {
                FindingKind::DeclinedAtProvider
            }
            ChargeEvent::Abandoned { .. }
            | ChargeEvent::RefundReserved { .. }
            | ChargeEvent::RefundReleased { .. }
            | ChargeEvent::RefundedAtProvider { .. } => FindingKind::UnknownToProvider,
        };
        let provider_object_id = match &event {
            ChargeEvent::Succeeded {
                provider_payment_id,
            } => Some(provider_payment_id.clone()),
            ChargeEvent::Failed {
                provider_payment_id,
                ..
            } => provider_payment_id.clone(),
            ChargeEvent::Refused { .. }
            | ChargeEvent::Abandoned { .. }
            | ChargeEvent::RefundReserved { .. }
            | ChargeEvent::RefundReleased { .. }
            | ChargeEvent::RefundedAtProvider { .. } => None,
        };
        let run_id = report.run_id;
        let mut connection = crate::db::connection(&self.pool).await?;
        let limits = Limits::within(REPAIR_BUDGET).waiting_for_locks_at_most(LOCK_WAIT);
        let repaired: AppResult<bool> = db::transaction(&mut connection, limits, async |conn| {
            let Some(locked) = ChargeRow::lock(conn, charge.account_id, charge.id).await? else {
                return Ok(false);
            };
            if locked.charge.status != ChargeStatus::Pending {
                return Ok(false);
            }
            let decision = locked
                .charge
                .apply(&event)
                .map_err(|violation| AppError::internal(anyhow::anyhow!(violation)))?;
            let saved = ChargeRow::save(conn, &decision.after).await?;
            super::receipt_if_paid_now(
                conn,
                locked.charge.status,
                &saved.charge,
                &self.message_domain,
            )
            .await?;
            let details = json!({
                "service": {"status": "pending"},
                "provider": {"status": saved.charge.status.as_str(),
                    "failure_code": saved.charge.failure_code},
            });
            audit(conn, &saved, decision.action, details.clone(), run_id).await?;
            insert_finding(
                conn,
                run_id,
                &Finding {
                    kind,
                    charge: Some(&saved),
                    refund: None,
                    provider_object_id: provider_object_id.as_deref(),
                    details,
                },
                decision.action,
                true,
            )
            .await?;
            Ok(true)
        })
        .await;
        if repaired? {
            self.counted(kind, true, report);
        }
        Ok(())
    }

    /// The provider counts another refunded amount than the charge: the charge takes the
    /// provider's figure, as the `charge.refunded` event would have done, while none of our own
    /// refunds of it is in flight.
    async fn repair_refunded(
        &self,
        stored: &StoredCharge,
        payment: &Payment,
        (refunded, read_at): (Money, DateTime<Utc>),
        report: &mut ReconciliationReport,
    ) -> AppResult<()> {
        let charge = &stored.charge;
        let run_id = report.run_id;
        let mut connection = crate::db::connection(&self.pool).await?;
        let limits = Limits::within(REPAIR_BUDGET).waiting_for_locks_at_most(LOCK_WAIT);
        let repaired: AppResult<bool> = db::transaction(&mut connection, limits, async |conn| {
            let refreshed = apply_refunded_at_provider(
                conn,
                (charge.account_id, charge.id),
                &ProviderRefunded {
                    amount: refunded,
                    read_at,
                    asked_by: None,
                },
                None,
                Some(run_id),
            )
            .await?;
            let Some(action) = refreshed.action else {
                return Ok(false);
            };
            insert_finding(
                conn,
                run_id,
                &Finding {
                    kind: FindingKind::RefundedAtProvider,
                    charge: Some(&refreshed.charge),
                    refund: None,
                    provider_object_id: Some(&payment.id),
                    details: json!({
                        "service": {"amount_refunded_minor": refreshed.before.amount_minor()},
                        "provider": {"amount_refunded_minor": refunded.amount_minor()},
                    }),
                },
                action,
                true,
            )
            .await?;
            Ok(true)
        })
        .await;
        if repaired? {
            self.counted(FindingKind::RefundedAtProvider, true, report);
        }
        Ok(())
    }

    /// One of our settled refunds against the provider's refund carrying its id, as read at
    /// `read_at`; one settled since then is left to the next run.
    async fn compare_refund(
        &self,
        refund: &StoredRefund,
        provider_refunds: &HashMap<&str, &Refund>,
        read_at: DateTime<Utc>,
        report: &mut ReconciliationReport,
    ) -> AppResult<()> {
        if changed_since(refund, read_at) {
            return Ok(());
        }
        let at_provider = provider_refunds.get(refund.id.to_string().as_str());
        let provider_status = at_provider.map(|found| found.status);
        let drift = match (refund.status, provider_status) {
            // In flight: the completer's.
            (RefundStatus::Pending, _) => false,
            (RefundStatus::Succeeded, Some(status)) => !matches!(
                status,
                crate::providers::payments::RefundStatus::Succeeded
                    | crate::providers::payments::RefundStatus::Pending
            ),
            (RefundStatus::Succeeded, None) => true,
            (RefundStatus::Failed, Some(status)) => matches!(
                status,
                crate::providers::payments::RefundStatus::Succeeded
                    | crate::providers::payments::RefundStatus::Pending
            ),
            (RefundStatus::Failed, None) => false,
        };
        if !drift {
            return Ok(());
        }
        let charge = {
            let mut connection = crate::db::connection(&self.pool).await?;
            ChargeRow::find(&mut connection, refund.account_id, None, refund.charge_id).await?
        };
        self.report(
            Finding {
                kind: FindingKind::RefundMismatch,
                charge: charge.as_ref(),
                refund: Some(refund),
                provider_object_id: at_provider.map(|found| found.id.as_str()),
                details: json!({
                    "service": {"status": refund.status.as_str(), "amount_minor": refund.amount.amount_minor()},
                    "provider": at_provider.map(|found| json!({
                        "status": format!("{:?}", found.status),
                        "amount_minor": found.amount.amount_minor(),
                    })),
                }),
            },
            report,
        )
        .await
    }

    /// Records a difference the service does not repair, once (not again every run), and marks
    /// its charge for an operator's attention unless something else already did.
    async fn report(
        &self,
        finding: Finding<'_>,
        report: &mut ReconciliationReport,
    ) -> AppResult<()> {
        let run_id = report.run_id;
        let kind = finding.kind;
        let mut connection = crate::db::connection(&self.pool).await?;
        let recorded: AppResult<bool> = db::transaction(
            &mut connection,
            Limits::within(REPAIR_BUDGET),
            async |conn| {
                if ReconciliationFindingRow::already_reported(
                    conn,
                    kind,
                    finding.charge.map(|stored| stored.charge.id.as_uuid()),
                    finding.refund.map(|refund| refund.id.as_uuid()),
                    finding.provider_object_id,
                )
                .await?
                {
                    return Ok(false);
                }
                let action = match finding.charge {
                    Some(stored) => {
                        let reason = format!("reconciliation: {kind}");
                        let newly = ChargeRow::mark_for_attention(
                            conn,
                            stored.charge.account_id,
                            stored.charge.id,
                            &reason,
                        )
                        .await?;
                        if newly {
                            audit(
                                conn,
                                stored,
                                "needs_attention",
                                json!({"subject": "charge", "id": stored.charge.id.to_string(), "reason": reason}),
                                run_id,
                            )
                            .await?;
                        }
                        "needs_attention"
                    }
                    None => "reported",
                };
                insert_finding(conn, run_id, &finding, action, false).await?;
                Ok(true)
            }
        ).await;
        if recorded? {
            self.counted(kind, false, report);
        }
        Ok(())
    }

    fn counted(&self, kind: FindingKind, repaired: bool, report: &mut ReconciliationReport) {
        tracing::info!(run_id = %report.run_id, %kind, repaired, "reconciliation found a difference");
        self.metrics
            .billing()
            .reconciliation_finding(kind)
            .increment();
        report.findings.push((kind, repaired));
    }
}

async fn insert_finding(
    conn: &mut AsyncPgConnection,
    run_id: Uuid,
    finding: &Finding<'_>,
    action: &str,
    repaired: bool,
) -> AppResult<()> {
    let account_id = finding
        .charge
        .map(|stored| stored.charge.account_id.as_uuid())
        .or_else(|| finding.refund.map(|refund| refund.account_id.as_uuid()));
    NewReconciliationFinding {
        id: Uuid::now_v7(),
        run_id,
        kind: finding.kind.as_str(),
        account_id,
        charge_id: finding
            .charge
            .map(|stored| stored.charge.id.as_uuid())
            .or_else(|| finding.refund.map(|refund| refund.charge_id.as_uuid())),
        refund_id: finding.refund.map(|refund| refund.id.as_uuid()),
        provider_object_id: finding.provider_object_id,
        details: finding.details.clone(),
        action,
        repaired,
    }
    .insert(conn)
    .await
}

/// The audit row of a repair: the charge's own action, naming the run.
async fn audit(
    conn: &mut AsyncPgConnection,
    stored: &StoredCharge,
    action: &str,
    changes: Value,
    run_id: Uuid,
) -> AppResult<()> {
    record_on(
        conn,
        stored.charge.account_id.as_uuid(),
        stored.charge.id.as_uuid(),
        None,
        action,
        changes,
        Some(run_id),
    )
    .await
}

fn money_json(money: Money) -> Value {
    json!({"amount_minor": money.amount_minor(), "currency": money.currency().code()})
}

fn provider_failed(what: &str, error: &crate::providers::payments::ProviderError) -> AppError {
    AppError::PaymentProviderUnavailable {
        detail: format!("reconciliation could not finish {what}: {error}"),
        retry_after: Duration::from_secs(1),
    }
}

fn chrono_of(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

fn count(value: usize) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// The period a run started now compares: the last `length`, up to now.
pub fn period_ending_now(length: Duration) -> LedgerPeriod {
    let until: DateTime<Utc> = Utc::now();
    LedgerPeriod {
        from: until - chrono_of(length),
        until,
    }
}
