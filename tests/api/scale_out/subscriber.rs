//! The account's own systems as a subscriber of its events in the chaos run (docs/webhooks.md,
//! "Webhooks we send"): one endpoint, registered through Envoy, on a real receiver that checks
//! every delivery with the Standard Webhooks reference library. The receiver fails for a phase
//! (503s, then answers that never come) while the instances are killed, stopped, cut off and
//! restarted around it. After the drain, every event of every acknowledged write was delivered
//! and verified at least once (at-least-once: an attempt whose outcome its instance could not
//! record is made again), none was given up on, and the endpoint is still enabled.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::webhook_endpoint_service_client::WebhookEndpointServiceClient;

use super::under_load::texts;
use crate::support::fleet::Fleet;
use crate::support::load::Outcome;
use crate::support::webhook_receiver::WebhookReceiver;
use crate::support::{PATIENCE, count_of, keyed, wait_until};

/// The receiver's name for the endpoint.
const ENDPOINT: &str = "chaos";

/// The instances' delivery settings: plain HTTP to the loopback allowed (the receiver), attempts
/// cut at 2 s, and retries every second for two minutes, longer than any phase the endpoint or
/// the fleet fails for, so that nothing is given up on and the endpoint is not disabled.
pub(crate) fn delivery_settings() -> Vec<(&'static str, String)> {
    let mut schedule = vec!["100ms", "200ms", "500ms"];
    schedule.extend(std::iter::repeat_n("1s", 120));
    vec![
        ("OUTBOUND_WEBHOOK_ALLOW_HTTP", "true".to_owned()),
        ("OUTBOUND_WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8".to_owned()),
        ("OUTBOUND_WEBHOOK_TIMEOUT_MS", "2000".to_owned()),
        ("OUTBOUND_WEBHOOK_POLL_INTERVAL_MS", "200".to_owned()),
        ("OUTBOUND_WEBHOOK_BATCH", "5".to_owned()),
        ("OUTBOUND_WEBHOOK_RETRY_SCHEDULE", schedule.join(",")),
    ]
}

/// The receiver and the endpoint the fleet's admin registered on it, for every event type.
pub(crate) struct Subscriber {
    receiver: WebhookReceiver,
    secret: String,
}

/// Starts the receiver and registers it through Envoy as the admin's account's endpoint, before
/// the load writes anything: every event of the load is due to it.
pub(crate) async fn subscribe(fleet: &Fleet) -> Subscriber {
    let receiver = WebhookReceiver::start().await;
    let created = WebhookEndpointServiceClient::new(fleet.envoy_channel())
        .create_webhook_endpoint(keyed(fleet.admin().request(
            v1::CreateWebhookEndpointRequest {
                webhook_endpoint: Some(v1::WebhookEndpoint {
                    url: receiver.url(ENDPOINT),
                    description: "the account's own systems, through the chaos".to_owned(),
                    ..Default::default()
                }),
            },
        )))
        .await
        .expect("the endpoint is registered")
        .into_inner();
    receiver.configure(ENDPOINT, &[&created.secret], "ok").await;
    Subscriber {
        receiver,
        secret: created.secret,
    }
}

impl Subscriber {
    /// From now on the endpoint answers as `behaviour` says (webhook_receiver.py: `status:503`,
    /// `hang`, `ok`, ...), its secret kept.
    pub(crate) async fn answer(&self, behaviour: &str) {
        self.receiver
            .configure(ENDPOINT, &[&self.secret], behaviour)
            .await;
    }

