//! The notification workers: they take queued email notifications from the `notifications`
//! outbox and hand each to the email provider, once (docs/notifications.md).
//!
//! One notification at a time, per worker, in three phases, none of which holds a pooled
//! connection across the provider call:
//!
//! 1. **Claim** (one statement, committed at once; `db::queue`): the due notification that
//!    waited longest, under a lease of `NOTIFICATION_LEASE_SECS`, its attempt counted.
//! 2. **Send**, with no connection held: render the message from the stored data, take a place
//!    in the email bulkhead, and hand it to the [`EmailSender`] within what is left of the lease.
//!    Just before the message itself goes (an SMTP relay's `354`, an API request), the sender
//!    calls the worker's [`HandOver`]: one statement, matched to the claim's attempt, records in
//!    PostgreSQL that the attempt handed the message over (its outcome unknown until the provider
//!    answers) and extends the lease to cover the wait for that answer (the sender's bound:
//!    `SMTP_DATA_REPLY_TIMEOUT_SECS`; for an API, what is left of the send) and the record after
//!    it. Not recorded, the message does not go.
//! 3. **Record** (one statement, matched to the claim's attempt): sent; due again after a
//!    full-jitter backoff, or no earlier than the provider asked (a 4xx SMTP answer, a 429, the
//!    provider unreachable); or dead with the provider's reason (a 5xx SMTP answer, a 422, or
//!    the last attempt failed); or given back untried (the breaker refused the send).
//!
//! While the email provider's circuit breaker is open a worker claims nothing: the backlog waits
//! without spending attempts, and only the breaker's probe (one send after each cool-down) is
//! tried.
//!
//! **An unknown outcome** (the message went and no answer came within the bound, the connection
//! was lost after it went, the instance stopped while waiting, or the worker died and the next
//! claim finds its hand-over in PostgreSQL) is sent again at most once, with the same
//! `Message-ID`, the same idempotency key and the same rendered body: after a second unknown
//! outcome the notification is `dead` (`last_error` `outcome unknown: ...`, `unconfirmed_sends`
//! 2) and never sent a third time. Giving up on a slow relay and sending again at will is how a
//! relay got a dozen copies of one message.
//!
//! The workers run only while an email provider is configured: without one, notifications stay
//! queued (`received`), safely, until one is.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::configuration::NotificationWorkerSettings;
use crate::db::PgPool;
use crate::db::models::notification::{ClaimedNotification, MAX_UNCONFIRMED_SENDS, outbox};
use crate::db::queue::AttemptFailed;
use crate::domain::notification_message::{self, single_line};
use crate::domain::{NotificationKind, PasswordTokenKey, SkipReason};
use crate::errors::AppError;
use crate::providers::email::{
    EmailSender, HandOver, HandOverFuture, OutgoingEmail, SendError, Sent,
};
use crate::resilience::retry::RetryPolicy;
use crate::resilience::worker_pool::poll_until_stopped;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces;

/// The longest `last_error` kept.
const MAX_ERROR_CHARS: usize = 300;

/// The first pause before recording an attempt's outcome again, doubling up to the next.
const RECORD_RETRY_FIRST_PAUSE: Duration = Duration::from_millis(50);
const RECORD_RETRY_MAX_PAUSE: Duration = Duration::from_secs(1);

/// The workers of one instance, sharing its pool and its email sender.
#[derive(Clone)]
pub struct NotificationWorkers {
    pool: PgPool,
    sender: Arc<dyn EmailSender>,
    settings: NotificationWorkerSettings,
    /// Where links in messages point.
    public_base_url: url::Url,
    /// Turns a password link's stored seed into its token.
    token_key: PasswordTokenKey,
    metrics: Metrics,
    /// How long a send under way when the instance starts stopping may still take: it must end,
    /// and be recorded, before the drain does, whatever is left of its lease.
    after_stop: Duration,
}

