//! Reconciliation against the provider's ledger (docs/billing.md, "Reconciliation"): drift made
//! only at the provider, or left by a lost answer, is found and repaired once through the
//! charge's own transitions with an audit row naming the run; what cannot be repaired is
//! reported and marked for attention; money never moves (no POST reaches the provider); a second
//! run finds nothing. Checked in PostgreSQL, the simulator's ledger and request log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use payment_simulator::{Endpoint, FaultAction, FaultRule, OutsideRefund};
use supportdesk::db::models::NewCharge;
use supportdesk::db::schema::{charge_activities, charges, reconciliation_runs};
use supportdesk::domain::{ChargeId, FindingKind};
use supportdesk::providers::payments::{
    BillingReference, CreatePayment, LedgerPeriod, PaymentProvider, StripeHttpProvider,
};
use supportdesk::service::{Billing, ReconciliationPolicy, ReconciliationReport};
use supportdesk::telemetry::metrics::Metrics;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::{
    PATIENCE, TestApp, TestUser, assert_reason, in_seconds, keyed, usd, wait_until,
};

/// How long the tests' provider keeps idempotency keys: a charge recorded before that is one
/// nobody may send any more ([`forgotten_charge`]).
const KEY_RETENTION: Duration = Duration::from_secs(60);

/// A test app whose own completer and reconciler stay out of the way: the tests run passes.
async fn app() -> TestApp {
    TestApp::spawn_with(|settings| {
        settings.billing_completer_interval = Duration::from_secs(3600);
        settings.reconciliation.interval = Duration::from_secs(3600);
        keeping_keys_a_minute(settings);
    })
    .await
}

fn keeping_keys_a_minute(settings: &mut supportdesk::configuration::Settings) {
    settings
        .payment_provider
        .as_mut()
        .expect("billing")
        .key_retention = KEY_RETENTION;
}

/// Another instance's billing on the app's database and simulator, counting into `metrics`.
fn billing_of(app: &TestApp, metrics: &Metrics) -> (Billing, Arc<StripeHttpProvider>) {
    let timeout = app
        .settings
        .payment_provider
        .as_ref()
        .expect("billing")
        .timeout;
    billing_waiting(app, metrics, timeout)
}

/// [`billing_of`], waiting up to `timeout` for each answer of the provider.
fn billing_waiting(
    app: &TestApp,
    metrics: &Metrics,
    timeout: Duration,
) -> (Billing, Arc<StripeHttpProvider>) {
    let mut provider_settings = app.settings.payment_provider.clone().expect("billing");
    provider_settings.timeout = timeout;
    let provider = Arc::new(StripeHttpProvider::new(&provider_settings).expect("builds"));
    let pool = supportdesk::db::build_pool(&app.settings.database, Duration::from_secs(5));
    let billing = Billing::new(pool, provider.clone()).counting_into(metrics.clone());
    (billing, provider)
}

/// Nothing is too young to compare in a test.
fn policy() -> ReconciliationPolicy {
    ReconciliationPolicy {
        settle: Duration::ZERO,
        call_timeout: Duration::from_secs(10),
    }
}

/// The last hour, up to a moment from now.
fn last_hour() -> LedgerPeriod {
    let until = chrono::Utc::now() + chrono::Duration::seconds(1);
    LedgerPeriod {
        from: until - chrono::Duration::hours(1),
        until,
    }
}

async fn reconcile(billing: &Billing) -> ReconciliationReport {
    billing
        .reconcile(last_hour(), &policy())
        .await
        .expect("the run completes")
}

async fn paid_charge(app: &TestApp, customer: &TestUser, amount_minor: i64) -> ChargeId {
    let charge = app.charge(customer.id, amount_minor, "USD").create().await;
    assert_eq!(charge.status(), v1::ChargeStatus::Succeeded);
    ChargeId::from_uuid(charge.id.parse().unwrap())
}

