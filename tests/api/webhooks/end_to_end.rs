//! Payment webhooks end to end: the payment simulator signs and delivers its events (with its delivery
//! faults: duplicates, reordering) to Envoy, Envoy transcodes `POST /v1/webhooks/payments` to
//! ReceivePaymentEvent, the service stores and acknowledges each delivery, and the workers apply
//! the events. Every claim is checked where it lives: PostgreSQL, the simulator's ledger and
//! delivery log, and the admin RPCs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use payment_simulator::webhooks::{DeliveryFault, DeliveryFaultRule, WebhookEndpoint};
use payment_simulator::{DisputeRequest, Endpoint, FaultAction, FaultRule, SimulatorHandle};
use supportdesk::configuration::WebhookWorkerSettings;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::billing_service_client::BillingServiceClient;
use supportdesk::wire::proto::v1::user_service_client::UserServiceClient;
use uuid::Uuid;

use crate::support::binary::{Running, sign_up_through};
use crate::support::envoy::Envoy;
use crate::support::{
    Scrape, TEST_PASSWORD, TEST_WEBHOOK_SECRET, TestDatabase, second_instance, wait_until,
};
use crate::webhooks::processing::{
    PROCESSING, Queue, audit_trail, by_the_service, by_webhook, charge_state, disputes_of,
    event_row, keyed_charge, last_event, paid_then_refunded_by, quick_workers, refund_outside,
    wait_for_state,
};

/// Points the simulator's webhooks at `envoy`, signed with the test instances' secret.
fn send_webhooks_to(simulator: &SimulatorHandle, envoy: &Envoy) {
    simulator.set_webhook_endpoint(Some(WebhookEndpoint {
        url: envoy.url("/v1/webhooks/payments"),
        secrets: vec![TEST_WEBHOOK_SECRET.to_owned()],
    }));
}

/// A test app with these workers, Envoy in front of it, and the simulator delivering to Envoy.
async fn delivered_to(workers: WebhookWorkerSettings) -> (Queue, Envoy) {
    let queue = Queue::open_with(workers, Duration::from_millis(300)).await;
    let envoy = Envoy::start_in_front_of(queue.app.address.port()).await;
    send_webhooks_to(&queue.app.simulator, &envoy);
    (queue, envoy)
}

/// Waits until the simulator has had `count` deliveries (an event's copy) acknowledged.
async fn wait_for_acknowledged(simulator: &SimulatorHandle, count: usize) {
    wait_until(
        &format!("{count} deliveries acknowledged"),
        PROCESSING,
        || async { acknowledged(simulator).len() >= count },
    )
    .await;
}

/// The (event id, copy) pairs the service acknowledged.
fn acknowledged(simulator: &SimulatorHandle) -> BTreeSet<(String, u32)> {
    simulator
        .deliveries()
        .into_iter()
        .filter(|attempt| attempt.succeeded())
        .map(|attempt| (attempt.event_id, attempt.copy))
        .collect()
}

fn about(event: &payment_simulator::Event, payment_id: &str) -> bool {
    event.data.object["id"] == payment_id || event.data.object["payment_intent"] == payment_id
}

