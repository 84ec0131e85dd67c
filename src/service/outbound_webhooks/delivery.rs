//! The webhook delivery workers: they send each account's events to its endpoints, signed as
//! Standard Webhooks asks, at least once (docs/webhooks.md, "Webhooks we send").
//!
//! One loop per instance leases endpoints with due deliveries ([`WebhookDeliveryRow::claim`],
//! those waiting longest first, as many at once as there are free places) and gives each to a
//! task of its own, up to `OUTBOUND_WEBHOOK_WORKERS` at once: the lease makes that task the only
//! one of any instance delivering to that endpoint, so an endpoint receives its events one after
//! the other, in the order they happened, and no attempt is ever made by two instances. The
//! task makes the attempts of the batch it took in order, recording each (one statement, no
//! connection held while the endpoint answers), and gives the lease back; its place is claimed
//! again at once. An idle instance looks for work once per poll interval, whatever its places.
//!
//! A failed attempt ends the batch: the delivery is due again after the schedule's next delay
//! (with jitter), and the endpoint rests until then or for [`MAX_ENDPOINT_REST`] at most, so a
//! failing endpoint costs one attempt at a time, not one per waiting event. At most half of the
//! places go to endpoints in a failing streak or answering slowly (a 2xx that took more than
//! half the attempt timeout, until a quicker one): endpoints that hang, time out, answer 500 or
//! answer 200 just in time cannot take the places the healthy ones need. An endpoint that starts
//! hanging holds one place for one attempt timeout; from its first failure on it is one of the
//! failing. And no account holds more than `OUTBOUND_WEBHOOK_MAX_PLACES_PER_ACCOUNT` of this
//! instance's places (its healthy endpoints first), so one party's endpoints, however many
//! accounts it holds, leave places to the others' deliveries. An endpoint that
//! has failed for the whole schedule (every attempt since its streak began, about three days) is
//! disabled, which records `endpoint.disabled`; its deliveries wait until an admin enables it.
//!
//! A delivery whose event this build cannot read (a type or snapshot of another version, during a
//! mixed deploy or after a rollback) is not sent: its attempt is recorded failed on the schedule
//! without blaming the endpoint (no failing streak, no rest), counted and logged, and the batch
//! goes on to the endpoint's later events. After its last attempt it is `failed`, to be redriven.
//!
//! A worker that dies mid-attempt leaves the lease to expire; the attempt it made is made again
//! by the next worker (at least once), and its record, had it been written late, is refused by
//! the attempt number. A record that cannot reach PostgreSQL is written again for as long as the
//! lease lasts, so that a short outage of the database does not repeat an attempt.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue};
use rand::Rng as _;
use tokio::sync::Notify;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::configuration::OutboundWebhookSettings;
use crate::db::PgPool;
use crate::db::models::event::StoredEvent;
use crate::db::models::webhook_delivery::{
    AttemptRecord, ClaimedDelivery, ClaimedEndpoint, Recorded, WebhookDeliveryRow,
};
use crate::domain::{
    DeliveryState, EndpointUrl, SigningSecret, event_public_id, webhook_signature_header,
};
use crate::errors::AppError;
use crate::providers::webhook_client::{AttemptOutcome, WebhookClient};
use crate::service::outbound_webhooks::secrets::SecretBox;
use crate::telemetry::metrics::{Counter, Metrics};
use crate::wire::convert::event::JsonEvents;

/// The longest an endpoint rests after a failed attempt before its next due delivery is tried
/// (a delivery's own retry may be due much later; other deliveries need not wait that long).
pub const MAX_ENDPOINT_REST: Duration = Duration::from_secs(60);

/// Beyond the attempts of a batch, how long a lease lasts (for the claim and the records).
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The first pause before an attempt's record is written again, doubled each time up to
/// [`RECORD_MAX_PAUSE`].
const RECORD_FIRST_PAUSE: Duration = Duration::from_millis(100);
const RECORD_MAX_PAUSE: Duration = Duration::from_secs(1);

/// The workers of one instance.
#[derive(Clone)]
pub struct WebhookDeliveryWorkers {
    pool: PgPool,
    client: WebhookClient,
    secrets: Arc<SecretBox>,
    renderer: Arc<JsonEvents>,
    settings: OutboundWebhookSettings,
    wake: Arc<Notify>,
    /// The domain of the `Message-ID` of the notice a disabled endpoint's admins are sent.
    message_domain: String,
    /// Counts the attempts recorded failed because this build cannot read their event.
    unreadable: Counter,
}

