//! The payment provider client against the real payment simulator, in-process: every outcome is
//! checked in the simulator's ledger (what the provider created) and its request log (what we
//! sent), so a retry that would charge twice, or a retry that should not have happened, shows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use payment_simulator::{
    ApiRequest, Endpoint, FaultAction, FaultRule, Simulator, SimulatorConfig, SimulatorHandle,
};
use secrecy::SecretString;
use supportdesk::configuration::PaymentProviderSettings;
use supportdesk::providers::payments::{
    BillingReference, BreakerState, CreatePayment, CreateRefund, Payment, PaymentProvider,
    PaymentStatus, ProviderError, Refund, RefundStatus, StripeHttpProvider,
};
use tokio::time::Instant;
use uuid::Uuid;

use crate::support::{in_seconds, usd};

struct Harness {
    simulator: SimulatorHandle,
    provider: Arc<StripeHttpProvider>,
}

/// A simulator and a client whose knobs suit tests: short backoffs, a generous budget and a
/// breaker that does not open unless a test asks it to.
async fn harness_with(adjust: impl FnOnce(&mut PaymentProviderSettings)) -> Harness {
    let simulator = Simulator::start(SimulatorConfig::default())
        .await
        .expect("the simulator starts");
    let mut settings = PaymentProviderSettings {
        url: simulator.base_url().parse().unwrap(),
        secret_key: SecretString::from(simulator.api_key().to_owned()),
        timeout: Duration::from_millis(1_000),
        max_attempts: 4,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        retry_budget_percent: 100,
        retry_budget_min_per_second: 100,
        breaker_failure_threshold: 100,
        breaker_cool_down: Duration::from_secs(1),
        max_concurrency: 16,
        key_retention: Duration::from_secs(24 * 60 * 60),
        ca_file: None,
    };
    adjust(&mut settings);
    let provider = Arc::new(StripeHttpProvider::new(&settings).expect("the client builds"));
    Harness {
        simulator,
        provider,
    }
}

async fn harness() -> Harness {
    harness_with(|_| {}).await
}

fn new_reference() -> BillingReference {
    BillingReference::parse(&Uuid::now_v7().to_string()).unwrap()
}

fn payment_with_card(card: &str) -> CreatePayment {
    let metadata = BTreeMap::from([("account_id".to_owned(), "acct-1".to_owned())]);
    CreatePayment::new(new_reference(), usd(2_000), "cus_1", card, metadata).unwrap()
}

impl Harness {
    /// The simulator answers the next call to `endpoint` with `action`, then behaves again.
    fn fault_once(&self, endpoint: Endpoint, action: FaultAction) {
        self.simulator
            .add_fault(FaultRule::new(endpoint, action, 1))
            .unwrap();
    }

    /// The simulator answers every call to `endpoint` with `action` until the faults are cleared.
    fn fault_always(&self, endpoint: Endpoint, action: FaultAction) {
        self.simulator
            .add_fault(FaultRule::always(endpoint, action))
            .unwrap();
    }

    /// CreatePaymentIntent through the client under test, retries and all.
    async fn pay(
        &self,
        request: &CreatePayment,
        deadline: Instant,
    ) -> Result<Payment, ProviderError> {
        self.provider.create_payment(request, deadline).await
    }

    /// CreateRefund through the client under test, retries and all.
    async fn refund(
        &self,
        request: &CreateRefund,
        deadline: Instant,
    ) -> Result<Refund, ProviderError> {
        self.provider.create_refund(request, deadline).await
    }

    /// How many payment intents the provider holds for the charge `request` is for.
    fn payment_intents_for(&self, request: &CreatePayment) -> usize {
        self.simulator
            .payment_intent_count_for_charge_id(request.charge_id().as_str())
    }

    /// The requests that carried `key`, in the order the simulator logged them.
    fn requests_with_key(&self, key: &str) -> Vec<ApiRequest> {
        self.simulator
            .requests()
            .into_iter()
            .filter(|request| request.idempotency_key.as_deref() == Some(key))
            .collect()
    }

