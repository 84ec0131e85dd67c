//! Billing under a slow or refusing provider (docs/billing.md, "Bulkheads and refusals"): a slow
//! provider fills billing's own compartment and holds no pooled connection, the provider's
//! refusals are the client's errors and never INTERNAL, the completer cannot be starved, and a
//! disputed or refunded-elsewhere charge answers its documented error. Checked in PostgreSQL and
//! in the simulator's request log and ledger.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use payment_simulator::{DisputeRequest, Endpoint, FaultAction, FaultRule, OutsideRefund};
use supportdesk::auth::{Caller, Principal};
use supportdesk::db::models::NewCharge;
use supportdesk::db::schema::{charge_activities, charges, refunds};
use supportdesk::domain::{ChargeId, Role, SessionId};
use supportdesk::errors::Reason;
use supportdesk::idempotency::KeyedWrite;
use supportdesk::providers::payments::{
    BillingReference, CreatePayment, PaymentProvider, StripeHttpProvider,
};
use supportdesk::service::{Billing, CompleterPolicy};
use supportdesk::telemetry::metrics::Metrics;
use supportdesk::wire::proto::v1;
use tokio::task::JoinSet;
use tonic::Code;

use crate::support::{
    Count, PATIENCE, TestApp, TestUser, assert_reason, charge_paid_with, details, in_seconds,
    keyed, scope_of, usd, violated_fields, wait_until, with_key,
};

fn refund_request(charge_id: &str, amount_minor: Option<i64>) -> v1::RefundChargeRequest {
    v1::RefundChargeRequest {
        id: charge_id.to_owned(),
        amount: amount_minor.map(|amount_minor| v1::Money {
            amount_minor,
            currency_code: "USD".to_owned(),
        }),
    }
}

async fn paid_charge(app: &TestApp, customer: &TestUser, amount_minor: i64) -> v1::Charge {
    app.charge(customer.id, amount_minor, "USD").create().await
}

/// CreateCharge of `amount_minor` USD by card for `customer`, under idempotency key `key`.
async fn card_charge_with_key(
    app: &TestApp,
    customer: &TestUser,
    amount_minor: i64,
    key: &str,
) -> Result<tonic::Response<v1::Charge>, tonic::Status> {
    app.billing
        .clone()
        .create_charge(with_key(
            app.as_admin(charge_paid_with(
                &customer.id.to_string(),
                amount_minor,
                "USD",
                "pm_card_visa",
            )),
            key,
        ))
        .await
}

async fn count_where_status(app: &TestApp, status: &str) -> i64 {
    let mut conn = app.database.connect().await;
    charges::table
        .filter(charges::status.eq(status))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap()
}

/// Connections of the test's database sitting in an open transaction.
async fn connections_idle_in_transaction(app: &TestApp) -> i64 {
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "SELECT count(*) AS count FROM pg_stat_activity \
         WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    )
    .get_result::<Count>(&mut conn)
    .await
    .unwrap()
    .count
}

/// A billing service of its own on the app's database and simulator, for the completer.
fn billing_of(app: &TestApp, metrics: &Metrics) -> (Billing, Arc<StripeHttpProvider>) {
    let provider = Arc::new(
        StripeHttpProvider::new(app.settings.payment_provider.as_ref().expect("billing"))
            .expect("builds"),
    );
    let pool = supportdesk::db::build_pool(&app.settings.database, Duration::from_secs(5));
    let billing = Billing::new(pool, provider.clone()).counting_into(metrics.clone());
    (billing, provider)
}