impl WebhookDeliveryWorkers {
    pub fn new(
        pool: PgPool,
        client: WebhookClient,
        secrets: Arc<SecretBox>,
        renderer: Arc<JsonEvents>,
        settings: OutboundWebhookSettings,
        wake: Arc<Notify>,
        message_domain: String,
    ) -> Self {
        Self {
            pool,
            client,
            secrets,
            renderer,
            settings,
            wake,
            message_domain,
            unreadable: Counter::default(),
        }
    }

    /// The same, counting the deliveries whose event does not read here into `metrics`.
    pub fn counting_into(self, metrics: &Metrics) -> Self {
        Self {
            unreadable: metrics.events().unreadable_delivered.clone(),
            ..self
        }
    }

    /// Delivers until `stop`: up to `OUTBOUND_WEBHOOK_WORKERS` endpoints at once, each by a task
    /// of its own, at most half of them failing. When the instance stops, the attempts under way
    /// end (each within its timeout) and what is left stays due for the next worker.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let places = usize::try_from(self.settings.workers).unwrap_or(usize::MAX);
        let failing_places = places.div_ceil(2);
        let mut under_way: JoinSet<(bool, uuid::Uuid)> = JoinSet::new();
        let mut failing_under_way = 0_usize;
        // The account of each place held, one entry per place.
        let mut held: Vec<uuid::Uuid> = Vec::new();
        while !stop.is_cancelled() {
            while let Some(ended) = under_way.try_join_next() {
                let (failing, account) = ended_delivering(ended, &mut under_way)?;
                failing_under_way = failing_under_way.saturating_sub(usize::from(failing));
                give_back(&mut held, account);
            }
            let free = places.saturating_sub(under_way.len());
            let mut full_claim = false;
            if free > 0 {
                // The leases begin when PostgreSQL runs the claim, after this: counted from here,
                // a lease's end as the workers reckon it is never later than its real end.
                let asked = Instant::now();
                match self
                    .claim(
                        free,
                        failing_places.saturating_sub(failing_under_way),
                        &held,
                    )
                    .await
                {
                    Ok(claimed) => {
                        full_claim = claimed.len() == free;
                        for endpoint in claimed {
                            let failing = endpoint.failing;
                            let account = endpoint.account_id;
                            failing_under_way += usize::from(failing);
                            held.push(account);
                            let workers = self.clone();
                            let stop = stop.clone();
                            under_way.spawn(async move {
                                workers.work_on(endpoint, asked, &stop).await;
                                (failing, account)
                            });
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the webhook delivery queue cannot be read; will retry");
                    }
                }
            }
            // After a claim that filled every free place, more may be due: look again as soon
            // as a place frees up, not after the poll interval.
            tokio::select! {
                () = stop.cancelled() => {}
                () = self.wake.notified(), if !full_claim => {}
                () = tokio::time::sleep(self.settings.poll_interval), if !full_claim => {}
                Some(ended) = under_way.join_next(), if !under_way.is_empty() => {
                    let (failing, account) = ended_delivering(ended, &mut under_way)?;
                    failing_under_way = failing_under_way.saturating_sub(usize::from(failing));
                    give_back(&mut held, account);
                }
            }
        }
        while let Some(ended) = under_way.join_next().await {
            ended_delivering(ended, &mut under_way)?;
        }
        Ok(())
    }

    /// How long a claim holds an endpoint: every attempt of a full batch at its timeout, and a
    /// margin to record them.
    fn lease(&self) -> Duration {
        self.settings
            .attempt_timeout
            .saturating_mul(self.settings.batch)
            .saturating_add(LEASE_MARGIN)
    }