    /// Polls the request log until `count` requests carried `key` (a request whose connection
    /// hangs is logged only when the connection closes).
    async fn wait_for_requests_with_key(&self, key: &str, count: usize) -> Vec<ApiRequest> {
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            let requests = self.requests_with_key(key);
            if requests.len() >= count || Instant::now() > give_up {
                return requests;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn succeeded_payment(&self) -> (CreatePayment, String) {
        let request = payment_with_card("pm_card_visa");
        let payment = self
            .pay(&request, in_seconds(5))
            .await
            .expect("the payment succeeds");
        (request, payment.id)
    }
}

#[tokio::test]
async fn a_visa_payment_succeeds_once_with_our_charge_id_and_a_key_derived_from_it() {
    let harness = harness().await;
    let request = payment_with_card("pm_card_visa");

    let payment = harness
        .pay(&request, in_seconds(5))
        .await
        .expect("the payment succeeds");

    assert_eq!(payment.status, PaymentStatus::Succeeded);
    assert_eq!(payment.amount, usd(2_000));
    assert_eq!(
        payment.charge_id.as_deref(),
        Some(request.charge_id().as_str())
    );
    let charge_id = request.charge_id().as_str();
    assert_eq!(harness.payment_intents_for(&request), 1);
    let sent = harness.requests_with_key(&request.idempotency_key());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].param("amount"), Some("2000"));
    assert_eq!(sent[0].param("currency"), Some("usd"));
    assert_eq!(sent[0].param("confirm"), Some("true"));
    assert_eq!(sent[0].param("metadata[charge_id]"), Some(charge_id));
    assert_eq!(sent[0].param("metadata[account_id]"), Some("acct-1"));

    let read_back = harness
        .provider
        .get_payment(&payment.id, in_seconds(5))
        .await
        .expect("the payment reads back");
    assert_eq!(read_back.status, PaymentStatus::Succeeded);
    assert_eq!(read_back.amount_refunded, Some(usd(0)));
}

#[tokio::test]
async fn each_declining_test_card_is_declined_with_its_code_and_never_retried() {
    let harness = harness().await;
    for (card, code, decline_code) in [
        (
            "pm_card_chargeDeclined",
            "card_declined",
            Some("generic_decline"),
        ),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            "card_declined",
            Some("insufficient_funds"),
        ),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", None),
    ] {
        let request = payment_with_card(card);

        let error = harness
            .pay(&request, in_seconds(5))
            .await
            .expect_err("declined");

        let ProviderError::Declined {
            code: got_code,
            decline_code: got_decline_code,
            payment_id,
            ..
        } = error
        else {
            panic!("{card}: expected a decline, got {error:?}");
        };
        assert_eq!(got_code, code, "{card}");
        assert_eq!(got_decline_code.as_deref(), decline_code, "{card}");
        let ledger = harness
            .simulator
            .ledger_for_metadata("charge_id", request.charge_id().as_str());
        assert_eq!(ledger.payment_intents.len(), 1, "{card}");
        assert_eq!(
            payment_id.as_deref(),
            Some(ledger.payment_intents[0].id.as_str())
        );
        assert_eq!(
            harness.requests_with_key(&request.idempotency_key()).len(),
            1,
            "{card}: a decline is not retried"
        );
    }
}

#[tokio::test]
async fn a_timeout_after_the_provider_charged_is_resolved_without_a_second_charge() {
    let harness = harness_with(|settings| settings.timeout = Duration::from_millis(300)).await;
    harness.fault_once(
        Endpoint::CreatePaymentIntent,
        FaultAction::ExecuteThenTimeout { hang_millis: 1_500 },
    );
    let request = payment_with_card("pm_card_visa");

    let payment = harness
        .pay(&request, in_seconds(5))
        .await
        .expect("the retry with the same key finds the charge");

    assert_eq!(payment.status, PaymentStatus::Succeeded);
    assert_eq!(harness.payment_intents_for(&request), 1);
    let sent = harness
        .wait_for_requests_with_key(&request.idempotency_key(), 2)
        .await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    let answered: Vec<_> = sent.iter().map(|r| (r.status, r.replayed)).collect();
    assert!(
        answered.contains(&(None, false)) && answered.contains(&(Some(200), true)),
        "the first attempt got no answer, the retry a replay: {answered:?}"
    );
    assert_eq!(
        sent[0].params, sent[1].params,
        "the retry is the same request"
    );
}