#[tokio::test]
async fn a_hundred_deliveries_with_duplicates_and_reordering_apply_each_event_once_and_leave_every_charge_as_the_provider_has_it()
 {
    let (queue, _envoy) = delivered_to(quick_workers(2)).await;
    let simulator = &queue.app.simulator;
    let mut charges = Vec::new();
    for index in 0..20_i64 {
        charges.push(queue.paid(1_000 + index).await);
    }
    wait_for_acknowledged(simulator, 20).await;
    // From here on, each event's fault is decided as the simulator sends it, in this order: the
    // 20 first refunds are held back until the next event (their charge's dispute) overtakes
    // them; 30 other events are delivered twice.
    simulator.add_delivery_fault(DeliveryFaultRule {
        fault: DeliveryFault::Reorder,
        event_type: Some("charge.refunded".to_owned()),
        times: Some(20),
    });
    simulator.add_delivery_fault(DeliveryFaultRule::new(DeliveryFault::Duplicate, 30));
    for index in 20..25_i64 {
        charges.push(queue.paid(1_000 + index).await);
    }
    for charge in &charges[..20] {
        refund_outside(simulator, &charge.provider_payment_id, Some(250));
        simulator
            .dispute(&charge.provider_payment_id, DisputeRequest { reason: None })
            .unwrap();
    }
    for charge in &charges[20..] {
        refund_outside(simulator, &charge.provider_payment_id, None);
    }
    let events = simulator.events();
    assert_eq!(events.len(), 70);

    wait_for_acknowledged(simulator, 100).await;
    let deliveries = acknowledged(simulator);
    assert_eq!(deliveries.len(), 100, "70 events, 30 of them twice");
    assert_eq!(deliveries.iter().filter(|(_, copy)| *copy == 2).count(), 30);
    // Each first refund reached the service after its charge's dispute.
    let log = simulator.deliveries();
    let first_sent = |event_id: &str| {
        log.iter()
            .filter(|attempt| attempt.event_id == event_id)
            .map(|attempt| attempt.sent_at_unix_ms)
            .min()
            .unwrap()
    };
    let mut reordered = 0;
    for charge in &charges[..20] {
        let payment = charge.provider_payment_id.as_str();
        let refund = events
            .iter()
            .find(|event| event.event_type == "charge.refunded" && about(event, payment))
            .unwrap();
        let dispute = events
            .iter()
            .find(|event| event.event_type == "charge.dispute.created" && about(event, payment))
            .unwrap();
        if first_sent(&refund.id) >= first_sent(&dispute.id) {
            reordered += 1;
        }
    }
    assert_eq!(reordered, 20);

    for event in &events {
        wait_for_state(&queue.app.database, &event.id, "processed").await;
    }
    let ledger = simulator.ledger();
    let at_provider: BTreeMap<&str, (i64, usize)> = ledger
        .charges
        .iter()
        .map(|charge| {
            let disputes = ledger
                .disputes
                .iter()
                .filter(|dispute| dispute.charge == charge.id)
                .count();
            (
                charge.payment_intent.as_str(),
                (charge.amount_refunded, disputes),
            )
        })
        .collect();
    for (index, charge) in charges.iter().enumerate() {
        let (refunded, disputes) = at_provider[charge.provider_payment_id.as_str()];
        let amount = charge.amount.as_ref().unwrap().amount_minor;
        let status = if refunded == amount {
            "refunded"
        } else {
            "partially_refunded"
        };
        assert_eq!(
            queue.charge(&charge.id).await,
            (status.to_owned(), refunded),
            "charge {index}"
        );
        assert_eq!(
            disputes_of(&queue.app.database, &charge.id).await.len(),
            disputes,
            "charge {index}"
        );
        // The charge's creation, then its success written once: by CreateCharge's last phase,
        // or by the charge's payment_intent.succeeded when that event overtook it (the provider
        // sends the event as it charges, so on a loaded machine the worker may apply it before
        // the provider's answer reaches the request; docs/webhooks.md, "With CreateCharge and
        // RefundCharge"). Then one row per change the provider made, each written by exactly one
        // event: never twice, whatever the duplicates and the order.
        let trail = queue.trail(&charge.id).await;
        let paid = last_event(
            &events,
            "payment_intent.succeeded",
            &charge.provider_payment_id,
        );
        assert_eq!(trail[0], by_the_service("created"), "charge {index}");
        // CreateCharge answered the success either way.
        assert_eq!(
            charge.status(),
            v1::ChargeStatus::Succeeded,
            "charge {index}"
        );
        assert!(
            [
                by_the_service("succeeded"),
                by_webhook("succeeded", &paid.id)
            ]
            .contains(&trail[1]),
            "charge {index}: {trail:?}"
        );
        let mut learnt: Vec<&str> = trail[2..]
            .iter()
            .map(|(action, event)| {
                assert!(event.is_some(), "charge {index}: {trail:?}");
                action.as_str()
            })
            .collect();
        learnt.sort_unstable();
        let expected: &[&str] = if index < 20 {
            &["disputed", "refunded"]
        } else {
            &["refunded"]
        };
        assert_eq!(learnt, expected, "charge {index}: {trail:?}");
    }
}

