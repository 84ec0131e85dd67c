//! A circuit breaker for an outside provider (the payment provider, the email provider): after
//! `failure_threshold` consecutive failures it opens and refuses calls without touching the
//! network for `cool_down`; then it half-opens and lets exactly one probe through, whose success
//! closes it and whose failure opens it again. Each provider has its own breaker, with its own
//! settings (`PAYMENT_PROVIDER_BREAKER_*`, `EMAIL_BREAKER_*`).
//!
//! Consecutive failures rather than a failure ratio: the providers' traffic is low and bursty,
//! and a ratio over a window needs a minimum call count that a quiet hour never reaches, while a
//! run of N failures in a row is unambiguous at any volume. What counts as a failure is decided
//! by the caller ([`CallOutcome`]): a decline, an invalid request or a refused recipient is the
//! provider answering, so it is a success for the breaker.
//!
//! Every transition takes the current instant as an argument inside the module, so the tests
//! drive the state machine with a fake clock (instants they compute) instead of sleeping.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::telemetry::metrics::BreakerGauges;

/// The breaker's state as the rest of the service sees it (health reports BillingService
/// NOT_SERVING unless the payment provider's is `Closed`, NotificationService NOT_SERVING while
/// the email provider's is `Open`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// The cool-down ended: one probe call may go through.
    HalfOpen,
}

impl BreakerState {
    /// Every state, in the order metrics export them.
    pub const ALL: [Self; 3] = [Self::Closed, Self::Open, Self::HalfOpen];

    /// The `state` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// How one call through a [`BreakerPermit`] ended, from the breaker's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// The provider answered (a payment, a decline, an invalid request, a refused recipient).
    Success,
    /// The provider did not answer usefully (5xx, connection failure, timeout, a refused key).
    Failure,
    /// Says nothing about the provider's health (the call was abandoned by its caller, or the
    /// provider asked us to slow down): releases a probe without changing the state.
    Neutral,
}

/// How one call to a provider ended, as its latency is labelled (`outcome` of
/// `supportdesk_provider_call_duration_seconds`, and of the call's trace span).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// The provider did what was asked (a 2xx, a relay's acceptance).
    Ok,
    /// The provider answered no for good: a 4xx, a relay's 5xx refusal.
    Refused,
    /// The provider answered that it failed (a 5xx, a relay's 4xx).
    Failed,
    /// No answer: a timeout, a connection that failed.
    NoAnswer,
}

impl CallResult {
    /// Every result, in the order metrics export them.
    pub const ALL: [Self; 4] = [Self::Ok, Self::Refused, Self::Failed, Self::NoAnswer];

    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Failed => "failed",
            Self::NoAnswer => "no_answer",
        }
    }
}

/// What times the calls through a breaker ([`CircuitBreaker::report_to`] hands one over).
pub type CallTimer = Arc<dyn Fn(CallResult, Duration) + Send + Sync>;

/// The knobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker; at least 1.
    pub failure_threshold: u32,
    /// How long it stays open before letting a probe through.
    pub cool_down: Duration,
}

/// Why a call was refused without being attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerRejection {
    /// How long until a probe may go through (zero while a probe is in flight), for RetryInfo.
    pub retry_after: Duration,
}