#[tokio::test]
async fn a_lost_answer_without_time_to_retry_is_an_unknown_outcome_and_the_payment_is_found_by_charge_id()
 {
    let harness = harness_with(|settings| {
        settings.timeout = Duration::from_millis(300);
        settings.max_attempts = 1;
    })
    .await;
    harness.fault_once(
        Endpoint::CreatePaymentIntent,
        FaultAction::ExecuteThenTimeout { hang_millis: 0 },
    );
    let request = payment_with_card("pm_card_visa");

    let error = harness
        .pay(&request, in_seconds(5))
        .await
        .expect_err("no answer");

    assert!(error.outcome_unknown(), "{error:?}");
    let found = harness
        .provider
        .find_payments_by_charge_id(request.charge_id(), in_seconds(5))
        .await
        .expect("the search answers");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].status, PaymentStatus::Succeeded);
    assert_eq!(found[0].amount, usd(2_000));
    let ledger = harness
        .simulator
        .ledger_for_metadata("charge_id", request.charge_id().as_str());
    assert_eq!(ledger.payment_intents.len(), 1);
    assert_eq!(found[0].id, ledger.payment_intents[0].id);
}

#[tokio::test]
async fn a_500_after_the_provider_charged_stays_unknown_through_its_replay_and_is_found_by_charge_id()
 {
    let harness = harness().await;
    harness.fault_once(
        Endpoint::CreatePaymentIntent,
        FaultAction::ExecuteThenServerError { status: 500 },
    );
    let request = payment_with_card("pm_card_visa");

    let error = harness
        .pay(&request, in_seconds(5))
        .await
        .expect_err("the saved 500 is replayed");

    assert!(
        error.outcome_unknown(),
        "a 500 on a POST is not a failure: {error:?}"
    );
    let sent = harness.requests_with_key(&request.idempotency_key());
    let answered: Vec<_> = sent.iter().map(|r| (r.status, r.replayed)).collect();
    assert_eq!(
        answered,
        [(Some(500), false), (Some(500), true)],
        "one retry, and no more once the 500 is known to be the saved answer"
    );
    let found = harness
        .provider
        .find_payments_by_charge_id(request.charge_id(), in_seconds(5))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].status, PaymentStatus::Succeeded);
    assert_eq!(harness.payment_intents_for(&request), 1);
}

#[tokio::test]
async fn a_503_a_reset_and_a_429_are_retried_with_the_same_key_honouring_retry_after() {
    let harness = harness_with(|settings| settings.max_attempts = 5).await;
    for action in [
        FaultAction::ServerError { status: 503 },
        FaultAction::ResetConnection,
        FaultAction::RateLimit {
            retry_after_secs: 1,
        },
    ] {
        harness.fault_once(Endpoint::CreatePaymentIntent, action);
    }
    let request = payment_with_card("pm_card_visa");

    let payment = harness
        .pay(&request, in_seconds(10))
        .await
        .expect("the fourth attempt succeeds");

    assert_eq!(payment.status, PaymentStatus::Succeeded);
    assert_eq!(harness.payment_intents_for(&request), 1);
    let sent = harness.requests_with_key(&request.idempotency_key());
    let statuses: Vec<_> = sent.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(503), None, Some(429), Some(200)]);
    assert!(sent.iter().all(|r| r.params == sent[0].params));
    let waited = sent[3].received_at_unix_ms - sent[2].received_at_unix_ms;
    assert!(waited >= 1_000, "Retry-After: 1 was honoured ({waited} ms)");
}

/// A client for a provider that never recovers: up to 1,000 attempts, 0-40 ms apart, so only the
/// caller's deadline can end the retries within seconds.
async fn harness_retrying_for_ever() -> Harness {
    let harness = harness_with(|settings| {
        settings.max_attempts = 1_000;
        settings.backoff_base = Duration::from_millis(40);
        settings.backoff_max = Duration::from_millis(40);
    })
    .await;
    harness.fault_always(Endpoint::Any, FaultAction::ServerError { status: 503 });
    harness
}