/// A charge committed pending by a request whose answer was lost (or that died), built directly.
async fn pending_charge(app: &TestApp, customer: &TestUser, amount_minor: i64) -> ChargeId {
    let id = ChargeId::generate();
    let mut conn = app.database.connect().await;
    NewCharge {
        id: id.as_uuid(),
        account_id: app.account_id.as_uuid(),
        customer_id: customer.id.as_uuid(),
        ticket_id: None,
        amount_minor,
        currency: "USD",
        payment_method: "pm_card_visa",
        status: "pending",
    }
    .insert(&mut conn)
    .await
    .unwrap();
    id
}

/// A charge pending here since before the provider's key retention ([`KEY_RETENTION`]), which
/// the provider never saw: nobody may send it any more, so reconciliation abandons it.
async fn forgotten_charge(app: &TestApp, customer: &TestUser, amount_minor: i64) -> ChargeId {
    let id = pending_charge(app, customer, amount_minor).await;
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "UPDATE charges SET created_at = now() - $1 * interval '2 seconds' WHERE id = $2",
    )
    .bind::<diesel::sql_types::Double, _>(KEY_RETENTION.as_secs_f64())
    .bind::<diesel::sql_types::Uuid, _>(id.as_uuid())
    .execute(&mut conn)
    .await
    .unwrap();
    id
}

/// The provider's next refunds list answers `millis` late: a run waits there, having read the
/// payments.
fn slow_refunds_list(app: &TestApp, millis: u64) {
    app.simulator
        .add_fault(FaultRule::new(
            Endpoint::ListRefunds,
            FaultAction::Latency { millis },
            1,
        ))
        .expect("a valid fault");
}

async fn until_the_run_has_read_the_payments(app: &TestApp) {
    wait_until("the run has read the payments", PATIENCE, async || {
        app.simulator
            .requests()
            .iter()
            .any(|request| request.method == "GET" && request.path == "/v1/payment_intents")
    })
    .await;
}

/// The payment the lost request made at the provider, with `card`.
async fn pay_at_provider(
    app: &TestApp,
    provider: &StripeHttpProvider,
    customer: &TestUser,
    id: ChargeId,
    amount_minor: i64,
    card: &str,
) {
    let payment = CreatePayment::new(
        BillingReference::parse(&id.to_string()).unwrap(),
        usd(amount_minor),
        customer.id.to_string(),
        card,
        BTreeMap::from([("account_id".to_owned(), app.account_id.to_string())]),
    )
    .unwrap();
    let _made_or_declined = provider.create_payment(&payment, in_seconds(5)).await;
}

#[derive(Debug, PartialEq, Eq)]
struct Row {
    status: String,
    amount_refunded_minor: i64,
    provider_payment_id: Option<String>,
    failure_kind: Option<String>,
    attention_reason: Option<String>,
}

async fn row(app: &TestApp, id: ChargeId) -> Row {
    let mut conn = app.database.connect().await;
    let (status, amount_refunded_minor, provider_payment_id, failure_kind, attention_reason) =
        charges::table
            .filter(charges::id.eq(id.as_uuid()))
            .select((
                charges::status,
                charges::amount_refunded_minor,
                charges::provider_payment_id,
                charges::failure_kind,
                charges::attention_reason,
            ))
            .first::<(String, i64, Option<String>, Option<String>, Option<String>)>(&mut conn)
            .await
            .unwrap();
    Row {
        status,
        amount_refunded_minor,
        provider_payment_id,
        failure_kind,
        attention_reason,
    }
}

/// The audit trail of a charge: (action, run that made it), oldest first.
async fn trail(app: &TestApp, id: ChargeId) -> Vec<(String, Option<uuid::Uuid>)> {
    let mut conn = app.database.connect().await;
    charge_activities::table
        .filter(charge_activities::charge_id.eq(id.as_uuid()))
        .order((
            charge_activities::created_at.asc(),
            charge_activities::id.asc(),
        ))
        .select((
            charge_activities::action,
            charge_activities::reconciliation_run_id,
        ))
        .load(&mut conn)
        .await
        .unwrap()
}

/// Refunds `amount` of the payment from the provider's dashboard, outside the service.
fn refunded_in_the_dashboard(app: &TestApp, payment_id: &str, amount: i64) {
    app.simulator
        .refund_outside(
            payment_id,
            OutsideRefund {
                amount: Some(amount),
                reason: None,
            },
        )
        .expect("the dashboard refunds");
}

