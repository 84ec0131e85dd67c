//! Billing's charges and refunds against real PostgreSQL and the real payment simulator
//! (in-process): every exactly-once claim is checked where it lives, in the `charges` and
//! `refunds` tables and in the simulator's ledger, never only in the answers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use payment_simulator::{Endpoint, FaultAction, FaultRule, Simulator, SimulatorConfig};
use secrecy::SecretString;
use supportdesk::auth::{Caller, Principal};
use supportdesk::configuration::PaymentProviderSettings;
use supportdesk::db::models::charge_activity::actions_of_charge;
use supportdesk::db::models::{NewCharge, StoredCharge};
use supportdesk::db::schema::{charges, refunds};
use supportdesk::domain::{ChargeId, ChargeStatus, IdempotencyKey, Role, SessionId};
use supportdesk::errors::{AppError, Reason};
use supportdesk::idempotency::{
    FingerprintKey, IdempotencyPolicy, Idempotent, KeyedWrite, Outcome, StoredResponse,
};
use supportdesk::providers::payments::{
    BillingReference, CreatePayment, PaymentProvider, StripeHttpProvider,
};
use supportdesk::scope::RequestScope;
use supportdesk::service::billing::{CHARGE_PHASES, REFUND_PHASES};
use supportdesk::service::{Billing, CompleterPolicy, NewChargeRequest};
use supportdesk::wire::proto::v1;
use tokio::time::Instant;

use crate::support::{
    PATIENCE, TestApp, TestUser, assert_json_reason, assert_reason, charge_request, count_of,
    in_seconds, scope_of, test_payment_provider, usd, violated_fields, with_key,
};

struct Desk {
    app: TestApp,
    simulator: payment_simulator::SimulatorHandle,
    provider: Arc<StripeHttpProvider>,
    billing: Billing,
    agent: Caller,
    customer: TestUser,
}

fn provider_settings(
    simulator: &payment_simulator::SimulatorHandle,
    adjust: impl FnOnce(&mut PaymentProviderSettings),
) -> PaymentProviderSettings {
    let mut settings = test_payment_provider(simulator);
    adjust(&mut settings);
    settings
}

impl Desk {
    async fn open() -> Self {
        Self::open_with(|_| {}).await
    }

    async fn open_with(adjust: impl FnOnce(&mut PaymentProviderSettings)) -> Self {
        let app = TestApp::spawn().await;
        let simulator = Simulator::start(SimulatorConfig::default())
            .await
            .expect("the simulator starts");
        let provider = Arc::new(
            StripeHttpProvider::new(&provider_settings(&simulator, adjust)).expect("builds"),
        );
        let billing = Billing::new(Self::pool(&app), provider.clone());
        let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
        let agent = Caller {
            account_id: app.account_id,
            principal: Principal::User {
                user_id: app.admin.id,
                role: Role::Admin,
                session_id: SessionId::generate(),
            },
        };
        Self {
            app,
            simulator,
            provider,
            billing,
            agent,
            customer,
        }
    }

    fn pool(app: &TestApp) -> supportdesk::db::PgPool {
        supportdesk::db::build_pool(&app.settings.database, Duration::from_secs(5))
    }

    fn charge_of(&self, cents: i64, card: &str) -> NewChargeRequest {
        NewChargeRequest {
            customer_id: self.customer.id,
            ticket_id: None,
            amount: usd(cents),
            payment_method: card.to_owned(),
        }
    }

    /// CreateCharge of `cents` paid with `card`, by the admin through the service, within five
    /// seconds, under `key` when the caller sent one.
    async fn charge(
        &self,
        cents: i64,
        card: &str,
        key: Option<&Idempotent<'_, StoredCharge>>,
    ) -> Result<Outcome<StoredCharge>, AppError> {
        let scope = scope_of(&self.agent, in_seconds(5));
        self.billing
            .create_charge(&write_of(&scope, key), self.charge_of(cents, card))
            .await
    }

    fn customer_caller(&self) -> Caller {
        Caller {
            account_id: self.app.account_id,
            principal: Principal::User {
                user_id: self.customer.id,
                role: Role::Customer,
                session_id: SessionId::generate(),
            },
        }
    }

    async fn stored(&self, id: ChargeId) -> (String, i64, Option<String>) {
        let mut conn = self.app.database.connect().await;
        charges::table
            .filter(charges::id.eq(id.as_uuid()))
            .select((
                charges::status,
                charges::amount_refunded_minor,
                charges::provider_payment_id,
            ))
            .first(&mut conn)
            .await
            .expect("the charge is stored")
    }

    async fn charge_count(&self) -> i64 {
        let mut conn = self.app.database.connect().await;
        charges::table.count().get_result(&mut conn).await.unwrap()
    }