/// Far beyond the one-second deadlines below, far below the 1,000 attempts' 20 s: a loaded
/// machine adds milliseconds to the stop, not seconds.
const STOPPED_BY_THE_DEADLINE: Duration = Duration::from_secs(8);

#[tokio::test]
async fn retries_stop_at_the_callers_deadline_and_say_the_provider_was_unavailable() {
    let harness = harness_retrying_for_ever().await;
    let started = Instant::now();

    let error = harness
        .provider
        .find_payments_by_charge_id(&new_reference(), started + Duration::from_secs(1))
        .await
        .expect_err("the provider never recovers");

    // Every attempt was answered 503, and a read changes nothing: the error is the provider's,
    // whether the deadline came during a backoff or cut the last attempt short.
    assert!(
        matches!(error, ProviderError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(started.elapsed() < STOPPED_BY_THE_DEADLINE);
    let attempts = harness.simulator.requests().len();
    assert!((2..1_000).contains(&attempts), "{attempts} attempts");
}

#[tokio::test]
async fn a_payment_retried_until_the_deadline_is_never_reported_as_not_sent() {
    let harness = harness_retrying_for_ever().await;
    let request = payment_with_card("pm_card_visa");
    let started = Instant::now();

    let error = harness
        .pay(&request, started + Duration::from_secs(1))
        .await
        .expect_err("the provider never recovers");

    // Attempts were sent, so `DeadlineExceeded` ("nothing was sent") would be a lie. The error
    // is the last attempt's: Unavailable after a 503, or UnknownOutcome when the deadline cut an
    // attempt short after it was sent (docs/billing.md, "Errors").
    assert!(
        matches!(
            error,
            ProviderError::Unavailable { .. } | ProviderError::UnknownOutcome { .. }
        ),
        "{error:?}"
    );
    assert!(started.elapsed() < STOPPED_BY_THE_DEADLINE);
    let attempts = harness.requests_with_key(&request.idempotency_key()).len();
    assert!((2..1_000).contains(&attempts), "{attempts} attempts");
    assert_eq!(harness.payment_intents_for(&request), 0);
}

#[tokio::test]
async fn a_deadline_already_passed_sends_nothing_and_says_so() {
    let harness = harness().await;
    let request = payment_with_card("pm_card_visa");

    let error = harness
        .pay(&request, Instant::now())
        .await
        .expect_err("no time left");

    assert_eq!(error, ProviderError::DeadlineExceeded);
    assert!(harness.simulator.requests().is_empty());
}

#[tokio::test]
async fn a_retry_after_longer_than_the_deadline_allows_is_not_waited_for() {
    let harness = harness().await;
    harness.fault_once(
        Endpoint::CreatePaymentIntent,
        FaultAction::RateLimit {
            retry_after_secs: 30,
        },
    );
    let request = payment_with_card("pm_card_visa");
    let started = Instant::now();

    let error = harness
        .pay(&request, in_seconds(25))
        .await
        .expect_err("rate limited");

    assert_eq!(
        error,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(30))
        }
    );
    // Waiting would have taken the 25 s left, or the 30 s asked for.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        harness.requests_with_key(&request.idempotency_key()).len(),
        1
    );
    assert_eq!(harness.simulator.ledger().payment_intents.len(), 0);
}

#[tokio::test]
async fn retries_stop_when_the_retry_budget_is_spent() {
    // No floor, 10 %: each call earns a tenth of a retry, so the tenth call is the first that
    // may retry, once, though five attempts are allowed. (The window is 10 s; the ten calls take
    // milliseconds, seconds on a loaded machine.)
    let harness = harness_with(|settings| {
        settings.max_attempts = 5;
        settings.retry_budget_percent = 10;
        settings.retry_budget_min_per_second = 0;
    })
    .await;
    harness.fault_always(
        Endpoint::CreatePaymentIntent,
        FaultAction::ServerError { status: 503 },
    );
    let mut attempts = Vec::new();
    for _ in 0..10 {
        let request = payment_with_card("pm_card_visa");
        let error = harness
            .pay(&request, in_seconds(5))
            .await
            .expect_err("down");
        assert!(matches!(error, ProviderError::Unavailable { .. }));
        attempts.push(harness.requests_with_key(&request.idempotency_key()).len());
    }

    assert_eq!(attempts, [1, 1, 1, 1, 1, 1, 1, 1, 1, 2]);
}

