//! The webhook workers against real PostgreSQL and the real payment simulator: events are
//! stored in `webhook_events` as the receiving side stores them (the simulator's own event JSON,
//! inserted once per event id with `ON CONFLICT DO NOTHING`), and every claim is checked where it
//! lives: the event's row, the charge's row, its audit trail and disputes, against the
//! simulator's ledger.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Text};
use diesel_async::RunQueryDsl;
use payment_simulator::{
    DisputeRequest, Endpoint, Event, FaultAction, FaultRule, OutsideRefund, SettleOutcome,
    SimulatorHandle,
};
use supportdesk::configuration::WebhookWorkerSettings;
use supportdesk::db::schema::{charge_activities, charges, webhook_events};
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use uuid::Uuid;

use crate::support::{
    TestApp, TestDatabase, TestUser, assert_reason, charge_request, wait_until, with_key,
    with_metrics,
};

/// How long the workers may take for what a test waits on (a loaded machine included).
pub(crate) const PROCESSING: Duration = Duration::from_secs(30);

/// Workers that poll often, retry fast and give up after three attempts.
pub(crate) fn quick_workers(workers: u32) -> WebhookWorkerSettings {
    WebhookWorkerSettings {
        workers,
        lease: Duration::from_secs(5),
        max_attempts: 3,
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        poll_interval: Duration::from_millis(50),
    }
}

/// A webhook event's row, as the tests read it.
#[derive(Debug, Queryable)]
pub(crate) struct EventRow {
    pub(crate) state: String,
    pub(crate) attempts: i32,
    pub(crate) outcome: Option<String>,
    pub(crate) last_error: Option<String>,
    pub(crate) charge_id: Option<Uuid>,
}

/// An application whose events the tests store directly, with a customer to charge.
pub(crate) struct Queue {
    pub(crate) app: TestApp,
    customer: TestUser,
}

impl Queue {
    pub(crate) async fn open(workers: u32) -> Self {
        Self::open_with(quick_workers(workers), Duration::from_millis(300)).await
    }

    /// With these workers, and provider calls that may take up to `provider_timeout`.
    pub(crate) async fn open_with(
        workers: WebhookWorkerSettings,
        provider_timeout: Duration,
    ) -> Self {
        let app = TestApp::spawn_with(|settings| {
            with_metrics(settings);
            settings.webhook_workers = workers;
            if let Some(provider) = settings.payment_provider.as_mut() {
                provider.timeout = provider_timeout;
            }
            // The completer stays out of the way: what finishes a charge here is an event.
            settings.billing_completer_interval = Duration::from_secs(3600);
        })
        .await;
        let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
        Self { app, customer }
    }

    pub(crate) fn keyed_charge(
        &self,
        cents: i64,
        key: &str,
    ) -> tonic::Request<v1::CreateChargeRequest> {
        keyed_charge(&self.app.admin, &self.customer.id.to_string(), cents, key)
    }

    /// A charge paid through the API.
    pub(crate) async fn paid(&self, cents: i64) -> v1::Charge {
        self.app
            .billing
            .clone()
            .create_charge(self.keyed_charge(cents, &Uuid::now_v7().to_string()))
            .await
            .expect("the charge is paid")
            .into_inner()
    }

    /// The simulator's last event of `event_type` about `payment_id`.
    pub(crate) fn event(&self, event_type: &str, payment_id: &str) -> Event {
        last_event(&self.app.simulator.events(), event_type, payment_id)
    }

    /// Refunds `amount` of `payment_id` (the whole rest when `None`) from the provider's
    /// dashboard, outside the service, and returns the provider's `charge.refunded` event.
    pub(crate) fn refund_outside(&self, payment_id: &str, amount: Option<i64>) -> Event {
        refund_outside(&self.app.simulator, payment_id, amount)
    }

