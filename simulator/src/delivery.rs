//! The webhook dispatcher: turns each recorded event into one or more delivery tasks, applying
//! the delivery faults, and runs each task's attempts and retries.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::ids::{unix_now, unix_now_millis};
use crate::objects::Event;
use crate::state::Shared;
use crate::webhooks::{
    Corruption, DeliveryAttempt, DeliveryFault, DeliveryPlan, REORDER_WINDOW, signature_header,
};

/// Dispatches events until the simulator stops.
pub(crate) async fn run_dispatcher(
    shared: Arc<Shared>,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    let client = reqwest::Client::builder()
        .timeout(shared.config.webhook_retry.attempt_timeout)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    let dispatcher = Dispatcher { shared, client };
    // An event held back by a `reorder` fault, and until when it waits for one to overtake it.
    let mut held: Option<(Event, Instant)> = None;
    loop {
        let hold_deadline = held.as_ref().map(|(_, deadline)| *deadline);
        tokio::select! {
            () = dispatcher.shared.shutdown.cancelled() => return,
            () = sleep_until_or_forever(hold_deadline) => {
                if let Some((event, _)) = held.take() {
                    dispatcher.spawn(event, DeliveryPlan::default(), None, None);
                }
            }
            received = events.recv() => {
                let Some(event) = received else { return };
                let fault = dispatcher.shared.webhooks().take_fault(&event.event_type);
                if fault == Some(DeliveryFault::Reorder) {
                    if let Some((earlier, _)) = held.take() {
                        dispatcher.spawn(earlier, DeliveryPlan::default(), None, None);
                    }
                    held = Some((event, Instant::now() + REORDER_WINDOW));
                    continue;
                }
                // The held event goes once this one's first attempt is over, so it arrives later.
                let (overtaken_tx, overtaken_rx) = oneshot::channel();
                let overtaken = held.take().map(|(event, _)| event);
                let signal = overtaken.as_ref().map(|_| overtaken_tx);
                dispatcher.dispatch(event, fault, signal);
                if let Some(earlier) = overtaken {
                    dispatcher.spawn(earlier, DeliveryPlan::default(), Some(overtaken_rx), None);
                }
            }
        }
    }
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

struct Dispatcher {
    shared: Arc<Shared>,
    client: reqwest::Client,
}

impl Dispatcher {
    fn dispatch(
        &self,
        event: Event,
        fault: Option<DeliveryFault>,
        first_attempt_done: Option<oneshot::Sender<()>>,
    ) {
        let plan = match fault {
            None | Some(DeliveryFault::Reorder) => DeliveryPlan::default(),
            Some(DeliveryFault::Duplicate) => {
                let second = DeliveryPlan {
                    copy: 2,
                    ..DeliveryPlan::default()
                };
                self.spawn(event.clone(), second, None, None);
                DeliveryPlan::default()
            }
            Some(DeliveryFault::Delay { millis }) => DeliveryPlan {
                initial_delay: Duration::from_millis(millis),
                ..DeliveryPlan::default()
            },
            Some(DeliveryFault::BadSignature) => DeliveryPlan {
                corruption: Some(Corruption::BadSignature),
                ..DeliveryPlan::default()
            },
            Some(DeliveryFault::MangledBody) => DeliveryPlan {
                corruption: Some(Corruption::MangledBody),
                ..DeliveryPlan::default()
            },
        };
        self.spawn(event, plan, None, first_attempt_done);
    }

    fn spawn(
        &self,
        event: Event,
        plan: DeliveryPlan,
        wait_for: Option<oneshot::Receiver<()>>,
        first_attempt_done: Option<oneshot::Sender<()>>,
    ) {
        let shared = Arc::clone(&self.shared);
        let client = self.client.clone();
        tokio::spawn(async move {
            let shutdown = shared.shutdown.clone();
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = deliver(shared, client, event, plan, wait_for, first_attempt_done) => {}
            }
        });
    }
}

/// Sends one copy of an event until the endpoint accepts it or the attempts run out.
async fn deliver(
    shared: Arc<Shared>,
    client: reqwest::Client,
    event: Event,
    plan: DeliveryPlan,
    wait_for: Option<oneshot::Receiver<()>>,
    mut first_attempt_done: Option<oneshot::Sender<()>>,
) {
    if let Some(wait_for) = wait_for {
        // An error only means the other delivery task ended early; go anyway.
        let _ = wait_for.await;
    }
    tokio::time::sleep(plan.initial_delay).await;
    let payload = match serde_json::to_vec(&event) {
        Ok(payload) => payload,
        Err(error) => {
            tracing::error!(%error, event = %event.id, "event does not serialize");
            return;
        }
    };
    let policy = shared.config.webhook_retry;
    for attempt in 1..=policy.max_attempts {
        // Read before every attempt: the endpoint or its secrets may have changed (rotation).
        let Some(endpoint) = shared.webhooks().endpoint.clone() else {
            return;
        };
        let timestamp = unix_now();
        let corruption = plan.corruption.filter(|_| attempt == 1);
        let (body, signature) = match corruption {
            Some(corruption) => corruption.apply(&payload, &endpoint.secrets, timestamp),
            None => (
                payload.clone(),
                signature_header(&payload, &endpoint.secrets, timestamp),
            ),
        };
        let sent_at = unix_now_millis();
        let outcome = client
            .post(&endpoint.url)
            .header("content-type", "application/json; charset=utf-8")
            .header(
                "user-agent",
                "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            )
            .header("stripe-signature", &signature)
            .body(body)
            .send()
            .await
            .map(|response| response.status().as_u16())
            .map_err(|error| error.to_string());
        let accepted = matches!(outcome, Ok(status) if (200..300).contains(&status));
        let (status, error) = match outcome {
            Ok(status) => (Some(status), None),
            Err(error) => (None, Some(error)),
        };
        shared.webhooks().deliveries.push(DeliveryAttempt {
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            copy: plan.copy,
            attempt,
            sent_at_unix_ms: u64::try_from(sent_at).unwrap_or(u64::MAX),
            status,
            error,
            corruption: corruption.map(|corruption| corruption.name().to_owned()),
            signature,
        });
        if let Some(done) = first_attempt_done.take() {
            let _ = done.send(());
        }
        if accepted {
            return;
        }
        if attempt < policy.max_attempts {
            tokio::time::sleep(policy.delay_after(attempt)).await;
        }
    }
    tracing::warn!(event = %event.id, "webhook delivery gave up");
}