#[tokio::test]
async fn the_budgets_floor_lets_a_lone_failure_retry_on_a_quiet_service() {
    let harness = harness_with(|settings| {
        settings.max_attempts = 3;
        settings.retry_budget_percent = 0;
        settings.retry_budget_min_per_second = 1;
    })
    .await;
    harness.fault_once(
        Endpoint::CreatePaymentIntent,
        FaultAction::ServerError { status: 503 },
    );
    let request = payment_with_card("pm_card_visa");

    let payment = harness
        .pay(&request, in_seconds(5))
        .await
        .expect("the retry succeeds");

    assert_eq!(payment.status, PaymentStatus::Succeeded);
    assert_eq!(
        harness.requests_with_key(&request.idempotency_key()).len(),
        2
    );
}

#[tokio::test]
async fn the_breaker_opens_after_the_threshold_fails_fast_while_open_and_a_successful_probe_closes_it()
 {
    let harness = harness_with(|settings| {
        settings.max_attempts = 1;
        settings.breaker_failure_threshold = 3;
        // Long enough that the calls made while it is open (milliseconds apart, even on a loaded
        // machine) all find it open.
        settings.breaker_cool_down = Duration::from_secs(2);
    })
    .await;
    let mut changes = harness.provider.breaker().subscribe();
    harness.fault_always(Endpoint::Any, FaultAction::ServerError { status: 503 });
    for _ in 0..3 {
        assert_eq!(harness.provider.breaker().state(), BreakerState::Closed);
        let error = harness
            .pay(&payment_with_card("pm_card_visa"), in_seconds(5))
            .await
            .expect_err("down");
        assert!(matches!(error, ProviderError::Unavailable { .. }));
    }
    assert_eq!(harness.provider.breaker().state(), BreakerState::Open);
    assert_eq!(*changes.borrow_and_update(), BreakerState::Open);
    let requests_before = harness.simulator.requests().len();

    let error = harness
        .pay(&payment_with_card("pm_card_visa"), in_seconds(5))
        .await
        .expect_err("open");
    let ProviderError::CircuitOpen { retry_after } = error else {
        panic!("expected CircuitOpen, got {error:?}");
    };
    assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(2));
    let lookup = harness
        .provider
        .find_payments_by_charge_id(&new_reference(), in_seconds(5))
        .await;
    assert!(matches!(lookup, Err(ProviderError::CircuitOpen { .. })));
    assert_eq!(
        harness.simulator.requests().len(),
        requests_before,
        // Nor did either call wait for the cool-down: it would then have gone through as the probe.
        "nothing reached the provider while open"
    );

    harness.simulator.clear_faults();
    let give_up = Instant::now() + Duration::from_secs(30);
    while harness.provider.breaker().state() != BreakerState::HalfOpen {
        assert!(Instant::now() < give_up, "the breaker never half-opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let probe = payment_with_card("pm_card_visa");
    harness
        .pay(&probe, in_seconds(5))
        .await
        .expect("the probe goes through");

    assert_eq!(harness.provider.breaker().state(), BreakerState::Closed);
    assert_eq!(*changes.borrow_and_update(), BreakerState::Closed);
    assert_eq!(harness.simulator.requests().len(), requests_before + 1);
}

#[tokio::test]
async fn declines_and_invalid_requests_do_not_open_the_breaker() {
    let harness = harness_with(|settings| settings.breaker_failure_threshold = 2).await;
    for _ in 0..3 {
        let error = harness
            .pay(&payment_with_card("pm_card_chargeDeclined"), in_seconds(5))
            .await
            .expect_err("declined");
        assert!(matches!(error, ProviderError::Declined { .. }));
        let refund = CreateRefund::new(new_reference(), "pi_missing", None).unwrap();
        let error = harness
            .refund(&refund, in_seconds(5))
            .await
            .expect_err("no such payment");
        assert!(
            matches!(&error, ProviderError::InvalidRequest { status: 400, code, .. } if code == "resource_missing"),
            "{error:?}"
        );
    }
    assert_eq!(harness.provider.breaker().state(), BreakerState::Closed);
}

#[tokio::test]
async fn ten_concurrent_partial_refunds_only_refund_what_fits_in_the_payment() {
    let harness = harness().await;
    let (_, payment_id) = harness.succeeded_payment().await;
    let provider: Arc<dyn PaymentProvider> = harness.provider.clone();
    let mut refunds = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let provider = Arc::clone(&provider);
        let request =
            CreateRefund::new(new_reference(), payment_id.clone(), Some(usd(600))).unwrap();
        refunds.spawn(async move { provider.create_refund(&request, in_seconds(5)).await });
    }

    let outcomes = refunds.join_all().await;

    let succeeded: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(succeeded.len(), 3, "3 × 600 fit in 2000, a fourth does not");
    assert!(
        succeeded
            .iter()
            .all(|refund| refund.status == RefundStatus::Succeeded
                && refund.amount == usd(600)
                && refund.payment_id == payment_id)
    );
    for error in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert!(
            matches!(
                error,
                ProviderError::InvalidRequest { status: 400, code, param: Some(param), .. }
                    if code == "amount_too_large" && param == "amount"
            ),
            "{error:?}"
        );
    }
    let ledger = harness.simulator.ledger();
    assert_eq!(ledger.refunds.len(), 3);
    assert_eq!(ledger.refunds.iter().map(|r| r.amount).sum::<i64>(), 1_800);
    let payment = harness
        .provider
        .get_payment(&payment_id, in_seconds(5))
        .await
        .unwrap();
    assert_eq!(payment.amount_refunded, Some(usd(1_800)));
}