    /// A charge of `cents` under idempotency key `key` that the provider answers `processing`
    /// and settles with `outcome` `after_millis` later: the charge stays pending and the client
    /// hears PAYMENT_PROVIDER_UNAVAILABLE. Returns the payment's id and, once the provider has
    /// sent it, the event that settles it.
    pub(crate) async fn settling_later(
        &self,
        cents: i64,
        key: &str,
        after_millis: u64,
        outcome: SettleOutcome,
    ) -> (String, Event) {
        let settled_type = match outcome {
            SettleOutcome::Succeed => "payment_intent.succeeded",
            SettleOutcome::Fail => "payment_intent.payment_failed",
        };
        self.app
            .simulator
            .add_fault(FaultRule::new(
                Endpoint::CreatePaymentIntent,
                FaultAction::SettleLater {
                    after_millis,
                    outcome,
                },
                1,
            ))
            .unwrap();
        let refused = self
            .app
            .billing
            .clone()
            .create_charge(self.keyed_charge(cents, key))
            .await
            .expect_err("the outcome is not known yet");
        assert_reason(&refused, Reason::PaymentProviderUnavailable);
        let payment_id = self.app.simulator.ledger().payment_intents[0].id.clone();
        wait_until(
            &format!("the provider sends {settled_type}"),
            PROCESSING,
            || async {
                self.app
                    .simulator
                    .events()
                    .iter()
                    .any(|event| event.event_type == settled_type)
            },
        )
        .await;
        let settled = self.event(settled_type, &payment_id);
        (payment_id, settled)
    }

    pub(crate) async fn deliver(&self, event: &Event) {
        store(&self.app.database, &event.id, event).await;
    }

    pub(crate) async fn row(&self, event_id: &str) -> EventRow {
        event_row(&self.app.database, event_id).await
    }

    pub(crate) async fn processed(&self, event_id: &str) -> EventRow {
        wait_for_state(&self.app.database, event_id, "processed").await
    }

    pub(crate) async fn charge(&self, id: &str) -> (String, i64) {
        charge_state(&self.app.database, id).await
    }

    pub(crate) async fn trail(&self, id: &str) -> Vec<(String, Option<String>)> {
        audit_trail(&self.app.database, id).await
    }
}

/// A keyed CreateCharge of `cents` US cents from `customer_id`, paid with the test card that
/// always succeeds, made by `admin`.
pub(crate) fn keyed_charge(
    admin: &TestUser,
    customer_id: &str,
    cents: i64,
    key: &str,
) -> tonic::Request<v1::CreateChargeRequest> {
    with_key(
        admin.request(charge_request(customer_id, cents, "USD")),
        key,
    )
}

/// Refunds `amount` of `payment_id` (the whole rest when `None`) from the provider's dashboard,
/// outside the service, and returns the provider's `charge.refunded` event about it.
pub(crate) fn refund_outside(
    simulator: &SimulatorHandle,
    payment_id: &str,
    amount: Option<i64>,
) -> Event {
    simulator
        .refund_outside(
            payment_id,
            OutsideRefund {
                amount,
                reason: None,
            },
        )
        .expect("the dashboard refunds");
    last_event(&simulator.events(), "charge.refunded", payment_id)
}

pub(crate) fn last_event(events: &[Event], event_type: &str, payment_id: &str) -> Event {
    events
        .iter()
        .rev()
        .find(|event| {
            let object = &event.data.object;
            event.event_type == event_type
                && (object["id"] == payment_id || object["payment_intent"] == payment_id)
        })
        .unwrap_or_else(|| panic!("the simulator sent no {event_type} about {payment_id}"))
        .clone()
}

/// Stores `event` under `id` as the receiving side does: once per id, whatever the deliveries.
pub(crate) async fn store(database: &TestDatabase, id: &str, event: &Event) {
    let mut conn = database.connect().await;
    diesel::sql_query(
        "INSERT INTO webhook_events (id, event_type, payload, provider_created_at) \
         VALUES ($1, $2, $3, to_timestamp($4)) ON CONFLICT (id) DO NOTHING",
    )
    .bind::<Text, _>(id)
    .bind::<Text, _>(&event.event_type)
    .bind::<Binary, _>(serde_json::to_vec(event).unwrap())
    .bind::<BigInt, _>(event.created)
    .execute(&mut conn)
    .await
    .expect("the event is stored");
}

pub(crate) async fn event_row(database: &TestDatabase, event_id: &str) -> EventRow {
    stored_row(database, event_id)
        .await
        .expect("the event is stored")
}