impl std::fmt::Debug for NotificationWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationWorkers")
            .field("settings", &self.settings)
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

/// How an attempt ended, when it did not send.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt later, and not before `not_before` when the provider said so.
    Retry {
        reason: String,
        not_before: Option<Duration>,
    },
    /// No attempt can succeed: dead now.
    Permanent(String),
    /// The provider refused the recipient for good: dead now, and the address suppressed.
    Refused(String),
    /// Nothing was tried: the instance is stopping, or the provider's breaker refused the send.
    /// The notification is given back untried.
    Untried(&'static str),
    /// The message was handed over and no answer came: the provider may have it. Sent again
    /// at most once.
    Unknown(String),
}

/// The times a send runs under, which its hand-over moves.
#[derive(Clone, Copy, Debug)]
struct Times {
    /// When the worker stops waiting for the send.
    deadline: Instant,
    /// When the claim's lease ends, by this instance's clock (never later than PostgreSQL's).
    lease_ends: Instant,
    /// Whether the message was handed over (recorded in PostgreSQL).
    handed_over: bool,
}

/// The worker's [`HandOver`] for one claimed notification: it records the hand-over in
/// PostgreSQL, matched to the claim's attempt, and moves the send's deadline and the lease's end
/// to cover the wait for the provider's answer.
struct Recorder<'a> {
    workers: &'a NotificationWorkers,
    notification: &'a ClaimedNotification,
    times: std::sync::Mutex<Times>,
}

impl Recorder<'_> {
    fn times(&self) -> Times {
        *self
            .times
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl HandOver for Recorder<'_> {
    fn handing_over(&self, wait: Duration) -> HandOverFuture<'_> {
        Box::pin(async move {
            // Beyond the wait: time for the sender's own bound to end the wait, and a quarter of
            // the lease to record what it learned.
            let margin = self.workers.settings.lease / 2;
            let lease = wait + margin;
            let (id, attempt) = (self.notification.id, self.notification.attempts);
            // Counted from before the statement: PostgreSQL's lease starts later, never sooner.
            let asked = Instant::now();
            let recording = async {
                let mut conn = crate::db::connection(&self.workers.pool).await?;
                outbox::hand_over(&mut conn, id, attempt, millis(lease)).await
            };
            let recorded = tokio::time::timeout_at(self.times().deadline, recording)
                .await
                .map_err(|_elapsed| "PostgreSQL did not answer in time".to_owned())?
                .map_err(|error| error.to_string())?;
            if !recorded {
                return Err(
                    "the claim is no longer this attempt's, or the message was already \
                     sent twice without an answer"
                        .to_owned(),
                );
            }
            let mut times = self
                .times
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            times.handed_over = true;
            times.deadline = times.deadline.max(asked + wait + margin / 2);
            times.lease_ends = times.lease_ends.max(asked + lease);
            tracing::debug!(notification_id = %id, attempt, ?wait, "notification handed over");
            Ok(())
        })
    }
}