    /// Waits until no delivery is pending. The endpoint's deliveries go one lease at a time, in
    /// event order, so the drain takes as long as the backlog the load left, on a machine as busy
    /// as it is: what must not happen is a queue that stops moving. Fails, saying where the queue
    /// stands, once no pending delivery has been done for `stalled_for` (a lost lease runs out
    /// within it), or once the whole drain passed `bound`.
    pub(crate) async fn wait_for_deliveries(
        &self,
        fleet: &Fleet,
        stalled_for: Duration,
        bound: Duration,
    ) {
        let started = Instant::now();
        let mut fewest = i64::MAX;
        let mut moved = Instant::now();
        loop {
            let pending = count_of(
                &fleet.database,
                "SELECT count(*) AS count FROM webhook_deliveries WHERE state = 'pending'",
            )
            .await;
            if pending == 0 {
                return;
            }
            if pending < fewest {
                fewest = pending;
                moved = Instant::now();
            }
            if moved.elapsed() > stalled_for || started.elapsed() > bound {
                let state = texts(
                    fleet,
                    "SELECT state || ' ' || count(*) || ' attempts<=' || max(attempts) \
                     || ' due ' || coalesce(min(next_attempt_at)::text, '-') AS text \
                     FROM webhook_deliveries GROUP BY state \
                     UNION ALL SELECT 'endpoint ' || state || ' failing_since ' \
                     || coalesce(failing_since::text, '-') || ' lease_until ' \
                     || coalesce(lease_until::text, '-') || ' now ' || now()::text \
                     FROM webhook_endpoints \
                     UNION ALL SELECT 'session ' || coalesce(state, '-') || ' ' \
                     || coalesce(wait_event_type || ':' || wait_event, '-') || ' since ' \
                     || coalesce(state_change::text, '-') || ' ' || left(query, 100) \
                     FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                )
                .await;
                let received = self.receiver.attempts(Some(ENDPOINT)).await.len();
                panic!(
                    "{pending} webhook deliveries still pending after {:?}, none done in the \
                     last {:?}; the receiver got {received} requests; {state:#?}",
                    started.elapsed(),
                    moved.elapsed()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until a delivery attempt reached the endpoint while it answered as `behaviour` says
    /// (the receiver records each attempt with the behaviour it met): a phase sized by the load's
    /// calls alone may, on a slow machine, fall between two attempts of a resting endpoint.
    pub(crate) async fn wait_until_met(&self, behaviour: &str) {
        wait_until(
            &format!("a delivery meeting the endpoint's {behaviour:?}"),
            PATIENCE,
            || async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                self.receiver
                    .attempts(Some(ENDPOINT))
                    .await
                    .iter()
                    .any(|attempt| attempt.behaviour == behaviour)
            },
        )
        .await;
    }

    /// After the drain: each acknowledged write recorded its event once, every event of the
    /// account was delivered (answered 2xx, verified) at least once, no delivery is left pending
    /// or given up on, and the endpoint is enabled; what it counted goes into `outcome`, for the
    /// report (with how many events were delivered more than once: an attempt made again because
    /// its outcome was not recorded).
    pub(crate) async fn assert_every_event_delivered(&self, fleet: &Fleet, outcome: &mut Outcome) {
        let account = fleet.admin().account_id;
        // One event per change, for every change of the account (the load's acknowledged writes
        // are each found once where they live: under_load's checks).
        for (what, sql) in [
            (
                "ticket.created per ticket",
                "SELECT count(*) AS count FROM tickets t WHERE t.account_id = '{account}' AND \
                 (SELECT count(*) FROM events e WHERE e.type = 'ticket.created' \
                  AND e.resource_id = t.id) <> 1",
            ),
            (
                "comment.created per comment",
                "SELECT count(*) AS count FROM ticket_comments c WHERE c.account_id = '{account}' \
                 AND (SELECT count(*) FROM events e WHERE e.type = 'comment.created' \
                      AND e.resource_id = c.id) <> 1",
            ),
            (
                "charge.succeeded or charge.failed per settled charge",
                "SELECT count(*) AS count FROM charges c WHERE c.account_id = '{account}' \
                 AND c.status IN ('succeeded', 'failed') \
                 AND (SELECT count(*) FROM events e WHERE e.type = 'charge.' || c.status \
                      AND e.resource_id = c.id) <> 1",
            ),
            (
                "refund.succeeded per refund",
                "SELECT count(*) AS count FROM refunds r WHERE r.account_id = '{account}' AND \
                 (SELECT count(*) FROM events e WHERE e.type = 'refund.succeeded' \
                  AND e.resource_id = r.id) <> 1",
            ),
            (
                "attachment.ready per attachment",
                "SELECT count(*) AS count FROM attachments a WHERE a.account_id = '{account}' AND \
                 (SELECT count(*) FROM events e WHERE e.type = 'attachment.ready' \
                  AND e.resource_id = a.id) <> 1",
            ),
            (
                "operation.done per import",
                "SELECT count(*) AS count FROM operations o WHERE o.account_id = '{account}' AND \
                 (SELECT count(*) FROM events e WHERE e.type = 'operation.done' \
                  AND e.resource_id = o.id) <> 1",
            ),
        ] {
            let sql = sql.replace("{account}", &account.to_string());
            assert_eq!(
                count_of(&fleet.database, &sql).await,
                0,
                "not exactly one {what}"
            );
        }
        let updates = count_of(
            &fleet.database,
            &format!(
                "SELECT count(*) AS count FROM events WHERE account_id = '{account}' \
                 AND type = 'ticket.updated' AND snapshot->>'description' LIKE 'update %'"
            ),
        )
        .await;
        assert_eq!(
            updates,
            outcome.updates.len() as i64,
            "one ticket.updated per acknowledged UpdateTicket"
        );

        // Every delivery made, none pending or given up on, the endpoint enabled.
        assert_eq!(
            count_of(
                &fleet.database,
                "SELECT count(*) AS count FROM webhook_deliveries WHERE state <> 'succeeded'"
            )
            .await,
            0,
            "a delivery is pending or was given up on"
        );
        assert_eq!(
            count_of(
                &fleet.database,
                "SELECT count(*) AS count FROM webhook_endpoints WHERE state <> 'enabled'"
            )
            .await,
            0,
            "the endpoint was disabled"
        );
        let events = event_ids(fleet, &account.to_string()).await;
        assert_eq!(
            count_of(
                &fleet.database,
                "SELECT count(*) AS count FROM webhook_deliveries"
            )
            .await,
            events.len() as i64,
            "one delivery per event"
        );

        // And the receiver processed each: verified, answered 2xx, whole.
        let attempts = self.receiver.attempts(Some(ENDPOINT)).await;
        let unverified: Vec<_> = attempts
            .iter()
            .filter(|attempt| !attempt.verified())
            .map(|attempt| &attempt.webhook_id)
            .collect();
        assert!(
            unverified.is_empty(),
            "deliveries the reference library refused: {unverified:?}"
        );
        let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
        for id in self.receiver.delivered(ENDPOINT).await {
            *delivered.entry(id).or_default() += 1;
        }
        let missing: Vec<&String> = events
            .iter()
            .filter(|id| !delivered.contains_key(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "{} of {} events never reached the subscriber: {:?}",
            missing.len(),
            events.len(),
            missing.iter().take(20).collect::<Vec<_>>()
        );
        assert_eq!(
            delivered.len(),
            events.len(),
            "the subscriber was sent events that are not the account's"
        );
        assert!(!events.is_empty(), "the load made no event");
        outcome.counted(
            "events of the account (every acknowledged write's among them) delivered to its \
             subscriber, verified, at least once",
            events.len(),
        );
        outcome.counted(
            "of those, delivered more than once (an attempt whose outcome was not recorded)",
            delivered.values().filter(|count| **count > 1).count(),
        );
        outcome.counted(
            "attempts the subscriber answered with something other than 2xx, or not at all",
            attempts
                .iter()
                .filter(|attempt| {
                    attempt
                        .status
                        .is_none_or(|status| !(200..300).contains(&status))
                })
                .count(),
        );
    }
}

/// The public ids (`evt_` and 32 hex digits) of every event of `account` due to its endpoints.
async fn event_ids(fleet: &Fleet, account: &str) -> Vec<String> {
    texts(
        fleet,
        &format!(
            "SELECT 'evt_' || replace(id::text, '-', '') AS text FROM events \
             WHERE account_id = '{account}' AND endpoint_id IS NULL"
        ),
    )
    .await
}