#[tokio::test]
async fn a_slow_provider_holds_no_pooled_connection_and_every_other_rpc_answers_as_without_it() {
    const POOL: u32 = 4;
    let app = TestApp::spawn_with(|settings| {
        settings.database.pool_size = POOL;
        let provider = settings.payment_provider.as_mut().expect("billing");
        provider.timeout = Duration::from_millis(2_000);
        provider.max_attempts = 1;
    })
    .await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let mut to_refund = Vec::new();
    for _ in 0..POOL * 3 / 2 {
        to_refund.push(paid_charge(&app, &customer, 1_000).await.id);
    }
    // 95 % of the provider's timeout, on every payment and refund from now on.
    for endpoint in [Endpoint::CreatePaymentIntent, Endpoint::CreateRefund] {
        app.simulator
            .add_fault(FaultRule::always(
                endpoint,
                FaultAction::Latency { millis: 1_900 },
            ))
            .unwrap();
    }
    let mut slow = JoinSet::new();
    for _ in 0..POOL * 3 / 2 {
        let mut billing = app.billing.clone();
        let request = keyed(app.as_admin(charge_paid_with(
            &customer.id.to_string(),
            700,
            "USD",
            "pm_card_visa",
        )));
        slow.spawn(async move { billing.create_charge(request).await.map(drop) });
    }
    for id in &to_refund {
        let mut billing = app.billing.clone();
        let request = keyed(app.as_admin(refund_request(id, Some(300))));
        slow.spawn(async move { billing.refund_charge(request).await.map(drop) });
    }
    let in_flight = i64::from(POOL * 3 / 2);
    wait_until(
        "three pools' worth of provider calls in flight",
        PATIENCE,
        || async {
            let mut conn = app.database.connect().await;
            let pending_refunds: i64 = refunds::table
                .filter(refunds::status.eq("pending"))
                .count()
                .get_result(&mut conn)
                .await
                .unwrap();
            count_where_status(&app, "pending").await == in_flight && pending_refunds == in_flight
        },
    )
    .await;
    // While the provider holds twelve calls, the pool of four serves everyone else.
    assert_eq!(connections_idle_in_transaction(&app).await, 0);
    let me = app
        .users
        .clone()
        .get_current_user(app.as_admin(v1::GetCurrentUserRequest {}))
        .await;
    let tickets = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest::default()))
        .await;
    let listed = app
        .billing
        .clone()
        .list_charges(app.as_admin(v1::ListChargesRequest::default()))
        .await;
    let one = app
        .billing
        .clone()
        .get_charge(app.as_admin(v1::GetChargeRequest {
            id: to_refund[0].clone(),
        }))
        .await;
    assert!(me.is_ok(), "{me:?}");
    assert!(tickets.is_ok(), "{tickets:?}");
    assert_eq!(listed.expect("listed").into_inner().charges.len(), 12);
    assert!(one.is_ok(), "{one:?}");
    while let Some(answer) = slow.join_next().await {
        answer
            .unwrap()
            .expect("the slow provider still answered in time");
    }
    assert_eq!(count_where_status(&app, "pending").await, 0);
}

#[tokio::test]
async fn over_its_bulkhead_a_charge_is_refused_at_once_with_provider_busy_and_leaves_nothing() {
    let app = TestApp::spawn_with(|settings| {
        let provider = settings.payment_provider.as_mut().expect("billing");
        provider.max_concurrency = 2;
        provider.timeout = Duration::from_secs(5);
    })
    .await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let metrics = Metrics::default();
    let (billing, provider) = billing_of(&app, &metrics);
    app.simulator
        .add_fault(FaultRule::new(
            Endpoint::CreatePaymentIntent,
            FaultAction::Latency { millis: 1_500 },
            2,
        ))
        .unwrap();
    let caller = Caller {
        account_id: app.account_id,
        principal: Principal::User {
            user_id: app.admin.id,
            role: Role::Admin,
            session_id: SessionId::generate(),
        },
    };
    let request = supportdesk::service::NewChargeRequest {
        customer_id: customer.id,
        ticket_id: None,
        amount: usd(500),
        payment_method: "pm_card_visa".to_owned(),
    };
    let mut slow = JoinSet::new();
    for _ in 0..2 {
        let (billing, caller, request) = (billing.clone(), caller.clone(), request.clone());
        slow.spawn(async move {
            let scope = scope_of(&caller, in_seconds(10));
            billing
                .create_charge(&KeyedWrite::unkeyed(&scope), request)
                .await
                .map(drop)
        });
    }
    wait_until("both places taken", PATIENCE, || async {
        provider.bulkhead().in_flight() == 2
    })
    .await;
    let scope = scope_of(&caller, in_seconds(10));
    let refused = billing
        .create_charge(&KeyedWrite::unkeyed(&scope), request.clone())
        .await
        .expect_err("the compartment is full");
    let status = tonic::Status::from(&refused);
    assert_eq!(status.code(), Code::Unavailable);
    assert_reason(&status, Reason::ProviderBusy);
    let details = details(&status);
    assert!(details.retry_info().is_some(), "{status:?}");
    assert_eq!(
        details.error_info().unwrap().metadata.get("provider"),
        Some(&"payments".to_owned())
    );
    assert_eq!(metrics.billing().provider_busy.get(), 1);
    while let Some(answer) = slow.join_next().await {
        answer.unwrap().expect("paid");
    }
    // Only the two admitted charges were recorded.
    assert_eq!(count_where_status(&app, "succeeded").await, 2);
    assert_eq!(count_where_status(&app, "pending").await, 0);
}