fn posts(app: &TestApp) -> usize {
    app.simulator
        .requests()
        .iter()
        .filter(|request| request.method == "POST")
        .count()
}

#[tokio::test]
async fn drift_made_at_the_provider_or_left_by_lost_answers_is_repaired_once_and_a_second_run_finds_nothing()
 {
    let app = app().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let metrics = Metrics::default();
    let (billing, provider) = billing_of(&app, &metrics);

    // Refunded in the provider's dashboard; the webhook never arrived (no endpoint is set).
    let refunded = paid_charge(&app, &customer, 1_000).await;
    let payment_id = row(&app, refunded).await.provider_payment_id.unwrap();
    refunded_in_the_dashboard(&app, &payment_id, 400);
    assert!(
        app.simulator.deliveries().is_empty(),
        "the webhook was lost"
    );
    // Pending here, paid there: the answer was lost.
    let paid = pending_charge(&app, &customer, 700).await;
    pay_at_provider(&app, &provider, &customer, paid, 700, "pm_card_visa").await;
    // Pending here since before the provider forgot its key, never seen there.
    let unseen = forgotten_charge(&app, &customer, 300).await;
    let posts_before = posts(&app);

    let first = reconcile(&billing).await;

    assert_eq!(first.charges_checked, 3);
    let mut found = first.findings.clone();
    found.sort_by_key(|(kind, _)| kind.as_str());
    assert_eq!(
        found,
        vec![
            (FindingKind::PaidAtProvider, true),
            (FindingKind::RefundedAtProvider, true),
            (FindingKind::UnknownToProvider, true),
        ]
    );
    let run = Some(first.run_id);
    assert_eq!(
        row(&app, refunded).await,
        Row {
            status: "partially_refunded".to_owned(),
            amount_refunded_minor: 400,
            provider_payment_id: Some(payment_id),
            failure_kind: None,
            attention_reason: None,
        }
    );
    assert_eq!(
        trail(&app, refunded).await.last(),
        Some(&("refunded".to_owned(), run))
    );
    let paid_row = row(&app, paid).await;
    assert_eq!(paid_row.status, "succeeded");
    assert!(paid_row.provider_payment_id.is_some());
    assert_eq!(trail(&app, paid).await, vec![("succeeded".to_owned(), run)]);
    let unseen_row = row(&app, unseen).await;
    assert_eq!(
        (
            unseen_row.status.as_str(),
            unseen_row.failure_kind.as_deref()
        ),
        ("failed", Some("abandoned"))
    );
    assert_eq!(trail(&app, unseen).await, vec![("failed".to_owned(), run)]);
    // Reconciliation never moves money: no payment or refund was asked of the provider.
    assert_eq!(posts(&app), posts_before);
    assert_eq!(
        app.simulator
            .payment_intent_count_for_charge_id(&unseen.to_string()),
        0
    );
    assert_eq!(
        app.simulator
            .payment_intent_count_for_charge_id(&paid.to_string()),
        1
    );

    // The run is recorded with its counts, and counted.
    let mut conn = app.database.connect().await;
    let (status, findings, repaired): (String, i32, i32) = reconciliation_runs::table
        .find(first.run_id)
        .select((
            reconciliation_runs::status,
            reconciliation_runs::findings,
            reconciliation_runs::repaired,
        ))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!((status.as_str(), findings, repaired), ("completed", 3, 3));
    let billing_metrics = metrics.billing();
    assert_eq!(billing_metrics.reconciliation_runs_completed.get(), 1);
    for kind in [
        FindingKind::PaidAtProvider,
        FindingKind::RefundedAtProvider,
        FindingKind::UnknownToProvider,
    ] {
        assert_eq!(
            billing_metrics.reconciliation_finding(kind).get(),
            1,
            "{kind}"
        );
    }
    assert!(metrics.render().contains(
        "supportdesk_billing_reconciliation_findings_total{kind=\"refunded_at_provider\"} 1"
    ));

    let second = reconcile(&billing).await;
    assert_eq!(second.charges_checked, 3);
    assert_eq!(second.findings, Vec::new());
    assert_eq!(trail(&app, unseen).await.len(), 1);
    assert_eq!(metrics.billing().reconciliation_runs_completed.get(), 2);
}