/// The event's row, or none while no delivery has stored it yet.
async fn stored_row(database: &TestDatabase, event_id: &str) -> Option<EventRow> {
    let mut conn = database.connect().await;
    webhook_events::table
        .filter(webhook_events::id.eq(event_id))
        .select((
            webhook_events::state,
            webhook_events::attempts,
            webhook_events::outcome,
            webhook_events::last_error,
            webhook_events::charge_id,
        ))
        .first(&mut conn)
        .await
        .optional()
        .expect("read webhook_events")
}

/// Waits until the event is stored and in `state`.
pub(crate) async fn wait_for_state(
    database: &TestDatabase,
    event_id: &str,
    state: &str,
) -> EventRow {
    wait_until(&format!("event {event_id} {state}"), PROCESSING, || async {
        stored_row(database, event_id)
            .await
            .is_some_and(|row| row.state == state)
    })
    .await;
    event_row(database, event_id).await
}

pub(crate) async fn charge_state(database: &TestDatabase, id: &str) -> (String, i64) {
    let mut conn = database.connect().await;
    charges::table
        .filter(charges::id.eq(Uuid::parse_str(id).unwrap()))
        .select((charges::status, charges::amount_refunded_minor))
        .first(&mut conn)
        .await
        .expect("the charge is stored")
}

/// The charge's audit trail, oldest first: each action with the event that caused it.
pub(crate) async fn audit_trail(
    database: &TestDatabase,
    id: &str,
) -> Vec<(String, Option<String>)> {
    let mut conn = database.connect().await;
    charge_activities::table
        .filter(charge_activities::charge_id.eq(Uuid::parse_str(id).unwrap()))
        .order((
            charge_activities::created_at.asc(),
            charge_activities::id.asc(),
        ))
        .select((
            charge_activities::action,
            charge_activities::webhook_event_id,
        ))
        .load(&mut conn)
        .await
        .unwrap()
}

pub(crate) async fn disputes_of(database: &TestDatabase, id: &str) -> Vec<String> {
    let mut conn = database.connect().await;
    supportdesk::db::models::charge_dispute::disputes_of_charge(
        &mut conn,
        Uuid::parse_str(id).unwrap(),
    )
    .await
    .unwrap()
}

pub(crate) fn by_webhook(action: &str, event_id: &str) -> (String, Option<String>) {
    (action.to_owned(), Some(event_id.to_owned()))
}

pub(crate) fn by_the_service(action: &str) -> (String, Option<String>) {
    (action.to_owned(), None)
}

/// The audit trail of a charge paid through the API, then refunded by the webhook `event_id`.
pub(crate) fn paid_then_refunded_by(event_id: &str) -> [(String, Option<String>); 3] {
    [
        by_the_service("created"),
        by_the_service("succeeded"),
        by_webhook("refunded", event_id),
    ]
}