#[tokio::test]
async fn a_poison_event_is_dead_after_its_attempts_visible_to_admins_and_applied_once_redriven() {
    let (queue, _envoy) = delivered_to(quick_workers(2)).await;
    let charge = queue.paid(1_200).await;
    let paid = queue.event("payment_intent.succeeded", &charge.provider_payment_id);
    queue.processed(&paid.id).await;
    queue
        .app
        .simulator
        .add_fault(FaultRule::always(
            Endpoint::RetrievePaymentIntent,
            FaultAction::ServerError { status: 500 },
        ))
        .unwrap();
    let refunded = queue.refund_outside(&charge.provider_payment_id, None);
    let dead = wait_for_state(&queue.app.database, &refunded.id, "dead").await;
    assert_eq!(dead.attempts, 3);
    assert_eq!(queue.charge(&charge.id).await, ("succeeded".to_owned(), 0));

    let listed = queue
        .app
        .webhooks
        .clone()
        .list_webhook_events(queue.app.as_admin(v1::ListWebhookEventsRequest {
            state: v1::WebhookEventState::Dead.into(),
            page_size: 10,
            page_token: String::new(),
        }))
        .await
        .expect("admins list dead events")
        .into_inner();
    assert_eq!(listed.events.len(), 1);
    let shown = &listed.events[0];
    assert_eq!(shown.id, refunded.id);
    assert_eq!(shown.charge_id, charge.id);
    assert_eq!(shown.attempts, 3);
    assert!(shown.last_error.contains("unavailable"), "{shown:?}");
    assert!(shown.dead_time.is_some());

    // The provider recovers; an admin re-drives the event.
    queue.app.simulator.clear_faults();
    let redriven = queue
        .app
        .webhooks
        .clone()
        .redrive_webhook_event(queue.app.as_admin(v1::RedriveWebhookEventRequest {
            id: refunded.id.clone(),
        }))
        .await
        .expect("the dead event is re-driven")
        .into_inner();
    assert_eq!(redriven.redrive_count, 1);
    let row = queue.processed(&refunded.id).await;
    assert_eq!(row.outcome.as_deref(), Some("applied"));
    assert_eq!(row.attempts, 1);
    let read = queue
        .app
        .webhooks
        .clone()
        .get_webhook_event(queue.app.as_admin(v1::GetWebhookEventRequest {
            id: refunded.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.state, i32::from(v1::WebhookEventState::Processed));
    assert_eq!(read.outcome, "applied");
    assert_eq!(
        queue.charge(&charge.id).await,
        ("refunded".to_owned(), 1_200)
    );
    assert_eq!(
        queue.trail(&charge.id).await,
        paid_then_refunded_by(&refunded.id)
    );
}

#[tokio::test]
async fn an_instance_without_workers_acknowledges_and_stores_every_delivery_and_one_with_workers_drains_them()
 {
    let (queue, _envoy) = delivered_to(quick_workers(0)).await;
    let mut charges = Vec::new();
    for _ in 0..5 {
        let charge = queue.paid(1_000).await;
        queue.refund_outside(&charge.provider_payment_id, Some(100));
        charges.push(charge);
    }
    let events = queue.app.simulator.events();
    assert_eq!(events.len(), 10);
    wait_for_acknowledged(&queue.app.simulator, 10).await;
    // Not slept on: the job runner says what this instance runs, and webhook workers are not
    // among its tasks, so nothing here can take the events.
    let scrape = Scrape::of(&queue.app).await;
    let tasks = scrape.family("supportdesk_job_runner_task_state");
    assert!(
        tasks.contains_key(
            r#"supportdesk_job_runner_task_state{task="dependency-probe",state="running"}"#
        ),
        "{tasks:?}"
    );
    assert!(
        !tasks
            .keys()
            .any(|series| series.contains(r#"task="webhook-workers""#)),
        "{tasks:?}"
    );
    for event in &events {
        let row = queue.row(&event.id).await;
        assert_eq!(
            (row.state.as_str(), row.attempts),
            ("received", 0),
            "{}",
            event.id
        );
    }
    for charge in &charges {
        assert_eq!(queue.charge(&charge.id).await, ("succeeded".to_owned(), 0));
    }

    let mut settings = queue.app.settings.clone();
    settings.webhook_workers = quick_workers(2);
    let (_channel, _server) = second_instance(&settings).await;
    for charge in &charges {
        // Whichever of the charge's two events is processed first finds the refund at the
        // provider and applies it; the other finds nothing left to do.
        let mut outcomes = Vec::new();
        for event in events
            .iter()
            .filter(|event| about(event, &charge.provider_payment_id))
        {
            outcomes.push(queue.processed(&event.id).await.outcome.unwrap());
        }
        outcomes.sort();
        assert_eq!(outcomes, ["applied", "no_change"]);
        assert_eq!(
            queue.charge(&charge.id).await,
            ("partially_refunded".to_owned(), 100)
        );
    }
}

/// The binary, with workers holding events under a short lease and the test's signing secret.
fn start_binary(
    database: &TestDatabase,
    redis_prefix: &str,
    simulator: &SimulatorHandle,
) -> Running {
    Running::start(
        database,
        &[
            ("REDIS_KEY_PREFIX", redis_prefix),
            ("PAYMENT_PROVIDER_URL", &simulator.base_url()),
            ("PAYMENT_PROVIDER_SECRET_KEY", simulator.api_key()),
            ("PAYMENT_PROVIDER_TIMEOUT_MS", "30000"),
            ("PAYMENT_WEBHOOK_SECRET", TEST_WEBHOOK_SECRET),
            // The worker gives its provider call up at three quarters of the lease, then tries
            // again: 6 s in which the test sees it hold the event (3 s were too few on a loaded
            // 2-core run, which saw the second attempt already claimed).
            ("WEBHOOK_LEASE_SECS", "8"),
            ("WEBHOOK_POLL_INTERVAL_MS", "50"),
            ("BILLING_COMPLETER_INTERVAL_MS", "3600000"),
            ("SHUTDOWN_DELAY_MS", "0"),
        ],
    )
}

#[tokio::test]
async fn a_worker_killed_mid_event_leaves_it_to_be_processed_again_after_its_lease_with_one_effect()
{
    let database = TestDatabase::create().await;
    let simulator =
        payment_simulator::Simulator::start(payment_simulator::SimulatorConfig::default())
            .await
            .unwrap();
    let redis_prefix = format!("supportdesk-test:{}:", Uuid::now_v7().simple());
    let running = start_binary(&database, &redis_prefix, &simulator);
    let channel = running.channel().await;
    running.wait_for_health("Serving").await;
    let envoy = Envoy::start_in_front_of(running.port).await;
    send_webhooks_to(&simulator, &envoy);
    let admin = sign_up_through(&channel).await;
    let customer = UserServiceClient::new(channel.clone())
        .create_user(admin.request(v1::CreateUserRequest {
            user: Some(v1::User {
                email: format!("customer-{}@example.com", Uuid::now_v7().simple()),
                role: v1::UserRole::Customer.into(),
                ..Default::default()
            }),
            password: TEST_PASSWORD.to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    let charge = BillingServiceClient::new(channel)
        .create_charge(keyed_charge(&admin, &customer.id, 3_000, "kill-mid-event"))
        .await
        .unwrap()
        .into_inner();
    let paid = last_event(
        &simulator.events(),
        "payment_intent.succeeded",
        &charge.provider_payment_id,
    );
    wait_for_state(&database, &paid.id, "processed").await;

    // The worker is then held inside processing: the provider takes 20 s to answer its read.
    simulator
        .add_fault(FaultRule::new(
            Endpoint::RetrievePaymentIntent,
            FaultAction::Latency { millis: 20_000 },
            1,
        ))
        .unwrap();
    let reads_before = provider_reads(&simulator);
    let refunded = refund_outside(&simulator, &charge.provider_payment_id, Some(1_000));
    wait_until("the worker holds the event", PROCESSING, || async {
        provider_reads(&simulator) == reads_before + 1
            && event_row(&database, &refunded.id).await.attempts == 1
    })
    .await;
    running.kill();
    let held = event_row(&database, &refunded.id).await;
    assert_eq!((held.state.as_str(), held.attempts), ("received", 1));
    assert_eq!(
        charge_state(&database, &charge.id).await,
        ("succeeded".to_owned(), 0)
    );

    let _restarted = start_binary(&database, &redis_prefix, &simulator);
    let row = wait_for_state(&database, &refunded.id, "processed").await;
    assert_eq!(row.attempts, 2, "taken again once the lease ran out");
    assert_eq!(row.outcome.as_deref(), Some("applied"));
    assert_eq!(
        charge_state(&database, &charge.id).await,
        ("partially_refunded".to_owned(), 1_000)
    );
    assert_eq!(
        audit_trail(&database, &charge.id).await,
        paid_then_refunded_by(&refunded.id)
    );
}

/// The payment reads the provider has received (`GET /v1/payment_intents/pi_...`).
fn provider_reads(simulator: &SimulatorHandle) -> usize {
    simulator
        .requests()
        .iter()
        .filter(|request| {
            request.method == "GET" && request.path.starts_with("/v1/payment_intents/pi_")
        })
        .count()
}