#[tokio::test]
async fn two_instances_reconciling_at_once_repair_each_charge_once() {
    let app = app().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let metrics = Metrics::default();
    let (one, provider) = billing_of(&app, &metrics);
    let (two, _) = billing_of(&app, &metrics);
    let mut charges = Vec::new();
    for _ in 0..3 {
        let paid = pending_charge(&app, &customer, 500).await;
        pay_at_provider(&app, &provider, &customer, paid, 500, "pm_card_visa").await;
        charges.push(paid);
        charges.push(forgotten_charge(&app, &customer, 200).await);
    }

    let (first, second) = tokio::join!(reconcile(&one), reconcile(&two));

    assert_eq!(first.findings.len() + second.findings.len(), charges.len());
    for id in charges {
        let trail = trail(&app, id).await;
        assert_eq!(trail.len(), 1, "one transition for {id}: {trail:?}");
        assert_ne!(row(&app, id).await.status, "pending");
    }
}

#[tokio::test]
async fn a_charge_the_provider_declined_while_its_answer_was_lost_ends_declined() {
    let app = app().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let (billing, provider) = billing_of(&app, &Metrics::default());
    let declined = pending_charge(&app, &customer, 800).await;
    pay_at_provider(
        &app,
        &provider,
        &customer,
        declined,
        800,
        "pm_card_chargeDeclinedInsufficientFunds",
    )
    .await;

    let report = reconcile(&billing).await;

    assert_eq!(
        report.findings,
        vec![(FindingKind::DeclinedAtProvider, true)]
    );
    let declined_row = row(&app, declined).await;
    assert_eq!(
        (
            declined_row.status.as_str(),
            declined_row.failure_kind.as_deref()
        ),
        ("failed", Some("declined"))
    );
    assert_eq!(reconcile(&billing).await.findings, Vec::new());
}

#[tokio::test]
async fn a_charge_being_sent_is_left_to_its_sender() {
    let app = app().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let (billing, _) = billing_of(&app, &Metrics::default());
    let leased = pending_charge(&app, &customer, 300).await;
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "UPDATE charges SET send_lease_token = gen_random_uuid(), \
         send_lease_until = now() + interval '1 hour' WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(leased.as_uuid())
    .execute(&mut conn)
    .await
    .unwrap();

    let report = reconcile(&billing).await;

    assert_eq!(report.findings, Vec::new());
    assert_eq!(row(&app, leased).await.status, "pending");
}

#[tokio::test]
async fn what_cannot_be_repaired_is_reported_once_and_marked_for_attention_without_moving_it() {
    let app = app().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let metrics = Metrics::default();
    let (billing, provider) = billing_of(&app, &metrics);
    // A payment carrying a charge id no charge of ours has.
    let stranger = ChargeId::generate();
    pay_at_provider(&app, &provider, &customer, stranger, 900, "pm_card_visa").await;
    // Paid here for another amount than the provider took.
    let mismatched = paid_charge(&app, &customer, 1_000).await;
    // Paid here, and the provider has no such payment.
    let vanished = paid_charge(&app, &customer, 600).await;
    // Marked by the completer already: its reason is kept.
    let marked = paid_charge(&app, &customer, 400).await;
    let mut conn = app.database.connect().await;
    for (sql, id) in [
        (
            "UPDATE charges SET amount_minor = 1200 WHERE id = $1",
            mismatched,
        ),
        (
            "UPDATE charges SET provider_payment_id = 'pi_nowhere' WHERE id = $1",
            vanished,
        ),
        (
            "UPDATE charges SET provider_payment_id = 'pi_gone', \
             attention_reason = 'the completer''s reason', attention_since = now() WHERE id = $1",
            marked,
        ),
    ] {
        diesel::sql_query(sql)
            .bind::<diesel::sql_types::Uuid, _>(id.as_uuid())
            .execute(&mut conn)
            .await
            .unwrap();
    }

    let report = reconcile(&billing).await;

    let mut found = report.findings.clone();
    found.sort_by_key(|(kind, _)| kind.as_str());
    assert_eq!(
        found,
        vec![
            (FindingKind::AmountMismatch, false),
            (FindingKind::UnknownPayment, false),
            (FindingKind::UnknownToProvider, false),
            (FindingKind::UnknownToProvider, false),
        ]
    );
    let mismatched_row = row(&app, mismatched).await;
    assert_eq!(mismatched_row.status, "succeeded");
    assert_eq!(
        mismatched_row.attention_reason.as_deref(),
        Some("reconciliation: amount_mismatch")
    );
    let vanished_row = row(&app, vanished).await;
    assert_eq!(vanished_row.status, "succeeded");
    assert_eq!(
        vanished_row.attention_reason.as_deref(),
        Some("reconciliation: unknown_to_provider")
    );
    assert_eq!(
        trail(&app, vanished).await.last(),
        Some(&("needs_attention".to_owned(), Some(report.run_id)))
    );
    assert_eq!(
        row(&app, marked).await.attention_reason.as_deref(),
        Some("the completer's reason")
    );
    assert_eq!(
        metrics
            .billing()
            .reconciliation_finding(FindingKind::UnknownPayment)
            .get(),
        1
    );
    // Reported once, not every run.
    assert_eq!(reconcile(&billing).await.findings, Vec::new());
}