/// Puts a processed event back in the queue, as a second application of the same event.
async fn process_again(database: &TestDatabase, event_id: &str) {
    let mut conn = database.connect().await;
    diesel::update(webhook_events::table.filter(webhook_events::id.eq(event_id)))
        .set((
            webhook_events::state.eq("received"),
            webhook_events::attempts.eq(0),
            webhook_events::outcome.eq(None::<String>),
            webhook_events::processed_at.eq(None::<chrono::DateTime<chrono::Utc>>),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_refund_made_outside_the_service_is_applied_once_even_when_its_event_is_applied_twice() {
    let queue = Queue::open(2).await;
    let charge = queue.paid(1_000).await;
    let refunded = queue.refund_outside(&charge.provider_payment_id, Some(300));
    queue.deliver(&refunded).await;
    let row = queue.processed(&refunded.id).await;
    assert_eq!(row.outcome.as_deref(), Some("applied"));
    assert_eq!(row.attempts, 1);
    assert_eq!(
        row.charge_id.map(|id| id.to_string()),
        Some(charge.id.clone())
    );
    assert_eq!(
        queue.charge(&charge.id).await,
        ("partially_refunded".to_owned(), 300)
    );

    process_again(&queue.app.database, &refunded.id).await;
    let again = queue.processed(&refunded.id).await;
    assert_eq!(again.outcome.as_deref(), Some("no_change"));
    assert_eq!(
        queue.charge(&charge.id).await,
        ("partially_refunded".to_owned(), 300)
    );
    assert_eq!(
        queue.trail(&charge.id).await,
        paid_then_refunded_by(&refunded.id)
    );
}

#[tokio::test]
async fn an_event_read_before_a_newer_event_was_applied_reads_again_instead_of_taking_its_refund_back()
 {
    // The held reading must outlast neither the provider call's timeout nor the lease.
    let workers = WebhookWorkerSettings {
        lease: PROCESSING,
        ..quick_workers(2)
    };
    let queue = Queue::open_with(workers, PROCESSING).await;
    let simulator = &queue.app.simulator;
    let charge = queue.paid(1_000).await;
    let first = queue.refund_outside(&charge.provider_payment_id, Some(300));
    // The first event's reading of the provider's charge (300 refunded) is held...
    simulator
        .add_fault(FaultRule::new(
            Endpoint::RetrieveCharge,
            FaultAction::ExecuteThenHoldAnswer {
                max_millis: u64::try_from(PROCESSING.as_millis()).unwrap(),
            },
            1,
        ))
        .unwrap();
    queue.deliver(&first).await;
    wait_until(
        "the first event's worker reads the charge",
        PROCESSING,
        || async { simulator.faults().is_empty() },
    )
    .await;
    // ...while a second refund's event is read (500 refunded) and applied by the other worker.
    let second = queue.refund_outside(&charge.provider_payment_id, Some(200));
    queue.deliver(&second).await;
    assert_eq!(
        queue.processed(&second.id).await.outcome.as_deref(),
        Some("applied")
    );
    assert_eq!(
        queue.charge(&charge.id).await,
        ("partially_refunded".to_owned(), 500)
    );

    simulator.release_held_answer();
    let row = queue.processed(&first.id).await;

    // Its reading is older than the charge: it reads again, and then has nothing to change.
    assert_eq!(row.outcome.as_deref(), Some("no_change"));
    assert_eq!(row.attempts, 2);
    assert_eq!(
        queue.charge(&charge.id).await,
        ("partially_refunded".to_owned(), 500)
    );
    assert_eq!(
        queue.trail(&charge.id).await,
        paid_then_refunded_by(&second.id)
    );
}

#[tokio::test]
async fn a_refund_event_before_its_payment_event_finishes_a_pending_charge_which_the_retry_answers_and_the_completer_leaves()
 {
    let queue = Queue::open(2).await;
    let (payment_id, succeeded) = queue
        .settling_later(2_000, "settles-later", 200, SettleOutcome::Succeed)
        .await;
    let refunded = queue.refund_outside(&payment_id, Some(500));

    // The refund's event arrives first: it re-reads the payment and finishes the charge too.
    queue.deliver(&refunded).await;
    let row = queue.processed(&refunded.id).await;
    assert_eq!(row.outcome.as_deref(), Some("applied"));
    let charge_id = row
        .charge_id
        .expect("the event names our charge")
        .to_string();
    assert_eq!(
        queue.charge(&charge_id).await,
        ("partially_refunded".to_owned(), 500)
    );
    queue.deliver(&succeeded).await;
    assert_eq!(
        queue.processed(&succeeded.id).await.outcome.as_deref(),
        Some("no_change")
    );
    assert_eq!(
        queue.trail(&charge_id).await,
        [
            by_the_service("created"),
            by_webhook("succeeded", &refunded.id),
            by_webhook("refunded", &refunded.id),
        ]
    );

    // The client's retry with the same key finds the charge final and answers it.
    let answered = queue
        .app
        .billing
        .clone()
        .create_charge(queue.keyed_charge(2_000, "settles-later"))
        .await
        .expect("the retry answers the finished charge")
        .into_inner();
    assert_eq!(answered.id, charge_id);
    assert_eq!(
        answered.status,
        i32::from(v1::ChargeStatus::PartiallyRefunded)
    );
    assert_eq!(answered.amount_refunded.unwrap().amount_minor, 500);
    assert_eq!(
        queue
            .app
            .simulator
            .payment_intent_count_for_charge_id(&charge_id),
        1
    );
    // The completer finds nothing pending: the charge the event finished is left alone.
    let completer = supportdesk::service::Billing::new(
        supportdesk::db::build_pool(&queue.app.settings.database, Duration::from_secs(5)),
        std::sync::Arc::new(
            supportdesk::providers::payments::StripeHttpProvider::new(
                queue.app.settings.payment_provider.as_ref().unwrap(),
            )
            .unwrap(),
        ),
    );
    let completed = completer
        .complete_pending(&supportdesk::service::CompleterPolicy {
            min_age: Duration::ZERO,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(completed, supportdesk::service::Completed::default());
    assert_eq!(
        queue
            .app
            .simulator
            .payment_intent_count_for_charge_id(&charge_id),
        1
    );
    assert_eq!(queue.trail(&charge_id).await.len(), 3);
}

#[tokio::test]
async fn a_payment_event_applied_while_the_charge_waits_for_the_providers_answer_is_its_one_success_and_the_request_answers_it()
 {
    // Provider calls may last as long as the answer is held; the request's own deadline
    // (REQUEST_TIMEOUT_MS) still bounds the charge's call.
    let queue = Queue::open_with(quick_workers(2), PROCESSING).await;
    let simulator = &queue.app.simulator;
    simulator
        .add_fault(FaultRule::new(
            Endpoint::CreatePaymentIntent,
            FaultAction::ExecuteThenHoldAnswer {
                max_millis: u64::try_from(PROCESSING.as_millis()).unwrap(),
            },
            1,
        ))
        .unwrap();
    let mut billing = queue.app.billing.clone();
    let request = queue.keyed_charge(1_500, "answer-held");
    let creating = tokio::spawn(async move { billing.create_charge(request).await });
    wait_until(
        "the provider sends payment_intent.succeeded",
        PROCESSING,
        || async {
            simulator
                .events()
                .iter()
                .any(|event| event.event_type == "payment_intent.succeeded")
        },
    )
    .await;
    let payment_id = simulator.ledger().payment_intents[0].id.clone();
    let succeeded = queue.event("payment_intent.succeeded", &payment_id);

    // The event is applied while the request still waits for the provider's answer.
    queue.deliver(&succeeded).await;
    let row = queue.processed(&succeeded.id).await;
    assert_eq!(row.outcome.as_deref(), Some("applied"));
    let charge_id = row
        .charge_id
        .expect("the event names our charge")
        .to_string();
    assert_eq!(queue.charge(&charge_id).await, ("succeeded".to_owned(), 0));
    assert!(!creating.is_finished(), "the answer is still held");

    // Phase 3 then finds the charge final: it answers it and writes no second success.
    simulator.release_held_answer();
    let answered = creating
        .await
        .unwrap()
        .expect("the request answers the charge the event finished")
        .into_inner();
    assert_eq!(answered.id, charge_id);
    assert_eq!(answered.status(), v1::ChargeStatus::Succeeded);
    assert_eq!(
        queue.trail(&charge_id).await,
        [
            by_the_service("created"),
            by_webhook("succeeded", &succeeded.id),
        ]
    );
    // That answer is the key's: a retry replays it, with no second payment.
    let replayed = queue
        .app
        .billing
        .clone()
        .create_charge(queue.keyed_charge(1_500, "answer-held"))
        .await
        .expect("the retry replays the answer")
        .into_inner();
    assert_eq!(replayed, answered);
    assert_eq!(simulator.payment_intent_count_for_charge_id(&charge_id), 1);
    assert_eq!(queue.trail(&charge_id).await.len(), 2);
}

#[tokio::test]
async fn a_payment_failed_event_fails_a_pending_charge_with_its_decline_and_the_retry_answers_it() {
    let queue = Queue::open(2).await;
    let (_, failed) = queue
        .settling_later(800, "fails-later", 100, SettleOutcome::Fail)
        .await;
    queue.deliver(&failed).await;
    let row = queue.processed(&failed.id).await;
    assert_eq!(row.outcome.as_deref(), Some("applied"));
    let charge_id = row.charge_id.unwrap().to_string();
    assert_eq!(queue.charge(&charge_id).await, ("failed".to_owned(), 0));
    let mut conn = queue.app.database.connect().await;
    let codes: (Option<String>, Option<String>) = charges::table
        .filter(charges::id.eq(row.charge_id.unwrap()))
        .select((charges::failure_code, charges::decline_code))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        codes,
        (
            Some("card_declined".to_owned()),
            Some("generic_decline".to_owned())
        )
    );
    let retried = queue
        .app
        .billing
        .clone()
        .create_charge(queue.keyed_charge(800, "fails-later"))
        .await
        .expect_err("the retry answers the decline");
    assert_reason(&retried, Reason::CardDeclined);
    assert_eq!(
        queue.trail(&charge_id).await,
        [by_the_service("created"), by_webhook("failed", &failed.id)]
    );
}

#[tokio::test]
async fn a_refund_event_waits_for_our_refund_in_flight_so_that_nothing_is_counted_twice() {
    let workers = WebhookWorkerSettings {
        max_attempts: 20,
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_millis(300),
        ..quick_workers(2)
    };
    let queue = Queue::open_with(workers, Duration::from_secs(10)).await;
    let charge = queue.paid(1_000).await;
    // Our refund of 200 is reserved, then held at the provider before it executes.
    queue
        .app
        .simulator
        .add_fault(FaultRule::new(
            Endpoint::CreateRefund,
            FaultAction::Latency { millis: 1_500 },
            1,
        ))
        .unwrap();
    let mut billing = queue.app.billing.clone();
    let request = crate::support::keyed(queue.app.as_admin(v1::RefundChargeRequest {
        id: charge.id.clone(),
        amount: Some(v1::Money {
            amount_minor: 200,
            currency_code: "USD".to_owned(),
        }),
    }));
    let ours = tokio::spawn(async move { billing.refund_charge(request).await });
    wait_until("our refund is reserved", PROCESSING, || async {
        queue.charge(&charge.id).await.1 == 200
    })
    .await;
    // Meanwhile 300 is refunded from the dashboard, and its event arrives.
    let outside = queue.refund_outside(&charge.provider_payment_id, Some(300));
    queue.deliver(&outside).await;

    let answered = ours.await.unwrap().expect("our refund succeeds");
    assert_eq!(
        answered.into_inner().amount_refunded.unwrap().amount_minor,
        200
    );
    let row = queue.processed(&outside.id).await;
    assert_eq!(row.outcome.as_deref(), Some("applied"));
    assert!(row.attempts >= 2, "it waited for our refund: {row:?}");
    assert!(
        row.last_error.as_deref().unwrap().contains("in flight"),
        "{row:?}"
    );
    let at_provider = queue.app.simulator.ledger().charges[0].amount_refunded;
    assert_eq!(at_provider, 500);
    assert_eq!(
        queue.charge(&charge.id).await,
        ("partially_refunded".to_owned(), 500)
    );
    assert_eq!(
        queue.trail(&charge.id).await,
        [
            by_the_service("created"),
            by_the_service("succeeded"),
            by_the_service("refund_requested"),
            by_the_service("refunded"),
            by_webhook("refunded", &outside.id),
        ]
    );
}

#[tokio::test]
async fn a_dispute_is_recorded_once_with_one_disputed_activity_whatever_the_copies() {
    let queue = Queue::open(2).await;
    let charge = queue.paid(4_000).await;
    let dispute = queue
        .app
        .simulator
        .dispute(
            &charge.provider_payment_id,
            DisputeRequest {
                reason: Some("product_not_received".to_owned()),
            },
        )
        .unwrap();
    let opened = queue.event("charge.dispute.created", &charge.provider_payment_id);
    queue.deliver(&opened).await;
    // The same dispute under another event id: the provider's id keeps it one dispute.
    let copy_id = format!("{}_copy", opened.id);
    store(&queue.app.database, &copy_id, &opened).await;
    let first = queue.processed(&opened.id).await;
    let second = queue.processed(&copy_id).await;
    let mut outcomes = [first.outcome.unwrap(), second.outcome.unwrap()];
    outcomes.sort();
    assert_eq!(outcomes, ["applied", "no_change"]);
    assert_eq!(
        disputes_of(&queue.app.database, &charge.id).await,
        [dispute.id]
    );
    let disputed: Vec<_> = queue
        .trail(&charge.id)
        .await
        .into_iter()
        .filter(|(action, _)| action == "disputed")
        .collect();
    assert_eq!(disputed.len(), 1);
    assert_eq!(queue.charge(&charge.id).await, ("succeeded".to_owned(), 0));
}

#[tokio::test]
async fn an_event_of_another_type_is_ignored_and_one_naming_a_payment_the_provider_lacks_dies() {
    let queue = Queue::open(1).await;
    let charge = queue.paid(700).await;
    let mut other = queue.event("payment_intent.succeeded", &charge.provider_payment_id);
    other.id = "evt_other_type".to_owned();
    other.event_type = "customer.created".to_owned();
    queue.deliver(&other).await;
    let mut foreign = queue.event("payment_intent.succeeded", &charge.provider_payment_id);
    foreign.id = "evt_foreign".to_owned();
    foreign.data.object["id"] = serde_json::json!("pi_unknown");
    // The provider knows no such payment: a 404 is a failed attempt, not "not ours".
    queue.deliver(&foreign).await;
    assert_eq!(
        queue.processed(&other.id).await.outcome.as_deref(),
        Some("ignored_type")
    );
    let dead = wait_for_state(&queue.app.database, &foreign.id, "dead").await;
    assert_eq!(dead.attempts, 3);
    assert!(
        dead.last_error
            .as_deref()
            .unwrap()
            .contains("resource_missing"),
        "{dead:?}"
    );
    assert_eq!(queue.trail(&charge.id).await.len(), 2);
}

#[tokio::test]
async fn a_payment_made_elsewhere_is_processed_as_unknown_and_changes_nothing() {
    let queue = Queue::open(1).await;
    let ours = queue.paid(900).await;
    // A payment of the provider account that no charge of ours made.
    let elsewhere: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/v1/payment_intents",
            queue.app.simulator.base_url()
        ))
        .bearer_auth(queue.app.simulator.api_key())
        .form(&[
            ("amount", "900"),
            ("currency", "usd"),
            ("payment_method", "pm_card_visa"),
            ("confirm", "true"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event = queue.event(
        "payment_intent.succeeded",
        elsewhere["id"].as_str().unwrap(),
    );
    queue.deliver(&event).await;
    let row = queue.processed(&event.id).await;
    assert_eq!(row.outcome.as_deref(), Some("unknown_payment"));
    assert_eq!(row.charge_id, None);
    assert_eq!(queue.trail(&ours.id).await.len(), 2);
}

#[tokio::test]
async fn a_worker_whose_lease_ran_out_writes_nothing_once_another_worker_took_the_event() {
    use supportdesk::db::models::webhook_event::{
        AttemptFailed, claim_next, mark_processed, record_failure, release,
    };
    let queue = Queue::open(0).await;
    let charge = queue.paid(500).await;
    let mut other = queue.event("payment_intent.succeeded", &charge.provider_payment_id);
    other.id = "evt_leased".to_owned();
    other.event_type = "customer.updated".to_owned();
    queue.deliver(&other).await;
    let mut conn = queue.app.database.connect().await;
    // A lease long enough that the next statement, even on a loaded machine, runs inside it.
    let slow = claim_next(&mut conn, 1_000, 3).await.unwrap().expect("due");
    assert_eq!((slow.id.as_str(), slow.attempts), ("evt_leased", 1));
    assert!(
        claim_next(&mut conn, 1_000, 3).await.unwrap().is_none(),
        "held while the lease runs"
    );
    // Polled, not slept: the second claim succeeds once the first lease has run out.
    let started = tokio::time::Instant::now();
    let taken = loop {
        if let Some(claimed) = claim_next(&mut conn, 60_000, 3).await.unwrap() {
            break claimed;
        }
        assert!(started.elapsed() < PROCESSING, "the lease never ran out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(taken.attempts, 2);

    // The first worker comes back: whatever it writes, nothing changes.
    assert!(
        !mark_processed(&mut conn, "evt_leased", 1, "ignored_type", None)
            .await
            .unwrap()
    );
    assert_eq!(
        record_failure(&mut conn, "evt_leased", 1, "late", 0, 3)
            .await
            .unwrap(),
        AttemptFailed::LeaseLost
    );
    release(&mut conn, "evt_leased", 1).await.unwrap();
    let row = queue.row("evt_leased").await;
    assert_eq!((row.state.as_str(), row.attempts), ("received", 2));
    assert_eq!(row.last_error, None);
    assert!(
        mark_processed(&mut conn, "evt_leased", 2, "ignored_type", None)
            .await
            .unwrap()
    );
    assert_eq!(queue.row("evt_leased").await.state, "processed");
}