    async fn actions(&self, id: ChargeId) -> Vec<String> {
        let mut conn = self.app.database.connect().await;
        actions_of_charge(&mut conn, id.as_uuid()).await.unwrap()
    }

    /// Payments the provider holds for our charge (declined ones included).
    fn payments_at_provider(&self, id: ChargeId) -> usize {
        self.simulator
            .payment_intent_count_for_charge_id(&id.to_string())
    }
}

/// How the tests store a success: the charge id, enough to tell answers apart.
fn store_charge(charge: &StoredCharge) -> StoredResponse {
    StoredResponse::Success {
        body: charge.charge.id.to_string().into_bytes(),
        metadata: BTreeMap::new(),
    }
}

fn store_failure(error: &AppError) -> StoredResponse {
    let status = tonic::Status::from(error);
    StoredResponse::Failure {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: status.details().to_vec(),
    }
}

/// A write of the request `scope`, under `key` when it sent one.
fn write_of<'a>(
    scope: &'a RequestScope,
    key: Option<&Idempotent<'a, StoredCharge>>,
) -> KeyedWrite<'a, StoredCharge> {
    KeyedWrite {
        scope,
        idempotent: key.cloned(),
    }
}

fn key_for<'a>(
    desk: &Desk,
    rpc: &'a str,
    key: &str,
    phases: &'static [&'static str],
) -> Idempotent<'a, StoredCharge> {
    Idempotent {
        caller: format!("user:{}", desk.app.admin.id),
        rpc,
        key: IdempotencyKey::parse(key).unwrap(),
        request_hash: b"the same request".to_vec(),
        policy: IdempotencyPolicy {
            retention: Duration::from_secs(86_400),
            wait: Duration::from_millis(100),
            fingerprint_key: FingerprintKey::new(&SecretString::from("k".repeat(32))),
        },
        store_success: &store_charge,
        store_failure,
        phases,
    }
}

const CREATE: &str = "/supportdesk.v1.BillingService/CreateCharge";
const REFUND: &str = "/supportdesk.v1.BillingService/RefundCharge";

/// The charge id an outcome answers with: fresh, or replayed from the key.
fn answered_charge(outcome: &Outcome<StoredCharge>) -> Option<String> {
    match outcome {
        Outcome::Done(charge) => Some(charge.charge.id.to_string()),
        Outcome::Replay(StoredResponse::Success { body, .. }) => {
            Some(String::from_utf8(body.clone()).unwrap())
        }
        Outcome::Failed(_) | Outcome::Replay(StoredResponse::Failure { .. }) => None,
    }
}

async fn paid_charge(desk: &Desk, cents: i64) -> StoredCharge {
    match desk
        .charge(cents, "pm_card_visa", None)
        .await
        .expect("the charge is made")
    {
        Outcome::Done(charge) => charge,
        other @ (Outcome::Failed(_) | Outcome::Replay(_)) => {
            panic!("expected a paid charge, got {other:?}")
        }
    }
}

#[tokio::test]
async fn a_charge_is_paid_once_and_its_transitions_are_in_the_audit_trail() {
    let desk = Desk::open().await;
    let charge = paid_charge(&desk, 2_000).await;
    assert_eq!(charge.charge.status, ChargeStatus::Succeeded);
    let (status, refunded, payment) = desk.stored(charge.charge.id).await;
    assert_eq!(status, "succeeded");
    assert_eq!(refunded, 0);
    let payment = payment.expect("the provider's payment id is stored");
    let ledger = desk
        .simulator
        .ledger_for_metadata("charge_id", &charge.charge.id.to_string());
    assert_eq!(ledger.payment_intents.len(), 1);
    assert_eq!(ledger.payment_intents[0].id, payment);
    assert_eq!(ledger.payment_intents[0].amount, 2_000);
    assert_eq!(
        desk.actions(charge.charge.id).await,
        ["created", "succeeded"]
    );
    let read = desk
        .billing
        .get(&scope_of(&desk.agent, in_seconds(5)), charge.charge.id)
        .await
        .unwrap();
    assert_eq!(read.charge, charge.charge);
}