/// The refusals the provider documents (shared/PROVIDER.md) and the simulator answers.
fn provider_refusals() -> Vec<FaultAction> {
    let refuse =
        |status: u16, error_type: &str, code: &str, param: Option<&str>| FaultAction::Refuse {
            status,
            error_type: error_type.to_owned(),
            code: Some(code.to_owned()),
            decline_code: None,
            param: param.map(str::to_owned),
        };
    vec![
        refuse(
            400,
            "invalid_request_error",
            "amount_too_large",
            Some("amount"),
        ),
        refuse(
            400,
            "invalid_request_error",
            "parameter_invalid_integer",
            Some("amount"),
        ),
        refuse(
            400,
            "invalid_request_error",
            "parameter_missing",
            Some("currency"),
        ),
        refuse(
            400,
            "invalid_request_error",
            "parameter_invalid_string",
            Some("currency"),
        ),
        refuse(
            400,
            "invalid_request_error",
            "parameter_invalid_empty",
            Some("payment_method"),
        ),
        refuse(
            400,
            "invalid_request_error",
            "parameter_invalid_boolean",
            Some("confirm"),
        ),
        refuse(
            400,
            "invalid_request_error",
            "parameter_unknown",
            Some("surprise"),
        ),
        refuse(
            404,
            "invalid_request_error",
            "resource_missing",
            Some("payment_method"),
        ),
        refuse(
            400,
            "invalid_request_error",
            "payment_intent_unexpected_state",
            None,
        ),
        refuse(
            400,
            "invalid_request_error",
            "charge_already_refunded",
            None,
        ),
        refuse(400, "invalid_request_error", "charge_disputed", None),
        refuse(400, "idempotency_error", "idempotency_key_in_use", None),
        FaultAction::Refuse {
            status: 402,
            error_type: "card_error".to_owned(),
            code: Some("card_declined".to_owned()),
            decline_code: Some("insufficient_funds".to_owned()),
            param: None,
        },
        refuse(402, "card_error", "expired_card", None),
        FaultAction::RateLimit {
            retry_after_secs: 1,
        },
        FaultAction::ServerError { status: 500 },
        FaultAction::ServerError { status: 503 },
    ]
}

#[tokio::test]
async fn every_refusal_the_provider_can_answer_is_the_clients_error_and_never_internal() {
    let app = TestApp::spawn_with(|settings| {
        let provider = settings.payment_provider.as_mut().expect("billing");
        provider.max_attempts = 1;
        provider.breaker_failure_threshold = 1_000;
    })
    .await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    for (endpoint, what) in [
        (Endpoint::CreatePaymentIntent, "charge"),
        (Endpoint::CreateRefund, "refund"),
    ] {
        for refusal in provider_refusals() {
            let paid = paid_charge(&app, &customer, 1_000).await;
            app.simulator
                .add_fault(FaultRule::new(endpoint, refusal.clone(), 1))
                .unwrap();
            let key = format!("{what}-{refusal:?}");
            let call = || async {
                if endpoint == Endpoint::CreatePaymentIntent {
                    app.billing
                        .clone()
                        .create_charge(with_key(
                            app.as_admin(charge_paid_with(
                                &customer.id.to_string(),
                                800,
                                "USD",
                                "pm_card_visa",
                            )),
                            &key,
                        ))
                        .await
                        .map(drop)
                } else {
                    app.billing
                        .clone()
                        .refund_charge(with_key(
                            app.as_admin(refund_request(&paid.id, Some(400))),
                            &key,
                        ))
                        .await
                        .map(drop)
                }
            };
            let answer = call().await;
            let Err(status) = answer else {
                panic!("{what} {refusal:?}: answered OK");
            };
            assert_ne!(
                status.code(),
                Code::Internal,
                "{what} {refusal:?}: {status:?}"
            );
            let retryable = matches!(
                refusal,
                FaultAction::RateLimit { .. } | FaultAction::ServerError { .. }
            ) || matches!(&refusal, FaultAction::Refuse { error_type, .. } if error_type == "idempotency_error");
            if retryable {
                assert_eq!(status.code(), Code::Unavailable, "{what} {refusal:?}");
                continue;
            }
            assert!(
                matches!(
                    status.code(),
                    Code::InvalidArgument | Code::FailedPrecondition
                ),
                "{what} {refusal:?}: {status:?}"
            );
            if matches!(&refusal, FaultAction::Refuse { code: Some(code), .. } if code == "payment_intent_unexpected_state")
            {
                assert_reason(&status, Reason::RefusedByProvider);
            }
            // The refusal is the key's answer: the retry replays it without a provider call.
            let requests = app.simulator.requests().len();
            let again = call().await.expect_err("replayed");
            assert_eq!(again.code(), status.code(), "{what} {refusal:?}");
            assert_eq!(again.message(), status.message(), "{what} {refusal:?}");
            assert_eq!(
                app.simulator.requests().len(),
                requests,
                "{what} {refusal:?}"
            );
        }
    }
    // Nothing refused is left pending for the completer to send again.
    let mut conn = app.database.connect().await;
    let pending_refunds: i64 = refunds::table
        .filter(refunds::status.eq("pending"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    let retryable = 3 + 1; // 429, 500, 503 and the idempotency error stay pending
    assert_eq!(count_where_status(&app, "pending").await, retryable);
    assert_eq!(pending_refunds, retryable);
}

#[tokio::test]
async fn a_charge_the_provider_refuses_fails_with_its_code_and_names_the_field_it_refused() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let status = app
        .billing
        .clone()
        .create_charge(keyed(app.as_admin(charge_paid_with(
            &customer.id.to_string(),
            800,
            "USD",
            "pm_no_such_method",
        ))))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_reason(&status, Reason::PaymentRefused);
    assert_eq!(violated_fields(&status), ["charge.payment_method"]);
    assert_eq!(
        details(&status)
            .error_info()
            .unwrap()
            .metadata
            .get("provider_code"),
        Some(&"resource_missing".to_owned())
    );
    let mut conn = app.database.connect().await;
    let stored: (String, Option<String>, Option<String>) = charges::table
        .select((
            charges::status,
            charges::failure_kind,
            charges::failure_code,
        ))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        stored,
        (
            "failed".to_owned(),
            Some("refused".to_owned()),
            Some("resource_missing".to_owned())
        )
    );
    // The completer never sends a refused charge again.
    let metrics = Metrics::default();
    let (billing, _) = billing_of(&app, &metrics);
    let requests = app.simulator.requests().len();
    let completed = billing
        .complete_pending(&CompleterPolicy {
            min_age: Duration::ZERO,
            ..CompleterPolicy::default()
        })
        .await
        .unwrap();
    assert_eq!((completed.charges, completed.postponed), (0, 0));
    assert_eq!(app.simulator.requests().len(), requests);
}