    /// Leases up to `limit` endpoints with due deliveries, at most `failing_limit` failing or
    /// slow, and no account beyond its places, counting those `held` (by account, one entry per
    /// place this instance holds).
    async fn claim(
        &self,
        limit: usize,
        failing_limit: usize,
        held: &[uuid::Uuid],
    ) -> Result<Vec<ClaimedEndpoint>, AppError> {
        let lease = self.lease();
        let mut conn = crate::db::connection(&self.pool).await?;
        WebhookDeliveryRow::claim(
            &mut conn,
            i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
            i64::from(self.settings.batch),
            i64::try_from(limit).unwrap_or(i64::MAX),
            i64::try_from(failing_limit).unwrap_or(i64::MAX),
            super::endpoints::MOST_RETIRED_SECRETS,
            (held, i64::from(self.settings.max_places_per_account)),
        )
        .await
    }

    /// Makes the attempts of one claimed endpoint, whose claim was asked for at `asked`, then
    /// gives its lease back.
    async fn work_on(&self, claimed: ClaimedEndpoint, asked: Instant, stop: &CancellationToken) {
        // Reckoned from before the claim, not from its answer: a claim answered late (a busy
        // machine, the wait for its commit) shortens the work and never lets an attempt start
        // that could outlive the lease, when another worker may take the same deliveries.
        let lease_ends = asked + self.lease();
        tracing::debug!(endpoint = %claimed.endpoint_id, deliveries = claimed.deliveries.len(),
            "endpoint claimed");
        // An endpoint its worker could not deliver to (a secret that does not open, a record
        // PostgreSQL refused) rests before another claim: taken again at once, it would be
        // failed again at once, by every instance, for as long as the cause lasts.
        let rest = match self.deliver(&claimed, lease_ends, stop).await {
            Ok(()) => None,
            Err(error) => {
                tracing::warn!(endpoint = %claimed.endpoint_id, %error, rest_secs = MAX_ENDPOINT_REST.as_secs(),
                    "delivering to an endpoint failed; its deliveries stay due and it rests");
                Some(MAX_ENDPOINT_REST)
            }
        };
        let released = match crate::db::connection(&self.pool).await {
            Ok(mut conn) => {
                WebhookDeliveryRow::release(
                    &mut conn,
                    claimed.endpoint_id,
                    claimed.lease_token,
                    rest,
                )
                .await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = released {
            tracing::warn!(endpoint = %claimed.endpoint_id, %error, "an endpoint's lease could not be given back; it runs out by itself");
        }
    }

    async fn deliver(
        &self,
        claimed: &ClaimedEndpoint,
        lease_ends: Instant,
        stop: &CancellationToken,
    ) -> Result<(), AppError> {
        let url = match EndpointUrl::stored(&claimed.url) {
            Ok(url) => url,
            Err(problem) => {
                return Err(AppError::internal(anyhow::anyhow!(
                    "endpoint {}: {problem}",
                    claimed.endpoint_id
                )));
            }
        };
        // The current secret first, then every retired one still within its overlap.
        let mut signing = Vec::with_capacity(1 + claimed.retired_secret_ciphertexts.len());
        signing.push(self.open(&claimed.secret_ciphertext, claimed.endpoint_id)?);
        for retired in &claimed.retired_secret_ciphertexts {
            signing.push(self.open(retired, claimed.endpoint_id)?);
        }
        for (index, delivery) in claimed.deliveries.iter().enumerate() {
            // What is left undone stays due: the next worker takes it in order.
            if stop.is_cancelled() {
                tracing::info!(endpoint = %claimed.endpoint_id,
                    left = claimed.deliveries.len() - index,
                    "stopping: deliveries given back untried");
                return Ok(());
            }
            if Instant::now() + self.settings.attempt_timeout + LEASE_MARGIN / 2 > lease_ends {
                return Ok(());
            }
            let outcome = match &delivery.event {
                Ok(event) => self.attempt(&url, &signing, event).await,
                Err(unreadable) => {
                    // Not the endpoint's fault, and no reason to hold back its later events: the
                    // attempt is recorded failed on the schedule (a newer instance may make one
                    // of the next; after the last the delivery is `failed`, to be redriven), and
                    // the batch goes on.
                    self.unreadable.increment();
                    tracing::warn!(endpoint = %claimed.endpoint_id, delivery = %delivery.id,
                        event_id = %unreadable.event_id, event_type = %unreadable.event_type,
                        problem = %unreadable.problem, attempt = delivery.attempt,
                        "a delivery's event does not read in this build: attempt recorded failed");
                    let outcome = AttemptOutcome {
                        status: None,
                        error: Some(format!(
                            "this instance cannot read the event ({}): {}",
                            unreadable.event_type, unreadable.problem
                        )),
                        excerpt: String::new(),
                        latency: Duration::ZERO,
                    };
                    let written = self
                        .record(
                            claimed,
                            &url,
                            delivery,
                            (Utc::now(), outcome),
                            lease_ends,
                            stop,
                        )
                        .await?;
                    if !written {
                        return Ok(());
                    }
                    continue;
                }
            };
            let delivered = outcome.1.delivered();
            tracing::debug!(endpoint = %claimed.endpoint_id, delivery = %delivery.id,
                status = outcome.1.status, error = outcome.1.error.as_deref(), delivered,
                "delivery attempted");
            let written = self
                .record(claimed, &url, delivery, outcome, lease_ends, stop)
                .await?;
            // A record refused means another worker holds the endpoint now, or has made this
            // attempt already: the rest of the batch is no longer this worker's to make.
            if !written || !delivered {
                return Ok(());
            }
        }
        Ok(())
    }

    fn open(&self, sealed: &[u8], endpoint: uuid::Uuid) -> Result<SigningSecret, AppError> {
        self.secrets.open(sealed).map_err(|_| {
            AppError::internal(anyhow::anyhow!(
                "the secret of endpoint {endpoint} does not open: was WEBHOOK_ENDPOINT_SECRETS_KEY (or JWT_SECRET) changed?"
            ))
        })
    }

    async fn attempt(
        &self,
        url: &EndpointUrl,
        signing: &[SigningSecret],
        event: &StoredEvent,
    ) -> (DateTime<Utc>, AttemptOutcome) {
        let started_at = Utc::now();
        let body = match self.renderer.body(event) {
            Ok(body) => body,
            Err(problem) => {
                return (
                    started_at,
                    AttemptOutcome {
                        status: None,
                        error: Some(format!("the event could not be rendered: {problem}")),
                        excerpt: String::new(),
                        latency: Duration::ZERO,
                    },
                );
            }
        };
        let id = event_public_id(event.id);
        let timestamp = started_at.timestamp();
        let secrets: Vec<&SigningSecret> = signing.iter().collect();
        let signature = webhook_signature_header(&secrets, &id, timestamp, &body);
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let values = [
            ("webhook-id", id),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        for (name, value) in values {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        let outcome = self
            .client
            .post(url.as_url(), headers, Bytes::from(body))
            .await;
        (started_at, outcome)
    }

    /// Records the attempt under the claim's lease; `false` when the record was refused.
    async fn record(
        &self,
        claimed: &ClaimedEndpoint,
        url: &EndpointUrl,
        delivery: &ClaimedDelivery,
        (started_at, outcome): (DateTime<Utc>, AttemptOutcome),
        lease_ends: Instant,
        stop: &CancellationToken,
    ) -> Result<bool, AppError> {
        let schedule = &self.settings.retry_schedule;
        let attempt = u32::try_from(delivery.attempt).unwrap_or(u32::MAX);
        // Delays, not instants: the statement adds them to PostgreSQL's `now()`, the clock the
        // claims compare with, so an instance whose own clock is off schedules nothing early or
        // late.
        let (state, next_attempt_in, rests_for) = if outcome.delivered() {
            (DeliveryState::Succeeded, None, None)
        } else {
            match schedule.delay_after(attempt) {
                None => (
                    DeliveryState::Failed,
                    None,
                    Some(MAX_ENDPOINT_REST.min(first_delay(schedule))),
                ),
                Some(delay) => {
                    let delay = jittered(delay);
                    (
                        DeliveryState::Pending,
                        Some(delay),
                        Some(delay.min(MAX_ENDPOINT_REST)),
                    )
                }
            }
        };
        let error = outcome.error.as_deref().map(truncated);
        let record = AttemptRecord {
            delivery_id: delivery.id,
            attempt: delivery.attempt,
            url: url.as_str(),
            started_at,
            latency_ms: i32::try_from(outcome.latency.as_millis()).unwrap_or(i32::MAX),
            http_status: outcome.status.map(i32::from),
            error: error.as_deref(),
            response_excerpt: &outcome.excerpt,
            state,
            next_attempt_in,
            endpoint_rests_for: rests_for,
            claimed_url: &claimed.url,
            // An event this instance cannot read says nothing of the endpoint.
            about_endpoint: delivery.event.is_ok(),
            slow: outcome.delivered() && outcome.latency > self.settings.attempt_timeout / 2,
        };
        let (mut conn, recorded) = self.write(claimed, &record, lease_ends, stop).await?;
        match recorded {
            Recorded::LeaseLost => {
                tracing::warn!(
                    endpoint = %claimed.endpoint_id,
                    delivery = %delivery.id,
                    "the endpoint's lease ran out during an attempt, or the attempt was made \
                     already; its record was not written, and the batch ends here"
                );
                return Ok(false);
            }
            Recorded::Written {
                failing_for: Some(failing_for),
            } if failing_for >= schedule.span() => {
                if let Some((account, url)) = WebhookDeliveryRow::disable_if_failing_for(
                    &mut conn,
                    claimed.endpoint_id,
                    schedule.span(),
                    &self.message_domain,
                )
                .await?
                {
                    tracing::warn!(
                        endpoint = %claimed.endpoint_id,
                        %account,
                        %url,
                        "the endpoint failed for the whole retry schedule: disabled, and its account's admins notified"
                    );
                }
            }
            Recorded::Written { .. } => {}
        }
        Ok(true)
    }

    /// Writes an attempt's record, and writes it again after PostgreSQL could not be reached,
    /// for as long as the lease lasts (or until the instance stops): a record that is not
    /// written leaves the attempt to be made again by the next worker, so without this a blip of
    /// the database would cost the endpoint a second request. Writing again is safe: the record
    /// is refused once the attempt is recorded or the lease is someone else's.
    async fn write(
        &self,
        claimed: &ClaimedEndpoint,
        record: &AttemptRecord<'_>,
        lease_ends: Instant,
        stop: &CancellationToken,
    ) -> Result<(crate::db::PooledConnection<'_>, Recorded), AppError> {
        let mut pause = RECORD_FIRST_PAUSE;
        loop {
            let written = async {
                let mut conn = crate::db::connection(&self.pool).await?;
                let recorded = WebhookDeliveryRow::record(
                    &mut conn,
                    claimed.endpoint_id,
                    claimed.lease_token,
                    record,
                )
                .await?;
                Ok((conn, recorded))
            }
            .await;
            let error = match written {
                Err(error @ AppError::Unavailable { .. }) => error,
                written => return written,
            };
            if Instant::now() + pause >= lease_ends {
                return Err(error);
            }
            tracing::debug!(endpoint = %claimed.endpoint_id, delivery = %record.delivery_id,
                %error, "an attempt's record could not be written; writing it again");
            tokio::select! {
                () = stop.cancelled() => return Err(error),
                () = tokio::time::sleep(pause) => {}
            }
            pause = pause.saturating_mul(2).min(RECORD_MAX_PAUSE);
        }
    }
}

fn first_delay(schedule: &crate::domain::RetrySchedule) -> Duration {
    schedule.delay_after(1).unwrap_or(MAX_ENDPOINT_REST)
}

/// A delay within ±20 % of `delay`, so that endpoints failing together do not retry together.
fn jittered(delay: Duration) -> Duration {
    let factor = rand::thread_rng().gen_range(0.8..=1.2);
    delay.mul_f64(factor)
}

/// An error as the log keeps it: at most 500 characters.
fn truncated(error: &str) -> String {
    error.chars().take(500).collect()
}

/// Gives back one place `account` held.
fn give_back(held: &mut Vec<uuid::Uuid>, account: uuid::Uuid) {
    if let Some(index) = held.iter().position(|holder| *holder == account) {
        held.swap_remove(index);
    }
}

/// Whether a finished delivery task was on a failing (or slow) endpoint, and its account; a task
/// that panicked stops the others (their endpoints' leases run out) and the runner restarts the
/// workers.
fn ended_delivering(
    ended: Result<(bool, uuid::Uuid), JoinError>,
    under_way: &mut JoinSet<(bool, uuid::Uuid)>,
) -> anyhow::Result<(bool, uuid::Uuid)> {
    match ended {
        Ok(ended) => Ok(ended),
        Err(error) => {
            under_way.abort_all();
            Err(anyhow::anyhow!("a webhook delivery task died: {error}"))
        }
    }
}