#[tokio::test]
async fn admins_list_their_accounts_findings_and_others_are_refused() {
    let app = app().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let (billing, _) = billing_of(&app, &Metrics::default());
    let unseen = forgotten_charge(&app, &customer, 300).await;
    let first = reconcile(&billing).await;
    let later = forgotten_charge(&app, &customer, 200).await;
    let second = reconcile(&billing).await;
    assert_eq!(first.findings.len() + second.findings.len(), 2);

    let listed = app
        .billing
        .clone()
        .list_reconciliation_findings(app.as_admin(v1::ListReconciliationFindingsRequest {
            page_size: 1,
            ..Default::default()
        }))
        .await
        .expect("admins may list")
        .into_inner();
    assert_eq!(listed.findings.len(), 1);
    let newest = &listed.findings[0];
    assert_eq!(newest.charge_id, later.to_string());
    assert_eq!(newest.run_id, second.run_id.to_string());
    assert_eq!(newest.kind, "unknown_to_provider");
    assert!(newest.repaired);
    assert_eq!(newest.action, "failed");
    let rest = app
        .billing
        .clone()
        .list_reconciliation_findings(app.as_admin(v1::ListReconciliationFindingsRequest {
            page_size: 1,
            page_token: listed.next_page_token.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.findings.len(), 1);
    assert_eq!(rest.findings[0].charge_id, unseen.to_string());
    assert_eq!(rest.next_page_token, "");

    let of_first_run = app
        .billing
        .clone()
        .list_reconciliation_findings(app.as_admin(v1::ListReconciliationFindingsRequest {
            run_id: first.run_id.to_string(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(of_first_run.findings.len(), 1);
    assert_eq!(of_first_run.findings[0].charge_id, unseen.to_string());

    for user in [&customer, &agent] {
        let refused = app
            .billing
            .clone()
            .list_reconciliation_findings(
                user.request(v1::ListReconciliationFindingsRequest::default()),
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert_reason(&refused, supportdesk::errors::Reason::RoleRequired);
    }
    // Another account's admin sees none of them.
    let stranger = app.sign_up_another_account().await;
    let theirs = app
        .billing
        .clone()
        .list_reconciliation_findings(
            stranger.request(v1::ListReconciliationFindingsRequest::default()),
        )
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.findings.is_empty());
    let bad = app
        .billing
        .clone()
        .list_reconciliation_findings(app.as_admin(v1::ListReconciliationFindingsRequest {
            run_id: "not-a-run".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn the_reconciler_task_runs_on_its_interval_and_repairs_what_it_finds() {
    let app = TestApp::spawn_with(|settings| {
        settings.billing_completer_interval = Duration::from_secs(3600);
        settings.reconciliation.interval = Duration::from_millis(200);
        settings.reconciliation.settle = Duration::ZERO;
        keeping_keys_a_minute(settings);
    })
    .await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let unseen = forgotten_charge(&app, &customer, 300).await;

    crate::support::wait_until(
        "the reconciler abandons the charge the provider never saw",
        crate::support::PATIENCE,
        || async { row(&app, unseen).await.status == "failed" },
    )
    .await;

    // The run that repaired it records its end after the repair: wait for that too.
    crate::support::wait_until(
        "the run that repaired it is recorded completed",
        crate::support::PATIENCE,
        || async {
            let mut conn = app.database.connect().await;
            let completed: i64 = reconciliation_runs::table
                .filter(reconciliation_runs::status.eq("completed"))
                .count()
                .get_result(&mut conn)
                .await
                .unwrap();
            completed >= 1
        },
    )
    .await;
    let trail = trail(&app, unseen).await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(trail[0].0, "failed");
    assert!(trail[0].1.is_some(), "the audit row names the run");
}

#[tokio::test]
async fn a_refund_that_stands_otherwise_at_the_provider_is_reported_once() {
    let app = app().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let (billing, _) = billing_of(&app, &Metrics::default());
    let charge = paid_charge(&app, &customer, 1_000).await;
    app.billing
        .clone()
        .refund_charge(keyed(app.as_admin(v1::RefundChargeRequest {
            id: charge.to_string(),
            amount: Some(v1::Money {
                amount_minor: 300,
                currency_code: "USD".to_owned(),
            }),
        })))
        .await
        .expect("refunded");
    // The service lost track of it: its row says failed, the provider refunded it.
    let mut conn = app.database.connect().await;
    diesel::sql_query("UPDATE refunds SET status = 'failed' WHERE charge_id = $1")
        .bind::<diesel::sql_types::Uuid, _>(charge.as_uuid())
        .execute(&mut conn)
        .await
        .unwrap();

    let report = reconcile(&billing).await;

    assert_eq!(report.refunds_checked, 1);
    assert_eq!(report.findings, vec![(FindingKind::RefundMismatch, false)]);
    assert_eq!(
        row(&app, charge).await.attention_reason.as_deref(),
        Some("reconciliation: refund_mismatch")
    );
    assert_eq!(reconcile(&billing).await.findings, Vec::new());
}

#[tokio::test]
async fn charges_younger_than_the_settle_time_are_left_to_the_request_path_and_the_completer() {
    let app = app().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let (billing, _) = billing_of(&app, &Metrics::default());
    let young = pending_charge(&app, &customer, 300).await;

    let report = billing
        .reconcile(last_hour(), &ReconciliationPolicy::default())
        .await
        .unwrap();

    assert_eq!((report.charges_checked, report.findings.len()), (0, 0));
    assert_eq!(row(&app, young).await.status, "pending");
}

#[tokio::test]
async fn a_refund_made_while_a_run_reads_the_provider_is_not_taken_back_by_that_run() {
    let app = app().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let (billing, _) = billing_waiting(&app, &Metrics::default(), Duration::from_secs(10));
    let charge = paid_charge(&app, &customer, 1_000).await;
    // The run reads the payments, then waits on the refunds list: long enough for a refund.
    slow_refunds_list(&app, 3_000);
    let run = tokio::spawn(async move { reconcile(&billing).await });
    until_the_run_has_read_the_payments(&app).await;
    app.billing
        .clone()
        .refund_charge(keyed(app.as_admin(v1::RefundChargeRequest {
            id: charge.to_string(),
            amount: Some(v1::Money {
                amount_minor: 300,
                currency_code: "USD".to_owned(),
            }),
        })))
        .await
        .expect("refunded");
    assert!(
        !run.is_finished(),
        "the run ended before the refund: nothing was raced"
    );

    let report = run.await.expect("the run");

    // The payment it read counted nothing refunded; the refund is ours and newer than that.
    assert_eq!(report.findings, Vec::new());
    assert_eq!(row(&app, charge).await.amount_refunded_minor, 300);
    assert!(
        trail(&app, charge)
            .await
            .iter()
            .all(|(_, run)| run.is_none()),
        "the run changed the charge"
    );
}

#[tokio::test]
async fn a_run_whose_reading_is_older_than_the_charge_leaves_the_newer_refunded_figure() {
    let app = app().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let (older_run, _) = billing_waiting(&app, &Metrics::default(), Duration::from_secs(30));
    let (newer_run, _) = billing_of(&app, &Metrics::default());
    let charge = paid_charge(&app, &customer, 1_000).await;
    let payment_id = row(&app, charge).await.provider_payment_id.unwrap();
    // Refunded in the dashboard; the webhook is lost (no endpoint is set).
    refunded_in_the_dashboard(&app, &payment_id, 400);
    // The older run reads the payments (400 refunded), then its answer of the refunds is held.
    app.simulator
        .add_fault(FaultRule::new(
            Endpoint::ListRefunds,
            FaultAction::ExecuteThenHoldAnswer { max_millis: 60_000 },
            1,
        ))
        .expect("a valid fault");
    let older = tokio::spawn(async move { reconcile(&older_run).await });
    wait_until("the older run reads the refunds", PATIENCE, async || {
        app.simulator.faults().is_empty()
    })
    .await;
    // A second dashboard refund, which a newer run reads and records.
    refunded_in_the_dashboard(&app, &payment_id, 300);
    let newer = reconcile(&newer_run).await;
    assert_eq!(
        newer.findings,
        vec![(FindingKind::RefundedAtProvider, true)]
    );
    assert_eq!(row(&app, charge).await.amount_refunded_minor, 700);

    app.simulator.release_held_answer();
    let older = older.await.expect("the run");

    // Its payment counted 400 refunded, read before the charge last changed: it takes nothing back.
    assert_eq!(older.findings, Vec::new());
    let charge_now = row(&app, charge).await;
    assert_eq!(
        (charge_now.status.as_str(), charge_now.amount_refunded_minor),
        ("partially_refunded", 700)
    );
    assert_eq!(
        trail(&app, charge).await,
        vec![
            ("created".to_owned(), None),
            ("succeeded".to_owned(), None),
            ("refunded".to_owned(), Some(newer.run_id)),
        ]
    );
}

#[tokio::test]
async fn a_payment_another_system_made_in_a_currency_the_service_lacks_is_left_out_of_the_run() {
    let app = app().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let (billing, _) = billing_of(&app, &Metrics::default());
    let charge = paid_charge(&app, &customer, 1_000).await;
    let payment_id = row(&app, charge).await.provider_payment_id.unwrap();
    // Drift for the run to repair: refunded in the dashboard, the webhook lost.
    refunded_in_the_dashboard(&app, &payment_id, 400);
    // Another system's payment on the same provider account, in Mexican pesos: no currency of
    // the service's, and no charge of its in the metadata.
    let foreign: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/payment_intents", app.simulator.base_url()))
        .bearer_auth(app.simulator.api_key())
        .form(&[
            ("amount", "900"),
            ("currency", "mxn"),
            ("payment_method", "pm_card_visa"),
            ("confirm", "true"),
        ])
        .send()
        .await
        .expect("the simulator answers")
        .error_for_status()
        .expect("the payment is made")
        .json()
        .await
        .expect("a payment intent");
    assert_eq!(foreign["status"], "succeeded");

    let report = reconcile(&billing).await;

    assert_eq!(report.charges_checked, 1);
    assert_eq!(
        report.findings,
        vec![(FindingKind::RefundedAtProvider, true)]
    );
    assert_eq!(row(&app, charge).await.amount_refunded_minor, 400);
}

#[tokio::test]
async fn a_run_stopped_by_a_shutdown_ends_between_two_pages_recorded_failed_and_leaves_the_rest() {
    let app = app().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let (billing, _) = billing_waiting(&app, &Metrics::default(), Duration::from_secs(10));
    let unseen = forgotten_charge(&app, &customer, 300).await;
    slow_refunds_list(&app, 2_000);
    let stop = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn({
        let stop = stop.clone();
        async move { billing.reconcile_until(last_hour(), &policy(), &stop).await }
    });
    until_the_run_has_read_the_payments(&app).await;
    stop.cancel();

    let stopped = run.await.expect("the run").expect("no error");
    assert_eq!(stopped, None, "the run went on after the stop");
    let mut conn = app.database.connect().await;
    let (status, error): (String, Option<String>) = reconciliation_runs::table
        .select((reconciliation_runs::status, reconciliation_runs::error))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (status.as_str(), error.as_deref()),
        (
            "failed",
            Some(supportdesk::service::billing::reconciliation::STOPPED_BEFORE_FINISHING)
        )
    );
    assert_eq!(row(&app, unseen).await.status, "pending");
    assert_eq!(trail(&app, unseen).await, Vec::new());
}

/// A not-found page of something in front of the provider (a proxy, a wrong base URL) is not the
/// provider saying it has no such payment: the run ends failed, for the next run to try again,
/// and reports nothing about the charge.
#[tokio::test]
async fn a_not_found_page_from_something_in_front_of_the_provider_reports_nothing_and_fails_the_run()
 {
    let app = app().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let (billing, _) = billing_of(&app, &Metrics::default());
    let paid = paid_charge(&app, &customer, 700).await;
    let mut conn = app.database.connect().await;
    // A payment the period's list does not show: the run reads it by its id.
    diesel::sql_query(
        "UPDATE charges SET provider_payment_id = 'pi_outside_the_list' WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(paid.as_uuid())
    .execute(&mut conn)
    .await
    .unwrap();
    app.simulator
        .add_fault(FaultRule::always(
            Endpoint::RetrievePaymentIntent,
            FaultAction::ProxyPage { status: 404 },
        ))
        .unwrap();

    billing
        .reconcile(last_hour(), &policy())
        .await
        .expect_err("the way to the provider failed");

    let paid_row = row(&app, paid).await;
    assert_eq!(
        (paid_row.status.as_str(), paid_row.attention_reason),
        ("succeeded", None)
    );
    assert!(
        trail(&app, paid).await.iter().all(|(_, run)| run.is_none()),
        "a run recorded something on the charge"
    );
    let runs: Vec<(String, i32)> = reconciliation_runs::table
        .select((reconciliation_runs::status, reconciliation_runs::findings))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(runs, [("failed".to_owned(), 0)]);
}

#[tokio::test]
async fn an_instance_started_after_the_last_run_is_an_interval_old_reconciles_at_once() {
    let app = app().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let unseen = forgotten_charge(&app, &customer, 300).await;
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "INSERT INTO reconciliation_runs (id, period_start, period_end, started_at, finished_at, \
         status) VALUES ($1, now() - interval '3 hours', now() - interval '2 hours', \
         now() - interval '2 hours', now() - interval '2 hours', 'completed')",
    )
    .bind::<diesel::sql_types::Uuid, _>(uuid::Uuid::now_v7())
    .execute(&mut conn)
    .await
    .unwrap();

    // Another instance of the fleet starts (its interval an hour, like the first's).
    let mut settings = app.settings.clone();
    settings.reconciliation.settle = Duration::ZERO;
    let (_channel, instance) = crate::support::second_instance(&settings).await;

    wait_until(
        "the new instance's first run, due since an hour",
        PATIENCE,
        async || row(&app, unseen).await.status == "failed",
    )
    .await;
    instance.abort();
}

#[tokio::test]
async fn a_pending_charge_the_providers_search_does_not_show_while_it_keeps_the_key_is_left_to_the_completer()
 {
    let app = app().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let (billing, _) = billing_of(&app, &Metrics::default());
    // Pending here; the provider's search shows nothing, which within its key retention may be
    // its lag behind a send whose answer was lost.
    let lagging = pending_charge(&app, &customer, 300).await;
    let posts_before = posts(&app);

    let run = reconcile(&billing).await;

    assert_eq!(run.findings, Vec::new());
    assert_eq!(row(&app, lagging).await.status, "pending");
    assert_eq!(trail(&app, lagging).await, Vec::new());
    assert_eq!(posts(&app), posts_before, "reconciliation sent something");
    // The completer then sends it under its key, once.
    let completed = billing
        .complete_pending(&supportdesk::service::CompleterPolicy {
            min_age: Duration::ZERO,
            ..supportdesk::service::CompleterPolicy::default()
        })
        .await
        .unwrap();
    assert_eq!(completed.charges, 1);
    assert_eq!(row(&app, lagging).await.status, "succeeded");
    assert_eq!(
        app.simulator
            .payment_intent_count_for_charge_id(&lagging.to_string()),
        1
    );
}