#[tokio::test]
async fn amounts_over_the_providers_maximum_and_malformed_payment_methods_are_refused_unsent() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let mut too_much = charge_paid_with(
        &customer.id.to_string(),
        10_000_000_000,
        "USD",
        "pm_card_visa",
    );
    too_much
        .charge
        .as_mut()
        .unwrap()
        .amount
        .as_mut()
        .unwrap()
        .currency_code = "EUR".to_owned();
    let mut thousandths = charge_paid_with(&customer.id.to_string(), 1_234, "USD", "pm_card_visa");
    thousandths
        .charge
        .as_mut()
        .unwrap()
        .amount
        .as_mut()
        .unwrap()
        .currency_code = "KWD".to_owned();
    for (request, field) in [
        (too_much, "charge.amount.amount_minor"),
        (thousandths, "charge.amount.amount_minor"),
        (
            charge_paid_with(&customer.id.to_string(), 800, "USD", "card_visa"),
            "charge.payment_method",
        ),
    ] {
        let status = app
            .billing
            .clone()
            .create_charge(keyed(app.as_admin(request)))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_reason(&status, Reason::InvalidArgument);
        assert_eq!(violated_fields(&status), [field]);
    }
    let mut conn = app.database.connect().await;
    let recorded: i64 = charges::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(recorded, 0);
    assert!(app.simulator.requests().is_empty());
}

/// The provider's next `payments` payment intents stay processing for `millis`, then succeed.
fn payments_settling_after(app: &TestApp, millis: u64, payments: u32) {
    app.simulator
        .add_fault(FaultRule::new(
            Endpoint::CreatePaymentIntent,
            FaultAction::SettleLater {
                after_millis: millis,
                outcome: payment_simulator::SettleOutcome::Succeed,
            },
            payments,
        ))
        .unwrap();
}