#[tokio::test]
async fn a_refund_whose_answer_was_lost_is_replayed_not_repeated() {
    let harness = harness_with(|settings| settings.timeout = Duration::from_millis(300)).await;
    let (_, payment_id) = harness.succeeded_payment().await;
    harness.fault_once(
        Endpoint::CreateRefund,
        FaultAction::ExecuteThenTimeout { hang_millis: 0 },
    );
    let request = CreateRefund::new(new_reference(), payment_id, None).unwrap();

    let refund = harness
        .refund(&request, in_seconds(5))
        .await
        .expect("the retry replays the refund");

    assert_eq!(refund.amount, usd(2_000), "a full refund");
    let ledger = harness.simulator.ledger();
    assert_eq!(ledger.refunds.len(), 1);
    assert_eq!(ledger.refunds[0].id, refund.id);
    assert_eq!(
        harness.requests_with_key(&request.idempotency_key()).len(),
        2
    );
}

#[tokio::test]
async fn a_retry_while_the_first_attempt_still_runs_waits_for_it_instead_of_charging_again() {
    let harness = harness_with(|settings| {
        settings.timeout = Duration::from_millis(200);
        settings.max_attempts = 20;
        settings.backoff_base = Duration::from_millis(50);
        settings.backoff_max = Duration::from_millis(100);
    })
    .await;
    harness.fault_once(
        Endpoint::CreatePaymentIntent,
        FaultAction::Latency { millis: 700 },
    );
    let request = payment_with_card("pm_card_visa");

    let payment = harness
        .pay(&request, in_seconds(5))
        .await
        .expect("a later retry gets the first attempt's answer");

    assert_eq!(payment.status, PaymentStatus::Succeeded);
    assert_eq!(harness.payment_intents_for(&request), 1);
    let sent = harness
        .wait_for_requests_with_key(&request.idempotency_key(), 3)
        .await;
    let statuses: Vec<_> = sent.iter().map(|r| r.status).collect();
    assert!(
        statuses.contains(&Some(409)),
        "a retry met the running first attempt: {statuses:?}"
    );
    assert!(
        sent.iter().any(|r| r.status == Some(200) && r.replayed),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_provider_that_refuses_connections_is_unavailable_not_an_unknown_outcome() {
    let harness = harness_with(|_| {}).await;
    // A port that was just free: connecting is refused, so nothing can have been sent.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let settings = PaymentProviderSettings {
        url: format!("http://{address}").parse().unwrap(),
        secret_key: SecretString::from(harness.simulator.api_key().to_owned()),
        timeout: Duration::from_millis(500),
        max_attempts: 3,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        retry_budget_percent: 100,
        retry_budget_min_per_second: 10,
        breaker_failure_threshold: 2,
        breaker_cool_down: Duration::from_secs(60),
        max_concurrency: 16,
        key_retention: Duration::from_secs(24 * 60 * 60),
        ca_file: None,
    };
    let provider = StripeHttpProvider::new(&settings).unwrap();

    let error = provider
        .create_payment(&payment_with_card("pm_card_visa"), in_seconds(5))
        .await
        .expect_err("nobody listens");

    assert!(
        matches!(&error, ProviderError::CircuitOpen { .. }),
        "two refused attempts opened the breaker before the third: {error:?}"
    );
    assert_eq!(provider.breaker().state(), BreakerState::Open);
    let error = StripeHttpProvider::new(&PaymentProviderSettings {
        breaker_failure_threshold: 10,
        ..settings
    })
    .unwrap()
    .create_payment(&payment_with_card("pm_card_visa"), in_seconds(5))
    .await
    .expect_err("nobody listens");
    let ProviderError::Unavailable { detail } = &error else {
        panic!("a refused connection sent nothing, so it is not unknown: {error:?}");
    };
    assert!(detail.starts_with("cannot connect"), "{detail}");
}

/// A TLS endpoint on 127.0.0.1 in front of the simulator, serving a certificate for `localhost`
/// that a test CA made for this test signed: `https://` as a real provider serves it.
struct TlsFront {
    port: u16,
    /// The test CA's certificate, PEM.
    ca_pem: String,
    acceptor_task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

async fn tls_in_front_of(simulator: &SimulatorHandle) -> TlsFront {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "supportdesk test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![server.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend: url::Url = simulator.base_url().parse().unwrap();
    let backend = format!(
        "{}:{}",
        backend.host_str().unwrap(),
        backend.port_or_known_default().unwrap()
    );
    let acceptor_task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, backend) = (acceptor.clone(), backend.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    TlsFront {
        port,
        ca_pem: ca.pem(),
        acceptor_task,
    }
}

#[tokio::test]
async fn an_https_provider_is_paid_through_when_its_certificate_verifies_and_never_when_it_does_not()
 {
    let harness = harness().await;
    let front = tls_in_front_of(&harness.simulator).await;
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), &front.ca_pem).unwrap();
    let over_https = |ca_file: Option<std::path::PathBuf>| {
        StripeHttpProvider::new(&PaymentProviderSettings {
            url: format!("https://localhost:{}", front.port).parse().unwrap(),
            secret_key: SecretString::from(harness.simulator.api_key().to_owned()),
            timeout: Duration::from_secs(10),
            max_attempts: 1,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(10),
            retry_budget_percent: 100,
            retry_budget_min_per_second: 10,
            breaker_failure_threshold: 10,
            breaker_cool_down: Duration::from_secs(1),
            max_concurrency: 16,
            key_retention: Duration::from_secs(24 * 60 * 60),
            ca_file,
        })
        .expect("an https client")
    };

    let trusting_the_test_ca = over_https(Some(ca_file.path().to_owned()));
    let paid = payment_with_card("pm_card_visa");
    let payment = trusting_the_test_ca
        .create_payment(&paid, in_seconds(20))
        .await
        .expect("paid over https");
    assert_eq!(payment.status, PaymentStatus::Succeeded);
    assert_eq!(harness.payment_intents_for(&paid), 1);

    // Without the test CA the certificate chains to none of Mozilla's roots: the handshake
    // fails, so nothing was sent.
    let trusting_mozilla_only = over_https(None);
    let refused = payment_with_card("pm_card_visa");
    let error = trusting_mozilla_only
        .create_payment(&refused, in_seconds(20))
        .await
        .expect_err("the certificate does not verify");
    let ProviderError::Unavailable { detail } = &error else {
        panic!("a failed handshake sent nothing: {error:?}");
    };
    assert!(detail.contains("certificate"), "{detail}");
    assert!(
        harness
            .requests_with_key(&refused.idempotency_key())
            .is_empty()
    );
    assert_eq!(harness.payment_intents_for(&refused), 0);
}