#[derive(Debug)]
enum Inner {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

impl Inner {
    fn public(&self) -> BreakerState {
        match self {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// The breaker. Cheap to clone: clones share the state. It also carries the provider's call
/// timer ([`Self::timed`]): every call to a provider already holds its breaker, so the timer
/// reaches each call site without a handle of its own.
#[derive(Clone)]
pub struct CircuitBreaker {
    /// The provider it guards, as logs and metrics name it (`payments`, `email`).
    provider: &'static str,
    config: BreakerConfig,
    inner: Arc<Mutex<Inner>>,
    changes: Arc<watch::Sender<BreakerState>>,
    timer: Arc<OnceLock<CallTimer>>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("provider", &self.provider)
            .field("config", &self.config)
            .field("inner", &self.inner)
            .field("timed", &self.timer.get().is_some())
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A closed breaker guarding `provider` (`payments`, `email`: the name in its log lines).
    pub fn new(provider: &'static str, config: BreakerConfig) -> Self {
        let (changes, _) = watch::channel(BreakerState::Closed);
        Self {
            provider,
            config: BreakerConfig {
                failure_threshold: config.failure_threshold.max(1),
                ..config
            },
            inner: Arc::new(Mutex::new(Inner::Closed {
                consecutive_failures: 0,
            })),
            changes: Arc::new(changes),
            timer: Arc::default(),
        }
    }

    /// Times every call [`Self::timed`] reports with `timer` from now on (the first timer
    /// handed over stays).
    pub fn time_calls_with(&self, timer: CallTimer) {
        let _ = self.timer.set(timer);
    }

    /// Reports one call to the provider that ended with `result` after `took` (one attempt:
    /// each retry is a call of its own). Nothing happens until a timer is handed over.
    pub fn timed(&self, result: CallResult, took: Duration) {
        if let Some(timer) = self.timer.get() {
            timer(result, took);
        }
    }

    /// Reports this breaker to `gauges` from now on: its state at each scrape, and the time of
    /// every call [`Self::timed`] reports, by how it ended.
    pub fn report_to(&self, gauges: &BreakerGauges) {
        let timings =
            CallResult::ALL.map(|result| gauges.call_timing(self.provider, result.as_str()));
        self.time_calls_with(Arc::new(move |result, took| {
            let index = CallResult::ALL
                .iter()
                .position(|known| *known == result)
                .unwrap_or_default();
            timings[index].observe(took);
        }));
        let breaker = self.clone();
        gauges.track_state(
            self.provider,
            &BreakerState::ALL.map(BreakerState::as_str),
            Box::new(move || breaker.state().as_str()),
        );
    }

    /// The provider it guards.
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The current state. An open breaker whose cool-down has ended reports `HalfOpen`: the next
    /// call would be let through as a probe.
    pub fn state(&self) -> BreakerState {
        self.state_at(Instant::now())
    }

    fn state_at(&self, now: Instant) -> BreakerState {
        let mut inner = self.lock();
        self.advance(&mut inner, now);
        inner.public()
    }

    /// While open: how long until a probe may go through. `None` when closed or half-open (a
    /// call may be tried). Lets a caller refuse work before recording anything it would then
    /// have to finish.
    pub fn refusing_for(&self) -> Option<Duration> {
        self.refusing_for_at(Instant::now())
    }

    fn refusing_for_at(&self, now: Instant) -> Option<Duration> {
        let mut inner = self.lock();
        self.advance(&mut inner, now);
        match &*inner {
            Inner::Open { until } => Some(until.saturating_duration_since(now)),
            Inner::Closed { .. } | Inner::HalfOpen { .. } => None,
        }
    }

    /// A receiver that sees every state change (the open → half-open change is seen when the
    /// next call or [`CircuitBreaker::state`] notices the cool-down has ended).
    pub fn subscribe(&self) -> watch::Receiver<BreakerState> {
        self.changes.subscribe()
    }

    /// Asks to make one call. Refused at once while open, or while half-open with the probe
    /// already in flight.
    pub fn try_acquire(&self) -> Result<BreakerPermit, BreakerRejection> {
        self.try_acquire_at(Instant::now())
    }

    fn try_acquire_at(&self, now: Instant) -> Result<BreakerPermit, BreakerRejection> {
        let mut inner = self.lock();
        self.advance(&mut inner, now);
        match &mut *inner {
            Inner::Closed { .. } => Ok(self.permit(false)),
            Inner::Open { until } => Err(BreakerRejection {
                retry_after: until.saturating_duration_since(now),
            }),
            Inner::HalfOpen { probe_in_flight } => {
                if *probe_in_flight {
                    Err(BreakerRejection {
                        retry_after: Duration::ZERO,
                    })
                } else {
                    *probe_in_flight = true;
                    Ok(self.permit(true))
                }
            }
        }
    }

    fn permit(&self, probe: bool) -> BreakerPermit {
        BreakerPermit {
            breaker: self.clone(),
            probe,
            recorded: false,
        }
    }

    fn record(&self, probe: bool, outcome: CallOutcome, now: Instant) {
        let mut inner = self.lock();
        self.advance(&mut inner, now);
        let next = match (&*inner, outcome) {
            (Inner::Closed { .. }, CallOutcome::Success) => Inner::Closed {
                consecutive_failures: 0,
            },
            (
                Inner::Closed {
                    consecutive_failures,
                },
                CallOutcome::Failure,
            ) => {
                let failures = consecutive_failures.saturating_add(1);
                if failures >= self.config.failure_threshold {
                    self.open_until(now)
                } else {
                    Inner::Closed {
                        consecutive_failures: failures,
                    }
                }
            }
            (Inner::HalfOpen { .. }, CallOutcome::Success) if probe => Inner::Closed {
                consecutive_failures: 0,
            },
            (Inner::HalfOpen { .. }, CallOutcome::Failure) if probe => self.open_until(now),
            (Inner::HalfOpen { .. }, CallOutcome::Neutral) if probe => Inner::HalfOpen {
                probe_in_flight: false,
            },
            // A call admitted while closed that finishes after the breaker opened, a neutral
            // outcome while closed, or a non-probe result while half-open: none of them is news
            // about the state the breaker is in now.
            (Inner::Closed { .. }, CallOutcome::Neutral)
            | (Inner::Open { .. }, _)
            | (Inner::HalfOpen { .. }, _) => return,
        };
        self.replace(&mut inner, next);
    }

    fn open_until(&self, now: Instant) -> Inner {
        Inner::Open {
            until: now + self.config.cool_down,
        }
    }

    /// Open → half-open once the cool-down has ended.
    fn advance(&self, inner: &mut Inner, now: Instant) {
        if let Inner::Open { until } = inner
            && now >= *until
        {
            self.replace(
                inner,
                Inner::HalfOpen {
                    probe_in_flight: false,
                },
            );
        }
    }

    fn replace(&self, inner: &mut Inner, next: Inner) {
        let before = inner.public();
        *inner = next;
        let after = inner.public();
        if before != after {
            tracing::warn!(
                provider = self.provider,
                ?before,
                ?after,
                "circuit breaker changed state"
            );
            self.changes.send_replace(after);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a few words updated atomically under the lock; a panic elsewhere cannot
        // leave it half-written, so a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Leave to make one call. Record how it ended; dropped unrecorded (the caller's future was
/// cancelled), it counts as [`CallOutcome::Neutral`], so a cancelled probe frees the slot.
#[derive(Debug)]
pub struct BreakerPermit {
    breaker: CircuitBreaker,
    probe: bool,
    recorded: bool,
}

impl BreakerPermit {
    pub fn record(self, outcome: CallOutcome) {
        self.record_at(outcome, Instant::now());
    }

    fn record_at(mut self, outcome: CallOutcome, now: Instant) {
        self.recorded = true;
        self.breaker.record(self.probe, outcome, now);
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker
                .record(self.probe, CallOutcome::Neutral, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_breaker_reported_to_the_metrics_shows_its_state_at_each_scrape() {
        let metrics = crate::telemetry::metrics::Metrics::default();
        let breaker = CircuitBreaker::new(
            "email",
            BreakerConfig {
                failure_threshold: 1,
                cool_down: Duration::from_secs(60),
            },
        );
        breaker.report_to(metrics.breakers());
        breaker.timed(CallResult::Failed, Duration::from_millis(3));
        let text = metrics.render();
        for line in [
            r#"supportdesk_provider_breaker_state{provider="email",state="closed"} 1"#,
            r#"supportdesk_provider_breaker_state{provider="email",state="open"} 0"#,
            r#"supportdesk_provider_breaker_state{provider="email",state="half_open"} 0"#,
            r#"supportdesk_provider_call_duration_seconds_count{provider="email",outcome="failed"} 1"#,
            r#"supportdesk_provider_call_duration_seconds_count{provider="email",outcome="ok"} 0"#,
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "{line} missing from:\n{text}"
            );
        }
        breaker.try_acquire().unwrap().record(CallOutcome::Failure);
        let text = metrics.render();
        assert!(
            text.contains(
                "supportdesk_provider_breaker_state{provider=\"email\",state=\"open\"} 1\n"
            )
        );
        assert!(text.contains(
            "supportdesk_provider_breaker_state{provider=\"email\",state=\"closed\"} 0\n"
        ));
    }

    const COOL_DOWN: Duration = Duration::from_secs(10);

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(
            "test",
            BreakerConfig {
                failure_threshold: 3,
                cool_down: COOL_DOWN,
            },
        )
    }

    fn fail(breaker: &CircuitBreaker, at: Instant) {
        breaker
            .try_acquire_at(at)
            .unwrap()
            .record_at(CallOutcome::Failure, at);
    }

    fn open(breaker: &CircuitBreaker, at: Instant) {
        (0..3).for_each(|_| fail(breaker, at));
        assert_eq!(breaker.state_at(at), BreakerState::Open);
    }

    #[test]
    fn it_opens_after_the_threshold_of_consecutive_failures_only() {
        let t0 = Instant::now();
        let breaker = breaker();
        fail(&breaker, t0);
        fail(&breaker, t0);
        breaker
            .try_acquire_at(t0)
            .unwrap()
            .record_at(CallOutcome::Success, t0);
        fail(&breaker, t0);
        fail(&breaker, t0);
        assert_eq!(
            breaker.state_at(t0),
            BreakerState::Closed,
            "a success resets the count"
        );
        fail(&breaker, t0);
        assert_eq!(breaker.state_at(t0), BreakerState::Open);
        let rejection = breaker.try_acquire_at(t0).unwrap_err();
        assert_eq!(rejection.retry_after, COOL_DOWN);
    }

    #[test]
    fn after_the_cool_down_one_probe_goes_through_and_its_success_closes_it() {
        let t0 = Instant::now();
        let breaker = breaker();
        let mut changes = breaker.subscribe();
        open(&breaker, t0);
        assert_eq!(*changes.borrow_and_update(), BreakerState::Open);
        assert_eq!(
            breaker
                .try_acquire_at(t0 + Duration::from_secs(4))
                .unwrap_err()
                .retry_after,
            Duration::from_secs(6)
        );
        let later = t0 + COOL_DOWN;
        assert_eq!(breaker.state_at(later), BreakerState::HalfOpen);
        let probe = breaker.try_acquire_at(later).expect("the probe");
        assert_eq!(
            breaker.try_acquire_at(later).unwrap_err().retry_after,
            Duration::ZERO,
            "only one probe at a time"
        );
        probe.record_at(CallOutcome::Success, later);
        assert_eq!(breaker.state_at(later), BreakerState::Closed);
        assert!(changes.has_changed().unwrap());
        assert_eq!(*changes.borrow_and_update(), BreakerState::Closed);
    }

    #[test]
    fn it_refuses_for_the_rest_of_the_cool_down_only_while_open() {
        let t0 = Instant::now();
        let breaker = breaker();
        assert_eq!(breaker.refusing_for_at(t0), None);
        open(&breaker, t0);
        assert_eq!(
            breaker.refusing_for_at(t0 + Duration::from_secs(4)),
            Some(COOL_DOWN - Duration::from_secs(4))
        );
        assert_eq!(
            breaker.refusing_for_at(t0 + COOL_DOWN),
            None,
            "half-open: try"
        );
    }

    #[test]
    fn a_failed_probe_opens_it_for_another_cool_down() {
        let t0 = Instant::now();
        let breaker = breaker();
        open(&breaker, t0);
        let later = t0 + COOL_DOWN;
        breaker
            .try_acquire_at(later)
            .unwrap()
            .record_at(CallOutcome::Failure, later);
        assert_eq!(breaker.state_at(later), BreakerState::Open);
        assert_eq!(
            breaker.try_acquire_at(later).unwrap_err().retry_after,
            COOL_DOWN
        );
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot_for_the_next_call() {
        let t0 = Instant::now();
        let breaker = breaker();
        open(&breaker, t0);
        let later = t0 + COOL_DOWN;
        drop(breaker.try_acquire_at(later).unwrap());
        assert_eq!(breaker.state_at(later), BreakerState::HalfOpen);
        assert!(breaker.try_acquire_at(later).is_ok());
    }

    #[test]
    fn late_results_of_calls_admitted_before_it_opened_change_nothing() {
        let t0 = Instant::now();
        let breaker = breaker();
        let late = breaker.try_acquire_at(t0).unwrap();
        open(&breaker, t0);
        late.record_at(CallOutcome::Success, t0);
        assert_eq!(breaker.state_at(t0), BreakerState::Open);
    }

    #[test]
    fn neutral_outcomes_neither_count_nor_reset_failures() {
        let t0 = Instant::now();
        let breaker = breaker();
        fail(&breaker, t0);
        fail(&breaker, t0);
        breaker
            .try_acquire_at(t0)
            .unwrap()
            .record_at(CallOutcome::Neutral, t0);
        fail(&breaker, t0);
        assert_eq!(breaker.state_at(t0), BreakerState::Open);
    }
}