/// `duration` in whole milliseconds, as PostgreSQL's intervals are given.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl NotificationWorkers {
    pub fn new(
        pool: PgPool,
        sender: Arc<dyn EmailSender>,
        settings: NotificationWorkerSettings,
        public_base_url: url::Url,
        token_key: PasswordTokenKey,
        metrics: Metrics,
    ) -> Self {
        let after_stop = settings.lease;
        Self {
            pool,
            sender,
            settings,
            public_base_url,
            token_key,
            metrics,
            after_stop,
        }
    }

    /// A send under way when the instance starts stopping ends at most `after_stop` later (the
    /// rest of the drain, less the time to record it), however much of its lease is left.
    pub fn sending_at_most_after_stop(mut self, after_stop: Duration) -> Self {
        self.after_stop = after_stop;
        self
    }

    /// Runs `NOTIFICATION_WORKERS` workers until `stop`, and returns once every one has stopped.
    /// A worker that panics stops the others and the panic goes on to the job runner, which
    /// restarts them all.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let workers = self.settings.workers;
        crate::resilience::worker_pool::run("notification worker", workers, stop, |worker, stop| {
            self.clone().run_worker(worker, stop)
        })
        .await
    }

    async fn run_worker(self, worker: u32, stop: CancellationToken) {
        // No wake-up: a notification is found by polling alone.
        poll_until_stopped(
            &stop,
            self.settings.poll_interval,
            None,
            || self.work_once(&stop),
            |error| {
                tracing::warn!(worker, %error, "the notification queue cannot be read; will retry");
            },
        )
        .await;
    }

    /// Claims one due notification and sends it; false when none was due, or when the provider's
    /// breaker refuses sends (nothing is claimed then: the queue waits without spending attempts).
    pub async fn work_once(&self, stop: &CancellationToken) -> Result<bool, AppError> {
        if self.sender.breaker().refusing_for().is_some() {
            return Ok(false);
        }
        let max_attempts = i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX);
        let lease_millis = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX);
        let claimed = {
            let mut conn = crate::db::connection(&self.pool).await?;
            let buried = outbox::bury_abandoned(&mut conn, max_attempts).await?;
            if buried > 0 {
                tracing::warn!(
                    buried,
                    "notifications whose worker stopped during their last attempt are dead"
                );
            }
            // The lease begins when PostgreSQL runs the claim, after this: the deadline below,
            // counted from here, never ends later than it would from the lease's real start.
            let asked = Instant::now();
            (
                outbox::claim_next(&mut conn, lease_millis, max_attempts).await?,
                asked,
            )
        };
        let (Some(notification), asked) = claimed else {
            return Ok(false);
        };
        tracing::debug!(notification_id = %notification.id, attempt = notification.attempts,
            claim_transaction = %notification.claim_transaction, "notification claimed");
        if let Some(skip) = &notification.skip {
            let reason = SkipReason::parse(skip).map_err(|problem| {
                AppError::internal(anyhow::anyhow!(
                    "the claim's skip does not parse: {problem}"
                ))
            })?;
            let mut conn = crate::db::connection(&self.pool).await?;
            if outbox::mark_skipped(&mut conn, notification.id, notification.attempts, reason)
                .await?
            {
                tracing::info!(notification_id = %notification.id, kind = %notification.kind,
                    reason = reason.as_str(), "notification skipped");
            }
            return Ok(true);
        }
        if notification.unconfirmed_sends >= MAX_UNCONFIRMED_SENDS {
            // The second unknown outcome, left by a worker that died after handing the message
            // over (the first one's was counted before): never sent a third time.
            let mut conn = crate::db::connection(&self.pool).await?;
            if outbox::record_dead(
                &mut conn,
                notification.id,
                notification.attempts,
                "outcome unknown: the worker that sent it again stopped before the provider \
                 answered (a second send whose outcome is unknown: not sent again)",
            )
            .await?
            {
                self.metrics
                    .notifications()
                    .failed(notification.kind.as_str(), true);
                tracing::error!(notification_id = %notification.id, kind = %notification.kind,
                    "a notification sent twice without an answer is dead, not sent again");
            }
            return Ok(true);
        }
        // The send ends well within the lease, leaving a quarter of it to record the outcome;
        // reckoned from before the claim, so a claim answered late (a busy machine, the wait for
        // its commit) shortens the send rather than letting it outlive the lease. The hand-over
        // moves both to cover the wait for the provider's answer.
        let recorder = Recorder {
            workers: self,
            notification: &notification,
            times: std::sync::Mutex::new(Times {
                deadline: asked + self.settings.lease * 3 / 4,
                lease_ends: asked + self.settings.lease,
                handed_over: false,
            }),
        };
        // In the trace of the RPC that queued it, when it stored one.
        let result = self
            .send(&notification, &recorder, stop)
            .instrument(traces::resumed(
                "notification.send",
                notification.trace_context.as_deref(),
            ))
            .await;
        // What the attempt did is recorded however briefly PostgreSQL is away: an outcome
        // thrown away would leave the notification leased, and the next claim would send it
        // again once the lease ends (to a relay that already delivered it). Tried again until
        // the lease ends; after that another worker may hold the notification.
        let lease_ends = recorder.times().lease_ends;
        let mut pause = RECORD_RETRY_FIRST_PAUSE;
        loop {
            match self
                .record_outcome(&notification, &result, max_attempts)
                .await
            {
                Err(error) if !error.is_final() && Instant::now() + pause < lease_ends => {
                    tracing::warn!(notification_id = %notification.id, %error, ?pause,
                        "the outcome of a notification's attempt could not be recorded yet");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RECORD_RETRY_MAX_PAUSE);
                }
                recorded => return recorded,
            }
        }
    }

    /// Records what attempt `notification.attempts` of `notification` did: `Ok(false)` when it
    /// was given back untried (the worker then waits its poll interval).
    async fn record_outcome(
        &self,
        notification: &ClaimedNotification,
        result: &Result<Sent, Failure>,
        max_attempts: i32,
    ) -> Result<bool, AppError> {
        let mut conn = crate::db::connection(&self.pool).await?;
        let (id, attempt) = (notification.id, notification.attempts);
        let kind = notification.kind.as_str();
        match result {
            Ok(sent) => {
                if outbox::mark_sent(&mut conn, id, attempt, sent.provider_id.as_deref()).await? {
                    self.metrics.notifications().sent(kind);
                    tracing::info!(notification_id = %id, kind, attempt,
                        provider_id = sent.provider_id.as_deref(), "notification sent");
                } else {
                    tracing::warn!(notification_id = %id,
                        "a notification was sent after another worker took it over");
                }
            }
            Err(Failure::Untried(why)) => {
                outbox::release(&mut conn, id, attempt).await?;
                tracing::info!(notification_id = %id, why, "notification given back unsent");
                // Nothing was done: the worker waits its poll interval rather than claiming again.
                return Ok(false);
            }
            Err(Failure::Permanent(reason)) => {
                let reason = truncated(reason);
                if outbox::record_dead(&mut conn, id, attempt, &reason).await? {
                    self.metrics.notifications().failed(kind, true);
                    tracing::error!(notification_id = %id, kind,
                        error = %reason, "a notification was refused for good and is dead");
                }
            }
            Err(Failure::Refused(reason)) => {
                let reason = truncated(reason);
                let refused = outbox::record_refused(&mut conn, id, attempt, &reason).await?;
                if refused.dead {
                    self.metrics.notifications().failed(kind, true);
                    tracing::error!(notification_id = %id, kind = %notification.kind,
                        error = %reason, newly_suppressed = refused.suppressed,
                        "the provider refused a recipient for good: dead, and the address suppressed");
                }
            }
            Err(Failure::Unknown(reason)) => {
                let reason = truncated(&format!("outcome unknown: {reason}"));
                let state = outbox::record_unknown(
                    &mut conn,
                    id,
                    attempt,
                    &reason,
                    millis(self.backoff(attempt)),
                    max_attempts,
                )
                .await?;
                match state {
                    AttemptFailed::Retrying => {
                        self.metrics.notifications().failed(kind, false);
                        tracing::warn!(notification_id = %id, attempt, error = %reason,
                            "a notification was handed over and no answer came; it will be sent \
                             once more");
                    }
                    AttemptFailed::Dead => {
                        self.metrics.notifications().failed(kind, true);
                        tracing::error!(notification_id = %id, attempt, error = %reason,
                            "a notification sent twice without an answer is dead, not sent again");
                    }
                    AttemptFailed::LeaseLost => tracing::warn!(notification_id = %id,
                        "a notification's unknown outcome came after another worker took it: \
                         not recorded"),
                }
            }
            Err(Failure::Retry { reason, not_before }) => {
                let reason = truncated(reason);
                // No earlier than the provider asked, and never sooner than the backoff.
                let retry_in = self.backoff(attempt).max(not_before.unwrap_or_default());
                let state = outbox::record_failure(
                    &mut conn,
                    id,
                    attempt,
                    &reason,
                    i64::try_from(retry_in.as_millis()).unwrap_or(i64::MAX),
                    max_attempts,
                )
                .await?;
                match state {
                    AttemptFailed::Retrying => {
                        self.metrics.notifications().failed(kind, false);
                        tracing::warn!(notification_id = %id, attempt, error = %reason, ?retry_in,
                            "a notification was not sent; it will be retried");
                    }
                    AttemptFailed::Dead => {
                        self.metrics.notifications().failed(kind, true);
                        tracing::error!(notification_id = %id, attempt, error = %reason,
                            "a notification failed its last attempt and is dead");
                    }
                    AttemptFailed::LeaseLost => tracing::warn!(notification_id = %id,
                        "a notification failed after another worker took it: not recorded"),
                }
            }
        }
        Ok(true)
    }

    /// The delay before the attempt after attempt `attempt`: full jitter under a cap that doubles
    /// per attempt from `NOTIFICATION_RETRY_BASE_MS` up to `NOTIFICATION_RETRY_MAX_MS`.
    fn backoff(&self, attempt: i32) -> Duration {
        RetryPolicy {
            max_attempts: self.settings.max_attempts,
            base_delay: self.settings.retry_base,
            max_delay: self.settings.retry_max,
        }
        .backoff(u32::try_from(attempt).unwrap_or(1))
    }

    /// Renders and sends `notification` by the recorder's deadline (which its hand-over moves),
    /// with no database connection held.
    async fn send(
        &self,
        notification: &ClaimedNotification,
        recorder: &Recorder<'_>,
        stop: &CancellationToken,
    ) -> Result<Sent, Failure> {
        let deadline = recorder.times().deadline;
        let email = self.outgoing(notification).map_err(Failure::Permanent)?;
        let bulkhead = self.sender.bulkhead();
        // Stopping gives the notification back untried only while nothing was sent: waiting for
        // a place. Once the send has begun it runs to its end (bounded by its deadline, inside the
        // lease) and its outcome is recorded: the provider may already have accepted the
        // message, and giving it back uncounted would send it again as if it never was. A
        // stopping instance waits at most `after_stop` for it: a message handed over and not
        // answered by then is an unknown outcome, recorded as one.
        let _place = tokio::select! {
            place = bulkhead.enter(deadline) => place.map_err(|full| Failure::Retry {
                reason: full.to_string(),
                not_before: None,
            })?,
            () = stop.cancelled() => return Err(Failure::Untried("stopping")),
        };
        let sending = self.sender.send(&email, deadline, recorder);
        tokio::pin!(sending);
        // Until the send answers, or its deadline (moved by a hand-over) passes, or, once the
        // instance is stopping, `after_stop` has passed.
        let mut cut: Option<Instant> = None;
        let answered = loop {
            let until = cut.map_or(recorder.times().deadline, |cut| {
                cut.min(recorder.times().deadline)
            });
            tokio::select! {
                answered = &mut sending => break Some(answered),
                () = tokio::time::sleep_until(until) => {
                    // The deadline may have moved meanwhile (a hand-over): wait on if so.
                    if until >= cut.map_or(recorder.times().deadline, |cut| {
                        cut.min(recorder.times().deadline)
                    }) {
                        break None;
                    }
                }
                () = stop.cancelled(), if cut.is_none() => {
                    cut = Some(Instant::now() + self.after_stop);
                }
            }
        };
        let handed_over = recorder.times().handed_over;
        let cut_reason = if stop.is_cancelled() {
            "the instance stopped before the email provider answered"
        } else {
            "the email provider did not answer within the lease"
        };
        match answered {
            Some(Ok(sent)) => Ok(sent),
            Some(Err(SendError::Retry { reason, not_before })) => {
                Err(Failure::Retry { reason, not_before })
            }
            Some(Err(SendError::Permanent(reason))) => Err(Failure::Permanent(reason)),
            Some(Err(SendError::Refused(reason))) => Err(Failure::Refused(reason)),
            Some(Err(SendError::Unknown(reason))) => Err(Failure::Unknown(reason)),
            Some(Err(SendError::CircuitOpen { .. })) => Err(Failure::Untried(
                "the email circuit breaker refused the send",
            )),
            None if handed_over => Err(Failure::Unknown(cut_reason.to_owned())),
            None => Err(Failure::Retry {
                reason: cut_reason.to_owned(),
                not_before: None,
            }),
        }
    }

    /// The message `notification` stands for, or why its stored data cannot make one.
    fn outgoing(&self, notification: &ClaimedNotification) -> Result<OutgoingEmail, String> {
        let kind = NotificationKind::parse(&notification.kind)
            .map_err(|problem| format!("stored kind does not parse: {problem}"))?;
        let rendered = notification_message::render(
            kind,
            &notification.data,
            notification.ticket_id,
            &self.public_base_url,
            &self.token_key,
        )?;
        let domain = self
            .public_base_url
            .host_str()
            .unwrap_or("supportdesk.invalid");
        let to_name = notification
            .data
            .get("requester_name")
            .and_then(serde_json::Value::as_str)
            .map(single_line)
            .unwrap_or_default();
        Ok(OutgoingEmail {
            to_address: notification.recipient_address.clone(),
            to_name,
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
            message_id: notification.message_id.clone(),
            thread_root: notification
                .ticket_id
                .map(|ticket| thread_root(ticket, domain)),
            // Only mail a person may turn off says how (RFC 2369): the settings page.
            list_unsubscribe: kind.is_optional().then(|| {
                format!(
                    "<{}>",
                    notification_message::notification_settings_link(&self.public_base_url)
                )
            }),
            idempotency_key: idempotency_key(notification.id),
            notification_id: notification.id,
        })
    }
}