#[tokio::test]
async fn a_declined_card_fails_the_charge_with_card_declined_and_the_decline_code() {
    let desk = Desk::open().await;
    let outcome = desk
        .charge(500, "pm_card_chargeDeclinedInsufficientFunds", None)
        .await
        .unwrap();
    let Outcome::Failed(error) = outcome else {
        panic!("expected a decline, got {outcome:?}");
    };
    let status = tonic::Status::from(&error);
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_reason(&status, Reason::CardDeclined);
    let info = crate::support::details(&status)
        .error_info()
        .cloned()
        .unwrap();
    assert_eq!(info.metadata["decline_code"], "insufficient_funds");
    assert_eq!(info.metadata["code"], "card_declined");
    let page = desk
        .billing
        .list(
            &scope_of(&desk.agent, in_seconds(5)),
            Default::default(),
            supportdesk::domain::PageSize::parse(10).unwrap(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let declined = &page.items[0].charge;
    assert_eq!(declined.status, ChargeStatus::Failed);
    assert_eq!(declined.decline_code.as_deref(), Some("insufficient_funds"));
    assert_eq!(desk.payments_at_provider(declined.id), 1);
    assert_eq!(desk.actions(declined.id).await, ["created", "failed"]);
}

#[tokio::test]
async fn a_payment_whose_answer_was_lost_stays_pending_and_the_retry_finds_it_without_paying_twice()
{
    let desk = Desk::open().await;
    desk.simulator
        .add_fault(FaultRule::new(
            Endpoint::CreatePaymentIntent,
            // Far longer than the 300 ms attempt timeout: only that timeout ends the wait.
            FaultAction::ExecuteThenTimeout {
                hang_millis: 60_000,
            },
            1,
        ))
        .unwrap();
    let key = key_for(&desk, CREATE, "lost-answer", CHARGE_PHASES);
    let started = std::time::Instant::now();
    let error = desk
        .charge(700, "pm_card_visa", Some(&key))
        .await
        .expect_err("the outcome is unknown");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited for the provider's answer, not for the attempt timeout"
    );
    let status = tonic::Status::from(&error);
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_reason(&status, Reason::PaymentProviderUnavailable);
    assert!(crate::support::details(&status).retry_info().is_some());
    let mut conn = desk.app.database.connect().await;
    let (id, pending): (uuid::Uuid, String) = charges::table
        .select((charges::id, charges::status))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending, "pending");
    let id = ChargeId::from_uuid(id);
    assert_eq!(desk.payments_at_provider(id), 1, "the provider did charge");

    let retried = desk.charge(700, "pm_card_visa", Some(&key)).await.unwrap();
    assert_eq!(answered_charge(&retried), Some(id.to_string()));
    assert_eq!(desk.stored(id).await.0, "succeeded");
    assert_eq!(desk.payments_at_provider(id), 1);
    assert_eq!(desk.charge_count().await, 1);
    // A third try replays the stored answer.
    let replayed = desk.charge(700, "pm_card_visa", Some(&key)).await.unwrap();
    assert!(matches!(
        replayed,
        Outcome::Replay(StoredResponse::Success { .. })
    ));
}

/// A charge committed pending by a request that died before (or after) calling the provider,
/// built directly in PostgreSQL.
async fn crashed_charge(desk: &Desk, cents: i64) -> ChargeId {
    crashed_charge_paid_with(desk, cents, "pm_card_visa").await
}