/// A charge committed pending whose payment the provider holds (made here), as a request that
/// died after the provider answered leaves it.
async fn pending_with_payment(app: &TestApp, customer: &TestUser, provider: &StripeHttpProvider) {
    let id = ChargeId::generate();
    let mut conn = app.database.connect().await;
    NewCharge {
        id: id.as_uuid(),
        account_id: app.account_id.as_uuid(),
        customer_id: customer.id.as_uuid(),
        ticket_id: None,
        amount_minor: 900,
        currency: "USD",
        payment_method: "pm_card_visa",
        status: "pending",
    }
    .insert(&mut conn)
    .await
    .unwrap();
    let payment = CreatePayment::new(
        BillingReference::parse(&id.to_string()).unwrap(),
        usd(900),
        customer.id.to_string(),
        "pm_card_visa",
        Default::default(),
    )
    .unwrap();
    provider
        .create_payment(&payment, in_seconds(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lost_answer_settles_in_the_next_run_behind_a_hundred_and_fifty_charges_that_cannot() {
    // Nothing here is about timeouts: the suite's 300 ms per provider call let reads of a loaded
    // 2-core run time out (122 of 150 postponed), so this run gives them 5 s.
    let app = TestApp::spawn_with(|settings| {
        settings.payment_provider.as_mut().expect("billing").timeout = Duration::from_secs(5);
    })
    .await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let metrics = Metrics::default();
    let (billing, provider) = billing_of(&app, &metrics);
    // 150 payments that stay processing at the provider for an hour.
    payments_settling_after(&app, 3_600_000, 150);
    for _ in 0..150 {
        pending_with_payment(&app, &customer, &provider).await;
    }
    // A backoff of at least five minutes: however long this run takes on a loaded machine, none
    // of the 150 is due again before the next one.
    let policy = CompleterPolicy {
        min_age: Duration::ZERO,
        attention_after: Duration::ZERO,
        attempts_per_second: 10_000,
        batch: 1_000,
        backoff_base: Duration::from_secs(600),
        backoff_max: Duration::from_secs(600),
        ..CompleterPolicy::default()
    };
    let first = billing.complete_pending(&policy).await.unwrap();
    assert_eq!((first.charges, first.postponed), (0, 150));
    // What cannot be settled is marked for attention, never declined, and counted.
    let mut conn = app.database.connect().await;
    let marked: i64 = charges::table
        .filter(charges::status.eq("pending"))
        .filter(charges::attention_reason.is_not_null())
        .filter(charges::attempts.eq(1))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(marked, 150);
    let audited: i64 = charge_activities::table
        .filter(charge_activities::action.eq("needs_attention"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(audited, 150);
    assert_eq!(metrics.billing().marked_for_attention.get(), 150);
    assert_eq!(metrics.billing().needing_attention.get(), 150);
    // Now one whose answer was lost: the next run settles it first, without retrying the 150,
    // which are not due before their backoff.
    pending_with_payment(&app, &customer, &provider).await;
    let requests = app.simulator.requests().len();
    let second = billing.complete_pending(&policy).await.unwrap();
    assert_eq!((second.charges, second.postponed), (1, 0));
    assert_eq!(count_where_status(&app, "succeeded").await, 1);
    // One search and one read: the stuck charges cost nothing this run.
    assert_eq!(app.simulator.requests().len() - requests, 2);
}

#[tokio::test]
async fn a_charge_marked_for_attention_while_pending_is_unmarked_once_it_settles() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let metrics = Metrics::default();
    let (billing, provider) = billing_of(&app, &metrics);
    payments_settling_after(&app, 1_000, 1);
    pending_with_payment(&app, &customer, &provider).await;
    let policy = CompleterPolicy {
        min_age: Duration::ZERO,
        attention_after: Duration::ZERO,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(1),
        ..CompleterPolicy::default()
    };
    let first = billing.complete_pending(&policy).await.unwrap();
    assert_eq!(first.postponed, 1, "still processing at the provider");
    let needing_attention = || async {
        app.billing
            .clone()
            .list_charges(app.as_admin(v1::ListChargesRequest {
                needs_attention: true,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .charges
    };
    assert_eq!(needing_attention().await.len(), 1);

    // The payment succeeds at the provider; the completer (or its webhook) settles the charge.
    wait_until("the charge settled", PATIENCE, async || {
        billing.complete_pending(&policy).await.unwrap();
        count_where_status(&app, "succeeded").await == 1
    })
    .await;
    let mut conn = app.database.connect().await;
    let (reason, since): (Option<String>, Option<chrono::DateTime<chrono::Utc>>) = charges::table
        .select((charges::attention_reason, charges::attention_since))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!((reason, since), (None, None));
    assert_eq!(needing_attention().await, Vec::new());
}

#[tokio::test]
async fn a_completer_run_tries_each_pending_charge_once_however_short_its_backoff() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let metrics = Metrics::default();
    let (billing, provider) = billing_of(&app, &metrics);
    payments_settling_after(&app, 3_600_000, 3);
    for _ in 0..3 {
        pending_with_payment(&app, &customer, &provider).await;
    }
    // Due again a millisecond after each attempt: only the run's own rule keeps it from taking
    // the same charges over and over until its batch is spent.
    let policy = CompleterPolicy {
        min_age: Duration::ZERO,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(1),
        attempts_per_second: 10_000,
        batch: 20,
        ..CompleterPolicy::default()
    };
    let run = billing.complete_pending(&policy).await.unwrap();
    assert_eq!((run.charges, run.postponed), (0, 3));
    let mut conn = app.database.connect().await;
    let attempts: Vec<i32> = charges::table
        .select(charges::attempts)
        .get_results(&mut conn)
        .await
        .unwrap();
    assert_eq!(attempts, [1, 1, 1]);
}

#[tokio::test]
async fn refunding_a_disputed_charge_is_charge_disputed_whether_or_not_the_dispute_was_heard_of() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let paid = paid_charge(&app, &customer, 1_000).await;
    // The provider knows of the dispute; the service has not heard of it yet.
    app.simulator
        .dispute(&paid.provider_payment_id, DisputeRequest::default())
        .unwrap();
    let refund = || async {
        app.billing
            .clone()
            .refund_charge(with_key(
                app.as_admin(refund_request(&paid.id, None)),
                "refund-disputed",
            ))
            .await
            .expect_err("refused")
    };
    let status = refund().await;
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_reason(&status, Reason::ChargeDisputed);
    assert_reason(&refund().await, Reason::ChargeDisputed);
    let mut conn = app.database.connect().await;
    let (refund_status, failure): (String, Option<String>) = refunds::table
        .select((refunds::status, refunds::failure_code))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (refund_status.as_str(), failure.as_deref()),
        ("failed", Some("charge_disputed"))
    );
    let released: i64 = charges::table
        .select(charges::amount_refunded_minor)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(released, 0);
}

#[tokio::test]
async fn a_refund_after_an_outside_refund_refreshes_the_charge_and_answers_what_is_left() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let paid = paid_charge(&app, &customer, 1_000).await;
    // Refunded in the provider's dashboard; its event has not been processed.
    app.simulator
        .refund_outside(
            &paid.provider_payment_id,
            OutsideRefund {
                amount: Some(600),
                reason: None,
            },
        )
        .unwrap();
    let status = app
        .billing
        .clone()
        .refund_charge(keyed(app.as_admin(refund_request(&paid.id, None))))
        .await
        .expect_err("more than is left");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_reason(&status, Reason::RefundExceedsCharge);
    let charge = app
        .billing
        .clone()
        .get_charge(app.as_admin(v1::GetChargeRequest {
            id: paid.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(charge.amount_refunded.unwrap().amount_minor, 600);
    assert_eq!(
        charge.status,
        i32::from(v1::ChargeStatus::PartiallyRefunded)
    );
    let rest = app
        .billing
        .clone()
        .refund_charge(keyed(app.as_admin(refund_request(&paid.id, None))))
        .await
        .expect("the rest is refunded")
        .into_inner();
    assert_eq!(rest.status, i32::from(v1::ChargeStatus::Refunded));
    let ledger = app.simulator.ledger();
    assert_eq!(
        ledger
            .refunds
            .iter()
            .map(|refund| refund.amount)
            .sum::<i64>(),
        1_000
    );
}

#[tokio::test]
async fn a_charge_the_provider_never_saw_is_abandoned_after_its_key_retention_and_so_answered() {
    let app = TestApp::spawn_with(|settings| {
        settings
            .payment_provider
            .as_mut()
            .expect("billing")
            .max_attempts = 1;
    })
    .await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let fault = app
        .simulator
        .add_fault(FaultRule::always(
            Endpoint::CreatePaymentIntent,
            FaultAction::ServerError { status: 503 },
        ))
        .unwrap();
    let charge = || card_charge_with_key(&app, &customer, 800, "never-seen");
    let status = charge().await.expect_err("the provider is down");
    assert_reason(&status, Reason::PaymentProviderUnavailable);
    app.simulator.remove_fault(fault.id);
    let metrics = Metrics::default();
    let (billing, _) = billing_of(&app, &metrics);
    let completed = billing
        .complete_pending(&CompleterPolicy {
            min_age: Duration::ZERO,
            provider_key_retention: Duration::ZERO,
            ..CompleterPolicy::default()
        })
        .await
        .unwrap();
    assert_eq!(completed.charges, 1);
    assert_eq!(app.simulator.ledger().payment_intents.len(), 0);
    let status = charge().await.expect_err("abandoned");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_reason(&status, Reason::ChargeAbandoned);
    let listed = app
        .billing
        .clone()
        .list_charges(app.as_admin(v1::ListChargesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.charges[0].failure_kind,
        i32::from(v1::ChargeFailureKind::Abandoned)
    );
}

/// A refund the provider made but answered with a 500 (saved under its key and replayed to every
/// retry) stays pending. Past the provider's key retention (zero here), the completer looks for it
/// among the provider's refunds, finds it by its metadata and records it, and sends nothing: a
/// key the provider has forgotten would have made the refund twice.
#[tokio::test]
async fn a_refund_pending_past_the_providers_key_retention_is_found_at_the_provider_not_sent_again()
{
    let app = TestApp::spawn_with(|settings| {
        settings
            .payment_provider
            .as_mut()
            .expect("billing")
            .max_attempts = 1;
    })
    .await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let paid = paid_charge(&app, &customer, 1_000).await;
    let fault = app
        .simulator
        .add_fault(FaultRule::always(
            Endpoint::CreateRefund,
            FaultAction::ExecuteThenServerError { status: 500 },
        ))
        .unwrap();
    app.billing
        .clone()
        .refund_charge(keyed(app.as_admin(refund_request(&paid.id, Some(400)))))
        .await
        .expect_err("the provider answered 500");
    app.simulator.remove_fault(fault.id);
    let made = app.simulator.ledger().refunds;
    assert_eq!(made.len(), 1, "the provider made the refund");
    let refunds_sent = || {
        app.simulator
            .requests()
            .into_iter()
            .filter(|request| request.method == "POST" && request.path == "/v1/refunds")
            .count()
    };
    assert_eq!(refunds_sent(), 1);
    let mut conn = app.database.connect().await;
    let pending: String = refunds::table
        .select(refunds::status)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending, "pending");

    let metrics = Metrics::default();
    let (billing, _) = billing_of(&app, &metrics);
    let completed = billing
        .complete_pending(&CompleterPolicy {
            min_age: Duration::ZERO,
            provider_key_retention: Duration::ZERO,
            ..CompleterPolicy::default()
        })
        .await
        .unwrap();
    assert_eq!(completed.refunds, 1);
    let (status, provider_refund_id): (String, Option<String>) = refunds::table
        .select((refunds::status, refunds::provider_refund_id))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (status.as_str(), provider_refund_id.as_deref()),
        ("succeeded", Some(made[0].id.as_str()))
    );
    let refunded: i64 = charges::table
        .select(charges::amount_refunded_minor)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(refunded, 400);
    assert_eq!(refunds_sent(), 1, "nothing was sent again");
    assert_eq!(app.simulator.ledger().refunds.len(), 1);
}

/// Moves a charge's or refund's recording a day and an hour back: older than the provider keeps
/// keys (24 hours).
async fn recorded_25_hours_ago(app: &TestApp, table: &str) {
    recorded_ago(app, table, "25 hours").await;
}

/// Moves every row of `table` back by `interval` (PostgreSQL's interval text).
async fn recorded_ago(app: &TestApp, table: &str, interval: &str) {
    let mut conn = app.database.connect().await;
    diesel::sql_query(format!(
        "UPDATE {table} SET created_at = created_at - interval '{interval}'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
}

/// An app whose provider calls make one attempt, and whose completer stays out of the way.
async fn one_attempt_no_completer() -> TestApp {
    TestApp::spawn_with(|settings| {
        settings.billing_completer_interval = Duration::from_secs(3600);
        let provider = settings.payment_provider.as_mut().expect("billing");
        provider.max_attempts = 1;
    })
    .await
}

/// Every request to `endpoint` is executed by the provider and answered with a 500 it saves
/// under the key; answers the fault's id.
fn made_but_answered_500(app: &TestApp, endpoint: Endpoint) -> u64 {
    app.simulator
        .add_fault(FaultRule::always(
            endpoint,
            FaultAction::ExecuteThenServerError { status: 500 },
        ))
        .unwrap()
        .id
}

fn posts_to(app: &TestApp, path: &str) -> usize {
    app.simulator
        .requests()
        .into_iter()
        .filter(|request| request.method == "POST" && request.path == path)
        .count()
}

/// A charge the provider made but answered with a 500 (saved under its key, replayed to every
/// resend) stays pending. A client's retry with the key past the provider's key retention looks
/// for the payment and records it; sent again, under a key the provider may have forgotten, it
/// could have been paid twice.
#[tokio::test]
async fn a_retry_past_the_providers_key_retention_looks_for_the_payment_instead_of_sending_it_again()
 {
    let app = one_attempt_no_completer().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let charge = || card_charge_with_key(&app, &customer, 1_200, "a-day-later");
    let fault = made_but_answered_500(&app, Endpoint::CreatePaymentIntent);
    let status = charge().await.expect_err("the provider answered 500");
    assert_reason(&status, Reason::PaymentProviderUnavailable);
    app.simulator.remove_fault(fault);
    assert_eq!(app.simulator.ledger().payment_intents.len(), 1, "paid");
    assert_eq!(count_where_status(&app, "pending").await, 1);
    recorded_25_hours_ago(&app, "charges").await;

    let answered = charge().await.expect("found at the provider").into_inner();

    assert_eq!(answered.status(), v1::ChargeStatus::Succeeded);
    assert_eq!(
        answered.provider_payment_id,
        app.simulator.ledger().payment_intents[0].id
    );
    assert_eq!(
        posts_to(&app, "/v1/payment_intents"),
        1,
        "nothing sent again"
    );
    assert_eq!(app.simulator.ledger().payment_intents.len(), 1);
    assert_eq!(count_where_status(&app, "succeeded").await, 1);
}

/// The provider states a minimum of 24 hours for its keys, not a promise to the second, and its
/// clock is not PostgreSQL's: a retry of a charge pending 23.5 hours, within the last hour of the
/// provider's retention, looks for the payment rather than trusting the key.
#[tokio::test]
async fn a_retry_within_an_hour_of_the_providers_key_retention_looks_for_the_payment_instead_of_sending_it_again()
 {
    let app = one_attempt_no_completer().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let charge = || card_charge_with_key(&app, &customer, 1_300, "nearly-a-day-later");
    let fault = made_but_answered_500(&app, Endpoint::CreatePaymentIntent);
    let status = charge().await.expect_err("the provider answered 500");
    assert_reason(&status, Reason::PaymentProviderUnavailable);
    app.simulator.remove_fault(fault);
    assert_eq!(app.simulator.ledger().payment_intents.len(), 1, "paid");
    recorded_ago(&app, "charges", "23 hours 30 minutes").await;

    let answered = charge().await;

    assert_eq!(
        posts_to(&app, "/v1/payment_intents"),
        1,
        "nothing sent again"
    );
    let answered = answered.expect("found at the provider").into_inner();
    assert_eq!(answered.status(), v1::ChargeStatus::Succeeded);
    assert_eq!(
        answered.provider_payment_id,
        app.simulator.ledger().payment_intents[0].id
    );
    assert_eq!(count_where_status(&app, "succeeded").await, 1);
}

/// A proxy, a firewall or a wrong base URL in front of the provider answers a page of its own (a
/// 404 here: 401 and 403 were never taken for refusals):
/// the charge never reached the provider, so it was neither refused nor paid. It stays pending,
/// the client is told to retry with its key, and the retry charges once the way is clear.
#[tokio::test]
async fn a_page_from_something_in_front_of_the_provider_leaves_the_charge_pending_and_the_retry_charges_once()
 {
    let app = one_attempt_no_completer().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let charge = || card_charge_with_key(&app, &customer, 1_500, "behind-a-proxy");
    let proxy = app
        .simulator
        .add_fault(FaultRule::always(
            Endpoint::CreatePaymentIntent,
            FaultAction::ProxyPage { status: 404 },
        ))
        .unwrap()
        .id;

    let status = charge().await.expect_err("the proxy answered");

    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_reason(&status, Reason::PaymentProviderUnavailable);
    assert_eq!(count_where_status(&app, "pending").await, 1);
    assert_eq!(count_where_status(&app, "failed").await, 0);
    assert!(app.simulator.ledger().payment_intents.is_empty());

    app.simulator.remove_fault(proxy);
    let answered = charge()
        .await
        .expect("charged once the way is clear")
        .into_inner();

    assert_eq!(answered.status(), v1::ChargeStatus::Succeeded);
    assert_eq!(app.simulator.ledger().payment_intents.len(), 1);
    assert_eq!(count_where_status(&app, "succeeded").await, 1);
}

/// The same page in front of a refund leaves the refund pending rather than refused.
#[tokio::test]
async fn a_page_from_something_in_front_of_the_provider_leaves_a_refund_pending_not_refused() {
    let app = one_attempt_no_completer().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let paid = paid_charge(&app, &customer, 2_000).await;
    let proxy = app
        .simulator
        .add_fault(FaultRule::always(
            Endpoint::CreateRefund,
            FaultAction::ProxyPage { status: 404 },
        ))
        .unwrap()
        .id;
    let refund = || async {
        app.billing
            .clone()
            .refund_charge(with_key(
                app.as_admin(refund_request(&paid.id, Some(500))),
                "refund-behind-a-proxy",
            ))
            .await
    };

    let status = refund().await.expect_err("the proxy answered");

    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_reason(&status, Reason::PaymentProviderUnavailable);
    let mut conn = app.database.connect().await;
    let states: Vec<String> = refunds::table
        .select(refunds::status)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(states, ["pending"]);

    app.simulator.remove_fault(proxy);
    refund().await.expect("refunded once the way is clear");
    let states: Vec<String> = refunds::table
        .select(refunds::status)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(states, ["succeeded"]);
    assert_eq!(app.simulator.ledger().refunds.len(), 1);
}

/// The same for a refund: past the provider's key retention, a client's retry finds the refund
/// the provider made among its refunds and records it, sending nothing.
#[tokio::test]
async fn a_refund_retried_past_the_providers_key_retention_is_found_at_the_provider_not_sent_again()
{
    let app = one_attempt_no_completer().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let paid = paid_charge(&app, &customer, 1_000).await;
    let refund = || async {
        app.billing
            .clone()
            .refund_charge(with_key(
                app.as_admin(refund_request(&paid.id, Some(300))),
                "refund-a-day-later",
            ))
            .await
    };
    let fault = made_but_answered_500(&app, Endpoint::CreateRefund);
    refund().await.expect_err("the provider answered 500");
    app.simulator.remove_fault(fault);
    assert_eq!(app.simulator.ledger().refunds.len(), 1, "refunded");
    recorded_25_hours_ago(&app, "refunds").await;

    let answered = refund().await.expect("found at the provider").into_inner();

    assert_eq!(answered.amount_refunded.unwrap().amount_minor, 300);
    assert_eq!(posts_to(&app, "/v1/refunds"), 1, "nothing sent again");
    let mut conn = app.database.connect().await;
    let (status, provider_refund_id): (String, Option<String>) = refunds::table
        .select((refunds::status, refunds::provider_refund_id))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (status.as_str(), provider_refund_id),
        (
            "succeeded",
            Some(app.simulator.ledger().refunds[0].id.clone())
        )
    );
}