/// The `Message-ID` a ticket's mails all refer to (`In-Reply-To`, `References`), so that they
/// thread together.
pub fn thread_root(ticket_id: uuid::Uuid, domain: &str) -> String {
    format!("<ticket-{ticket_id}@{domain}>")
}

/// The idempotency key of notification `id`: the same on every attempt and after a re-drive, so
/// that an API provider records one email for it however often it is sent.
pub fn idempotency_key(id: uuid::Uuid) -> String {
    format!("notification-{id}")
}

/// A provider's words as `last_error` stores them: at most [`MAX_ERROR_CHARS`], and a NUL (which
/// a relay's reply or an API's JSON may carry, and PostgreSQL's `text` refuses, failing the
/// record and leaving the row leased) as U+FFFD.
fn truncated(message: &str) -> String {
    message
        .chars()
        .take(MAX_ERROR_CHARS)
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_providers_reason_is_stored_without_a_nul_and_at_most_its_limit() {
        assert_eq!(truncated("550 no\0such box"), "550 no\u{FFFD}such box");
        assert_eq!(
            truncated(&"x".repeat(MAX_ERROR_CHARS + 5)).chars().count(),
            MAX_ERROR_CHARS
        );
    }

    #[test]
    fn a_tickets_mails_share_one_root_on_the_desks_domain() {
        let ticket = uuid::Uuid::nil();
        assert_eq!(
            thread_root(ticket, "desk.example.com"),
            "<ticket-00000000-0000-0000-0000-000000000000@desk.example.com>"
        );
    }

    #[test]
    fn a_long_error_is_cut_to_what_the_column_keeps() {
        assert_eq!(
            truncated(&"é".repeat(1000)).chars().count(),
            MAX_ERROR_CHARS
        );
    }
}