async fn crashed_charge_paid_with(desk: &Desk, cents: i64, payment_method: &str) -> ChargeId {
    let id = ChargeId::generate();
    let mut conn = desk.app.database.connect().await;
    NewCharge {
        id: id.as_uuid(),
        account_id: desk.app.account_id.as_uuid(),
        customer_id: desk.customer.id.as_uuid(),
        ticket_id: None,
        amount_minor: cents,
        currency: "USD",
        payment_method,
        status: "pending",
    }
    .insert(&mut conn)
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn the_completer_finishes_charges_left_pending_by_a_crash_with_one_payment_each() {
    let desk = Desk::open().await;
    // Died after the provider charged: the payment exists, our row says pending.
    let charged = crashed_charge(&desk, 900).await;
    let payment = CreatePayment::new(
        BillingReference::parse(&charged.to_string()).unwrap(),
        usd(900),
        desk.customer.id.to_string(),
        "pm_card_visa",
        BTreeMap::from([("account_id".to_owned(), desk.app.account_id.to_string())]),
    )
    .unwrap();
    let made = desk
        .provider
        .create_payment(&payment, in_seconds(5))
        .await
        .unwrap();
    // Died before calling the provider: nothing there.
    let unsent = crashed_charge(&desk, 400).await;
    let policy = CompleterPolicy {
        min_age: Duration::ZERO,
        ..CompleterPolicy::default()
    };
    let completed = desk.billing.complete_pending(&policy).await.unwrap();
    assert_eq!(completed.charges, 2);
    let (status, _, payment_id) = desk.stored(charged).await;
    assert_eq!((status.as_str(), payment_id), ("succeeded", Some(made.id)));
    assert_eq!(desk.payments_at_provider(charged), 1);
    assert_eq!(desk.stored(unsent).await.0, "succeeded");
    assert_eq!(desk.payments_at_provider(unsent), 1);
    // Nothing is left to do, and a second run sends nothing.
    let requests = desk.simulator.requests().len();
    assert_eq!(
        desk.billing
            .complete_pending(&policy)
            .await
            .unwrap()
            .charges,
        0
    );
    assert_eq!(desk.simulator.requests().len(), requests);
}

#[tokio::test]
async fn a_completer_told_to_stop_claims_nothing_more_and_leaves_the_rest_unattempted() {
    let desk = Desk::open().await;
    let charges = [
        crashed_charge(&desk, 100).await,
        crashed_charge(&desk, 200).await,
        crashed_charge(&desk, 300).await,
    ];
    let policy = CompleterPolicy {
        min_age: Duration::ZERO,
        attempts_per_second: 1,
        ..CompleterPolicy::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let billing = desk.billing.clone();
    let run = tokio::spawn({
        let stop = stop.clone();
        async move { billing.complete_pending_until(&policy, &stop).await }
    });
    crate::support::wait_until("the first charge settled", PATIENCE, async || {
        count_of(
            &desk.app.database,
            "SELECT count(*) AS count FROM charges WHERE status = 'succeeded'",
        )
        .await
            == 1
    })
    .await;
    // The shutdown comes while the run waits for its next slot, a second after the first.
    stop.cancel();

    let completed = run.await.unwrap().unwrap();
    assert_eq!(completed.charges, 1);
    assert_eq!(
        count_of(
            &desk.app.database,
            "SELECT count(*) AS count FROM charges WHERE status = 'pending' AND attempts = 0 \
             AND send_lease_until IS NULL"
        )
        .await,
        2,
        "claimed after the stop"
    );
    let paid: usize = charges
        .iter()
        .map(|charge| desk.payments_at_provider(*charge))
        .sum();
    assert_eq!(paid, 1);
}

#[tokio::test]
async fn the_completer_leaves_young_pending_charges_to_their_requests() {
    let desk = Desk::open().await;
    let young = crashed_charge(&desk, 400).await;
    let completed = desk
        .billing
        .complete_pending(&CompleterPolicy::default())
        .await
        .unwrap();
    assert_eq!(completed.charges, 0);
    assert_eq!(desk.stored(young).await.0, "pending");
    assert_eq!(desk.payments_at_provider(young), 0);
}

#[tokio::test]
async fn a_retry_after_the_keys_day_of_a_charge_still_pending_resumes_it_instead_of_charging_again()
{
    let desk = Desk::open().await;
    let outage = desk
        .simulator
        .add_fault(FaultRule::always(
            Endpoint::CreatePaymentIntent,
            FaultAction::ServerError { status: 503 },
        ))
        .unwrap();
    let key = key_for(&desk, CREATE, "a-day-later", CHARGE_PHASES);
    let first = desk
        .charge(700, "pm_card_visa", Some(&key))
        .await
        .expect_err("the provider is down");
    assert_reason(
        &tonic::Status::from(&first),
        Reason::PaymentProviderUnavailable,
    );
    desk.simulator.remove_fault(outage.id);
    // A day later (the key's retention), after the sweeper has run.
    let mut conn = desk.app.database.connect().await;
    diesel::sql_query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        .execute(&mut conn)
        .await
        .unwrap();
    supportdesk::idempotency::sweep_expired(&Desk::pool(&desk.app), 500)
        .await
        .unwrap();
    assert_eq!(
        count_of(
            &desk.app.database,
            "SELECT count(*) AS count FROM idempotency_keys \
             WHERE recovery_point IS NOT NULL AND expires_at IS NULL"
        )
        .await,
        1,
        "the key of the pending charge is kept, without an expiry"
    );

    let retried = desk
        .charge(700, "pm_card_visa", Some(&key))
        .await
        .expect("the retry resumes the charge");
    let pending: uuid::Uuid = charges::table
        .select(charges::id)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(answered_charge(&retried), Some(pending.to_string()));
    assert_eq!(desk.charge_count().await, 1);
    assert_eq!(
        desk.stored(ChargeId::from_uuid(pending)).await.0,
        "succeeded"
    );
    assert_eq!(desk.payments_at_provider(ChargeId::from_uuid(pending)), 1);
    assert_eq!(
        count_of(
            &desk.app.database,
            "SELECT count(*) AS count FROM idempotency_keys WHERE recovery_point IS NULL \
             AND expires_at > now() + interval '23 hours'"
        )
        .await,
        1,
        "with its outcome, the key expires like any other"
    );
}

#[tokio::test]
async fn an_open_breaker_answers_unavailable_at_once_without_calling_the_provider() {
    let desk = Desk::open_with(|settings| settings.breaker_failure_threshold = 1).await;
    desk.simulator
        .add_fault(FaultRule::always(
            Endpoint::CreatePaymentIntent,
            FaultAction::ServerError { status: 503 },
        ))
        .unwrap();
    let first = desk
        .charge(100, "pm_card_visa", None)
        .await
        .expect_err("the provider is down");
    assert_reason(
        &tonic::Status::from(&first),
        Reason::PaymentProviderUnavailable,
    );
    let sent = desk.simulator.requests().len();
    let refused = desk
        .charge(100, "pm_card_visa", None)
        .await
        .expect_err("the breaker is open");
    let status = tonic::Status::from(&refused);
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_reason(&status, Reason::PaymentProviderUnavailable);
    let retry = crate::support::details(&status)
        .retry_info()
        .cloned()
        .unwrap();
    assert!(
        retry.retry_delay.unwrap() > Duration::from_secs(20),
        "the breaker's cool-down"
    );
    assert_eq!(desk.simulator.requests().len(), sent, "a request was sent");
    // Only the first call, which reached the provider, left a charge (pending, for a retry with
    // its key or the completer); the refused one recorded nothing.
    assert_eq!(desk.charge_count().await, 1);
}

#[tokio::test]
async fn ten_concurrent_partial_refunds_refund_only_what_fits_in_the_charge() {
    let desk = Arc::new(Desk::open().await);
    let charge = paid_charge(&desk, 1_000).await;
    let id = charge.charge.id;
    let mut tasks = Vec::new();
    for attempt in 0..10 {
        let desk = desk.clone();
        tasks.push(tokio::spawn(async move {
            let key = key_for(&desk, REFUND, &format!("refund-{attempt}"), REFUND_PHASES);
            let scope = scope_of(&desk.agent, in_seconds(10));
            let write = write_of(&scope, Some(&key));
            desk.billing
                .refund_charge(&write, id, Some(usd(300)))
                .await
                .unwrap()
        }));
    }
    let (mut refunded, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Outcome::Done(_) => refunded += 1,
            Outcome::Failed(error) => {
                assert_reason(&tonic::Status::from(&error), Reason::RefundExceedsCharge);
                refused += 1;
            }
            other @ Outcome::Replay(_) => panic!("no key was reused: {other:?}"),
        }
    }
    assert_eq!((refunded, refused), (3, 7));
    let (status, amount_refunded, payment) = desk.stored(id).await;
    assert_eq!(
        (status.as_str(), amount_refunded),
        ("partially_refunded", 900)
    );
    let ledger = desk.simulator.ledger();
    let at_provider: i64 = ledger
        .refunds
        .iter()
        .filter(|refund| Some(&refund.payment_intent) == payment.as_ref())
        .map(|refund| refund.amount)
        .sum();
    assert_eq!(at_provider, 900);
    let mut conn = desk.app.database.connect().await;
    let statuses: Vec<String> = refunds::table
        .select(refunds::status)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(statuses, ["succeeded"; 3]);
    // The rest refunds it fully; then nothing is refundable.
    let scope = scope_of(&desk.agent, in_seconds(5));
    let rest = desk
        .billing
        .refund_charge(&KeyedWrite::unkeyed(&scope), id, None)
        .await
        .unwrap();
    let Outcome::Done(rest) = rest else {
        panic!("{rest:?}")
    };
    assert_eq!(rest.charge.status, ChargeStatus::Refunded);
    let error = desk
        .billing
        .refund_charge(&KeyedWrite::unkeyed(&scope), id, Some(usd(1)))
        .await
        .expect_err("a refunded charge cannot be refunded again");
    assert_reason(&tonic::Status::from(&error), Reason::ChargeNotRefundable);
}

#[tokio::test]
async fn customers_see_only_their_own_charges_and_cannot_charge() {
    let desk = Desk::open().await;
    let charge = paid_charge(&desk, 300).await;
    let customer = desk.customer_caller();
    assert_eq!(
        desk.billing
            .get(&scope_of(&customer, in_seconds(5)), charge.charge.id)
            .await
            .unwrap()
            .charge
            .id,
        charge.charge.id
    );
    let other = desk
        .app
        .add_user(&desk.app.admin, v1::UserRole::Customer)
        .await;
    let stranger = Caller {
        account_id: desk.app.account_id,
        principal: Principal::User {
            user_id: other.id,
            role: Role::Customer,
            session_id: SessionId::generate(),
        },
    };
    let hidden = desk
        .billing
        .get(&scope_of(&stranger, in_seconds(5)), charge.charge.id)
        .await
        .unwrap_err();
    assert_reason(&tonic::Status::from(&hidden), Reason::ChargeNotFound);
    let page_size = supportdesk::domain::PageSize::parse(10).unwrap();
    assert!(
        desk.billing
            .list(
                &scope_of(&stranger, in_seconds(5)),
                Default::default(),
                page_size,
                None
            )
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let scope = scope_of(&customer, in_seconds(5));
    let refused = desk
        .billing
        .create_charge(
            &KeyedWrite::unkeyed(&scope),
            desk.charge_of(100, "pm_card_visa"),
        )
        .await
        .unwrap_err();
    assert_reason(&tonic::Status::from(&refused), Reason::RoleRequired);
    assert_eq!(desk.charge_count().await, 1);
}

// Through the API: the wire, Envoy's REST mapping and the deployment without billing.

fn charge_json(customer: &TestUser, card: &str) -> serde_json::Value {
    serde_json::json!({
        "customerId": customer.id.to_string(),
        "amount": {"amountMinor": "1250", "currencyCode": "EUR"},
        "paymentMethod": card,
    })
}

#[tokio::test]
async fn a_decline_over_rest_is_402_with_its_decline_code_and_so_is_its_replay() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let envoy = crate::support::envoy::Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();
    let send = || {
        http.post(envoy.url("/v1/charges"))
            .bearer_auth(&app.admin.access_token)
            .header("idempotency-key", "declined-once")
            .json(&charge_json(
                &customer,
                "pm_card_chargeDeclinedInsufficientFunds",
            ))
            .send()
    };
    for attempt in ["first", "replay"] {
        let answer = send().await.unwrap();
        assert_eq!(
            answer.status(),
            reqwest::StatusCode::PAYMENT_REQUIRED,
            "{attempt}"
        );
        assert!(
            answer.headers().get("x-http-status").is_none(),
            "the marker leaked"
        );
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["code"], 9, "{attempt}: {body}");
        assert_json_reason(&body, Reason::CardDeclined);
        let info = body["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|detail| detail["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
            .cloned()
            .unwrap();
        assert_eq!(info["metadata"]["decline_code"], "insufficient_funds");
    }
    // One payment attempt at the provider, one FAILED charge in PostgreSQL.
    let listed = app
        .billing
        .clone()
        .list_charges(app.as_admin(v1::ListChargesRequest {
            status: v1::ChargeStatus::Failed.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .charges;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].decline_code, "insufficient_funds");
    assert_eq!(
        app.simulator
            .payment_intent_count_for_charge_id(&listed[0].id),
        1
    );
}

#[tokio::test]
async fn a_charge_and_its_refund_go_through_the_api_in_integer_minor_units() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let request = with_key(
        app.as_admin(charge_request(&customer.id.to_string(), 1_999, "JPY")),
        "pay-once",
    );
    let charge = app.billing.clone().create_charge(request).await.unwrap();
    assert_eq!(
        charge.metadata().get("location").unwrap().to_str().unwrap(),
        format!("/v1/charges/{}", charge.get_ref().id)
    );
    let charge = charge.into_inner();
    assert_eq!(charge.status, i32::from(v1::ChargeStatus::Succeeded));
    assert!(charge.provider_payment_id.starts_with("pi_"));
    let refunded = app
        .billing
        .clone()
        .refund_charge(crate::support::keyed(app.as_admin(
            v1::RefundChargeRequest {
                id: charge.id.clone(),
                amount: Some(v1::Money {
                    amount_minor: 999,
                    currency_code: "JPY".to_owned(),
                }),
            },
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        refunded.status,
        i32::from(v1::ChargeStatus::PartiallyRefunded)
    );
    assert_eq!(refunded.amount_refunded.unwrap().amount_minor, 999);
    let seen = app
        .billing
        .clone()
        .get_charge(customer.request(v1::GetChargeRequest {
            id: charge.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        seen.amount_refunded,
        Some(v1::Money {
            amount_minor: 999,
            currency_code: "JPY".to_owned()
        })
    );
    let ledger = app.simulator.ledger();
    assert_eq!(
        ledger
            .refunds
            .iter()
            .map(|refund| refund.amount)
            .sum::<i64>(),
        999
    );
}

#[tokio::test]
async fn without_a_payment_provider_billing_answers_not_configured() {
    let app = TestApp::spawn_with(|settings| settings.payment_provider = None).await;
    let status = app
        .billing
        .clone()
        .list_charges(app.as_admin(v1::ListChargesRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_reason(&status, Reason::BillingNotConfigured);
}

#[tokio::test]
async fn an_open_breaker_takes_only_billing_out_of_health_until_it_closes() {
    let app = TestApp::spawn_with(|settings| {
        let provider = settings.payment_provider.as_mut().unwrap();
        provider.breaker_failure_threshold = 1;
        provider.breaker_cool_down = Duration::from_millis(1_500);
    })
    .await;
    let billing = "supportdesk.v1.BillingService";
    let tickets = "supportdesk.v1.TicketService";
    app.wait_for_health("Serving", PATIENCE).await;
    assert_eq!(app.health_of(billing).await, "Serving");
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let outage = app
        .simulator
        .add_fault(FaultRule::always(
            Endpoint::CreatePaymentIntent,
            FaultAction::ServerError { status: 503 },
        ))
        .unwrap();
    let client = app.billing.clone();
    let charge = |key: &str| {
        let mut client = client.clone();
        let request = with_key(
            app.as_admin(charge_request(&customer.id.to_string(), 100, "USD")),
            key,
        );
        async move { client.create_charge(request).await }
    };
    let status = charge("during-the-outage").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_reason(&status, Reason::PaymentProviderUnavailable);
    crate::support::wait_until("BillingService NOT_SERVING", PATIENCE, || async {
        app.health_of(billing).await == "NotServing"
    })
    .await;
    assert_eq!(app.health_of(tickets).await, "Serving");
    assert_eq!(app.health_of("").await, "Serving");

    // The provider recovers; after the cool-down the retry with the same key is the probe that
    // closes the breaker, and finishes the charge left pending.
    app.simulator.remove_fault(outage.id);
    // Until the cool-down ends the breaker refuses the retry without calling the provider; the
    // first retry after it is the probe.
    let give_up = Instant::now() + Duration::from_secs(30);
    let paid = loop {
        match charge("during-the-outage").await {
            Ok(paid) => break paid.into_inner(),
            Err(status) => {
                assert_reason(&status, Reason::PaymentProviderUnavailable);
                assert!(
                    Instant::now() < give_up,
                    "the breaker never let a probe through"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(paid.status, i32::from(v1::ChargeStatus::Succeeded));
    assert_eq!(
        app.simulator.payment_intent_count_for_charge_id(&paid.id),
        1
    );
    crate::support::wait_until("BillingService SERVING", PATIENCE, || async {
        app.health_of(billing).await == "Serving"
    })
    .await;
}

#[tokio::test]
async fn an_unconfigured_billing_service_is_not_serving_while_the_rest_is() {
    let app = TestApp::spawn_with(|settings| settings.payment_provider = None).await;
    app.wait_for_health("Serving", PATIENCE).await;
    assert_eq!(
        app.health_of("supportdesk.v1.BillingService").await,
        "NotServing"
    );
    assert_eq!(
        app.health_of("supportdesk.v1.TicketService").await,
        "Serving"
    );
}

#[tokio::test]
async fn fifty_identical_create_charge_calls_with_one_key_through_two_servers_charge_once() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let (second, _server) = crate::support::second_instance(&app.settings).await;
    let clients = [
        app.billing.clone(),
        supportdesk::wire::proto::v1::billing_service_client::BillingServiceClient::new(second),
    ];
    let mut calls = Vec::new();
    for attempt in 0..50 {
        let mut client = clients[attempt % 2].clone();
        let token = app.admin.access_token.clone();
        let customer_id = customer.id.to_string();
        calls.push(tokio::spawn(async move {
            for _ in 0..200 {
                let request = with_key(
                    crate::support::with_token(&token, charge_request(&customer_id, 4_200, "GBP")),
                    "fifty-as-one",
                );
                match client.create_charge(request).await {
                    Ok(charge) => return charge.into_inner(),
                    Err(status) => {
                        assert_reason(&status, Reason::IdempotencyKeyInUse);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            panic!("never answered");
        }));
    }
    let mut answers = BTreeSet::new();
    for call in calls {
        let charge = call.await.unwrap();
        answers.insert((charge.id, charge.status, charge.provider_payment_id));
    }
    assert_eq!(answers.len(), 1, "the answers disagree: {answers:?}");
    let (id, status, _) = answers.into_iter().next().unwrap();
    assert_eq!(status, i32::from(v1::ChargeStatus::Succeeded));
    assert_eq!(app.simulator.payment_intent_count_for_charge_id(&id), 1);
    assert_eq!(app.simulator.ledger().payment_intents.len(), 1);
    let mut conn = app.database.connect().await;
    let rows: i64 = charges::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(rows, 1);
}

/// Four paid charges of `customer`, created (as far as the table says) on 2026-03-01, -02, -03
/// and -04 at noon UTC; their ids in that order.
async fn charges_on_four_days(app: &TestApp, customer: &TestUser) -> Vec<String> {
    let mut ids = Vec::new();
    for day in 1..=4 {
        let charge = app
            .billing
            .clone()
            .create_charge(crate::support::keyed(app.as_admin(charge_request(
                &customer.id.to_string(),
                100 * day,
                "USD",
            ))))
            .await
            .expect("the charge is made")
            .into_inner();
        let created_at = march_2026(day as u32, 12);
        let mut conn = app.database.connect().await;
        diesel::update(
            charges::table.filter(charges::id.eq(charge.id.parse::<uuid::Uuid>().unwrap())),
        )
        .set(charges::created_at.eq(created_at))
        .execute(&mut conn)
        .await
        .unwrap();
        ids.push(charge.id);
    }
    ids
}

fn march_2026(day: u32, hour: u32) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(2026, 3, day, hour, 0, 0)
        .unwrap()
}

fn wire_time(at: chrono::DateTime<chrono::Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    })
}

/// ListCharges as the admin.
async fn list_charges(
    app: &TestApp,
    request: v1::ListChargesRequest,
) -> Result<v1::ListChargesResponse, tonic::Status> {
    app.billing
        .clone()
        .list_charges(app.as_admin(request))
        .await
        .map(tonic::Response::into_inner)
}

/// A ListCharges request for the charges created in [after, before); a missing bound is open.
fn created_between(
    after: Option<chrono::DateTime<chrono::Utc>>,
    before: Option<chrono::DateTime<chrono::Utc>>,
) -> v1::ListChargesRequest {
    v1::ListChargesRequest {
        created_after: after.and_then(wire_time),
        created_before: before.and_then(wire_time),
        ..Default::default()
    }
}

/// The ids of the charges on one page, in the order listed.
fn ids_of(page: v1::ListChargesResponse) -> Vec<String> {
    page.charges.into_iter().map(|charge| charge.id).collect()
}

/// The ids of the charges created in [after, before), newest first.
async fn ids_created_between(
    app: &TestApp,
    after: Option<chrono::DateTime<chrono::Utc>>,
    before: Option<chrono::DateTime<chrono::Utc>>,
) -> Vec<String> {
    ids_of(
        list_charges(app, created_between(after, before))
            .await
            .expect("the range lists"),
    )
}

#[tokio::test]
async fn list_charges_by_created_range_returns_exactly_the_charges_inside_it() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let ids = charges_on_four_days(&app, &customer).await;
    // [after, before): the bound at noon on the 2nd includes that charge, the one at noon on
    // the 4th excludes that one. Newest first.
    let inside = ids_created_between(&app, Some(march_2026(2, 12)), Some(march_2026(4, 12))).await;
    assert_eq!(inside, vec![ids[2].clone(), ids[1].clone()]);
    // Either bound alone.
    let from_the_third = ids_created_between(&app, Some(march_2026(3, 0)), None).await;
    assert_eq!(from_the_third, vec![ids[3].clone(), ids[2].clone()]);
    let before_the_second = ids_created_between(&app, None, Some(march_2026(2, 12))).await;
    assert_eq!(before_the_second, vec![ids[0].clone()]);
    // Paging within a range stays within it.
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = list_charges(
            &app,
            v1::ListChargesRequest {
                page_size: 1,
                page_token: page_token.clone(),
                ..created_between(Some(march_2026(1, 12)), Some(march_2026(4, 0)))
            },
        )
        .await
        .unwrap();
        page_token = page.next_page_token.clone();
        pages.extend(ids_of(page));
        if page_token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]);
}

/// ListCharges refused as an invalid argument: the fields the refusal names.
async fn fields_refused(app: &TestApp, request: v1::ListChargesRequest) -> Vec<String> {
    let refused = list_charges(app, request).await.expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    violated_fields(&refused)
}

fn at_unix_seconds(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

#[tokio::test]
async fn list_charges_refuses_a_time_out_of_range_and_a_page_token_of_another_range() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    charges_on_four_days(&app, &customer).await;
    // Year 10000, and a time before year 1: each names its field.
    let year_10000 = v1::ListChargesRequest {
        created_before: at_unix_seconds(253_402_300_800),
        ..Default::default()
    };
    assert_eq!(
        fields_refused(&app, year_10000).await,
        vec!["created_before"]
    );
    let before_year_1 = v1::ListChargesRequest {
        created_after: at_unix_seconds(-62_135_596_801),
        ..Default::default()
    };
    assert_eq!(
        fields_refused(&app, before_year_1).await,
        vec!["created_after"]
    );
    // A token of one range is not accepted for another (nor for no range).
    let first = list_charges(
        &app,
        v1::ListChargesRequest {
            page_size: 1,
            ..created_between(Some(march_2026(1, 0)), Some(march_2026(5, 0)))
        },
    )
    .await
    .unwrap();
    assert!(!first.next_page_token.is_empty());
    let next_page_of_first = |after: Option<_>, before: Option<_>| v1::ListChargesRequest {
        page_size: 1,
        page_token: first.next_page_token.clone(),
        ..created_between(after, before)
    };
    for (after, before) in [
        (march_2026(1, 0), march_2026(4, 0)),
        (march_2026(2, 0), march_2026(5, 0)),
    ] {
        assert_eq!(
            fields_refused(&app, next_page_of_first(Some(after), Some(before))).await,
            vec!["page_token"]
        );
    }
    assert_eq!(
        fields_refused(&app, next_page_of_first(None, None)).await,
        vec!["page_token"]
    );
}
