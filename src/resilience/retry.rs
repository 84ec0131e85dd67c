//! How often and how soon a failed call to an outside provider (payments, email) is tried again:
//! full-jitter exponential backoff (AWS's "Exponential Backoff and Jitter") between a bounded
//! number of attempts, and a retry budget that keeps retries to a share of recent calls, so that
//! an outage does not multiply the load on a provider that is already struggling. The durable
//! queues (webhook events, notifications) space their attempts with the same backoff.
//!
//! The budget is tower's [`TpsBudget`] (Finagle's retry budget): over a sliding 10-second window,
//! each call deposits `percent` % of a retry and each retry withdraws one; `min_per_second`
//! retries a second are allowed on top whatever the traffic, so a quiet service can still retry
//! a lone failure, while under sustained failure retries settle at `percent` % of calls.
//!
//! [`RetryDriver`] is the one loop around a call to a provider made while someone waits (a
//! charge, an email): each attempt asks the provider's circuit breaker first and records its
//! outcome there, is bounded by `min(attempt timeout, time left before the deadline)`, and is
//! followed by another only while the failure is worth retrying, attempts remain, the backoff
//! (at least the provider's `Retry-After`) ends before the deadline and the budget allows.
//! Deciding what an answer means stays with each provider's adapter ([`AttemptFailed`]).

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
pub use tower::retry::budget::{Budget, TpsBudget};

use super::breaker::{CallOutcome, CircuitBreaker};

/// Attempts and backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included; at least 1.
    pub max_attempts: u32,
    /// The backoff's cap before the first retry; it doubles with each retry.
    pub base_delay: Duration,
    /// The longest backoff.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1 for the first retry): uniformly random in
    /// `0..=min(max_delay, base_delay × 2^(retry-1))`. Full jitter spreads the retries of many
    /// callers that failed together, so they do not return together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self.backoff_cap(retry);
        let cap_micros = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::thread_rng().gen_range(0..=cap_micros))
    }

    /// The upper bound of [`RetryPolicy::backoff`].
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.base_delay
            .saturating_mul(1_u32 << doublings)
            .min(self.max_delay)
    }
}

/// The window over which the budget counts calls and retries.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// The retry budget of one provider, shared by every call to it: retries may be `percent` % of
/// the calls of the last [`BUDGET_WINDOW`] (0..=100), plus `min_per_second` a second.
pub fn retry_budget(percent: u32, min_per_second: u32) -> TpsBudget {
    // An exact ratio of small integers: percent / 100 is representable closely enough that
    // tower's integer deposit and withdrawal amounts come out exact (10 % → withdraw 10 deposits).
    #[expect(clippy::cast_precision_loss, reason = "at most 100")]
    let share = percent.min(100) as f32 / 100.0;
    TpsBudget::new(BUDGET_WINDOW, min_per_second, share)
}

/// What the [`RetryDriver`] needs to know of an attempt that failed; the provider's adapter
/// decides it from the answer (or its absence).
pub trait AttemptFailed {
    /// The error the call ends with when this failure is its last.
    type Error;
    /// What the failure says of the provider's health, recorded on its circuit breaker.
    fn breaker_outcome(&self) -> CallOutcome;
    /// Whether another attempt within this call may pass (a 5xx, no answer); a refusal is final.
    fn worth_retrying(&self) -> bool;
    /// The least wait the provider asked for before another attempt (`Retry-After`).
    fn retry_after(&self) -> Option<Duration>;
    /// The error itself.
    fn into_error(self) -> Self::Error;
}

/// Why a call ended without a success. `last`: what the previous attempt said, when there was
/// one, for the caller to report instead of a bare refusal.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped<E> {
    /// The deadline came before another attempt could start.
    OutOfTime { last: Option<E> },
    /// The circuit breaker refused the next attempt.
    CircuitOpen {
        retry_after: Duration,
        last: Option<E>,
    },
    /// The retry budget is spent: the last attempt's error stands.
    BudgetSpent(E),
    /// The last attempt's error is final: not worth retrying, no attempt left, or no time left
    /// for the backoff.
    Failed(E),
}

/// The attempts of one call to a provider: its breaker, its policy, its budget (shared by every
/// call to the provider) and the timeout of one attempt.
#[derive(Clone, Copy, Debug)]
pub struct RetryDriver<'a> {
    pub breaker: &'a CircuitBreaker,
    pub policy: RetryPolicy,
    pub budget: &'a TpsBudget,
    pub attempt_timeout: Duration,
}

impl RetryDriver<'_> {
    /// Makes attempts (`attempt`, given the timeout of this one) until one succeeds or the call
    /// must stop, before `deadline`. `failed` sees each failed attempt (its number, from 1)
    /// before the driver decides what follows: the place to log it.
    pub async fn run<T, F, Attempt, Fut>(
        &self,
        deadline: Instant,
        mut attempt: Attempt,
        mut failed: impl FnMut(u32, &F),
    ) -> Result<T, Stopped<F::Error>>
    where
        F: AttemptFailed,
        Attempt: FnMut(Duration) -> Fut,
        Fut: Future<Output = Result<T, F>>,
    {
        self.budget.deposit();
        let mut last = None;
        let mut number = 0;
        loop {
            number += 1;
            let now = Instant::now();
            if now >= deadline {
                return Err(Stopped::OutOfTime { last });
            }
            let permit = match self.breaker.try_acquire() {
                Ok(permit) => permit,
                Err(rejection) => {
                    return Err(Stopped::CircuitOpen {
                        retry_after: rejection.retry_after,
                        last,
                    });
                }
            };
            let failure = match attempt(self.attempt_timeout.min(deadline - now)).await {
                Ok(value) => {
                    permit.record(CallOutcome::Success);
                    return Ok(value);
                }
                Err(failure) => failure,
            };
            permit.record(failure.breaker_outcome());
            failed(number, &failure);
            if !failure.worth_retrying() || number >= self.policy.max_attempts {
                return Err(Stopped::Failed(failure.into_error()));
            }
            let delay = self
                .policy
                .backoff(number)
                .max(failure.retry_after().unwrap_or_default());
            if Instant::now() + delay >= deadline {
                return Err(Stopped::Failed(failure.into_error()));
            }
            if !self.budget.withdraw() {
                return Err(Stopped::BudgetSpent(failure.into_error()));
            }
            last = Some(failure.into_error());
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(1_000),
    };

    #[test]
    fn the_backoff_cap_doubles_per_retry_up_to_the_maximum() {
        let caps: Vec<_> = (1..=6).map(|retry| POLICY.backoff_cap(retry)).collect();
        assert_eq!(
            caps,
            [100, 200, 400, 800, 1_000, 1_000].map(Duration::from_millis)
        );
        assert_eq!(POLICY.backoff_cap(u32::MAX), Duration::from_millis(1_000));
    }

    #[test]
    fn backoffs_are_jittered_within_their_cap() {
        let delays: Vec<_> = (0..200).map(|_| POLICY.backoff(2)).collect();
        assert!(
            delays
                .iter()
                .all(|delay| *delay <= Duration::from_millis(200))
        );
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "full jitter spreads delays");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_floor_retries_are_earned_by_calls_a_share_at_a_time() {
        let budget = retry_budget(20, 0);
        assert!(!budget.withdraw(), "nothing earned yet");
        for _ in 0..4 {
            budget.deposit();
            assert!(!budget.withdraw(), "less than one retry earned");
        }
        budget.deposit();
        assert!(budget.withdraw(), "five calls at 20 % earn one retry");
        assert!(!budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_allows_min_per_second_retries_over_the_window_without_any_call() {
        let budget = retry_budget(0, 1);
        for retry in 0..10 {
            assert!(budget.withdraw(), "retry {retry} of the window's ten");
        }
        assert!(!budget.withdraw(), "the window's floor is spent");
        (0..1_000).for_each(|_| budget.deposit());
        assert!(!budget.withdraw(), "a 0 % budget earns nothing from calls");
    }

    #[tokio::test(start_paused = true)]
    async fn what_calls_earned_expires_with_the_window() {
        let budget = retry_budget(100, 0);
        budget.deposit();
        tokio::time::advance(BUDGET_WINDOW + Duration::from_secs(1)).await;
        assert!(
            !budget.withdraw(),
            "a call older than the window earns nothing"
        );
        budget.deposit();
        assert!(budget.withdraw());
    }

    /// A failure as a test provider classifies it.
    #[derive(Debug)]
    struct TestFailure {
        retryable: bool,
        retry_after: Option<Duration>,
        name: &'static str,
    }

    impl AttemptFailed for TestFailure {
        type Error = &'static str;
        fn breaker_outcome(&self) -> CallOutcome {
            if self.retryable {
                CallOutcome::Failure
            } else {
                CallOutcome::Success
            }
        }
        fn worth_retrying(&self) -> bool {
            self.retryable
        }
        fn retry_after(&self) -> Option<Duration> {
            self.retry_after
        }
        fn into_error(self) -> &'static str {
            self.name
        }
    }

    const TRY_AGAIN: TestFailure = TestFailure {
        retryable: true,
        retry_after: None,
        name: "try again",
    };

    fn breaker(failure_threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new(
            "test",
            super::super::breaker::BreakerConfig {
                failure_threshold,
                cool_down: Duration::from_secs(60),
            },
        )
    }

    /// The driver the tests run: [`POLICY`], one second an attempt.
    fn driver<'a>(breaker: &'a CircuitBreaker, budget: &'a TpsBudget) -> RetryDriver<'a> {
        RetryDriver {
            breaker,
            policy: POLICY,
            budget,
            attempt_timeout: Duration::from_secs(1),
        }
    }

    /// Runs a call whose attempts answer `answers` in turn (then succeed), and returns what it
    /// ended with and how many attempts it made.
    async fn call(
        driver: RetryDriver<'_>,
        deadline: Instant,
        answers: Vec<TestFailure>,
    ) -> (Result<&'static str, Stopped<&'static str>>, usize) {
        let mut answers = answers.into_iter();
        let mut made = 0;
        let result = driver
            .run(
                deadline,
                |_timeout| {
                    made += 1;
                    let answer = answers.next();
                    async move { answer.map_or(Ok("done"), Err) }
                },
                |_, _: &TestFailure| {},
            )
            .await;
        (result, made)
    }

    #[tokio::test(start_paused = true)]
    async fn a_retryable_failure_is_tried_again_until_an_attempt_succeeds() {
        let (breaker, budget) = (breaker(10), retry_budget(100, 10));
        let driver = driver(&breaker, &budget);
        let deadline = Instant::now() + Duration::from_secs(60);
        let (result, made) = call(driver, deadline, vec![TRY_AGAIN, TRY_AGAIN]).await;
        assert_eq!((result, made), (Ok("done"), 3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_failure_ends_the_call_after_one_attempt() {
        let (breaker, budget) = (breaker(10), retry_budget(100, 10));
        let driver = driver(&breaker, &budget);
        let refused = TestFailure {
            retryable: false,
            retry_after: None,
            name: "refused",
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let (result, made) = call(driver, deadline, vec![refused]).await;
        assert_eq!((result, made), (Err(Stopped::Failed("refused")), 1));
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_stop_at_the_policys_maximum() {
        let (breaker, budget) = (breaker(100), retry_budget(100, 100));
        let driver = driver(&breaker, &budget);
        let deadline = Instant::now() + Duration::from_secs(600);
        let failures = (0..10).map(|_| TRY_AGAIN).collect();
        let (result, made) = call(driver, deadline, failures).await;
        assert_eq!((result, made), (Err(Stopped::Failed("try again")), 5));
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_refuses_the_next_attempt_and_names_the_last_failure() {
        let (breaker, budget) = (breaker(2), retry_budget(100, 10));
        let driver = driver(&breaker, &budget);
        let deadline = Instant::now() + Duration::from_secs(60);
        let (result, made) = call(driver, deadline, vec![TRY_AGAIN, TRY_AGAIN, TRY_AGAIN]).await;
        assert_eq!(made, 2);
        let Err(Stopped::CircuitOpen { retry_after, last }) = result else {
            panic!("the breaker did not stop the call: {result:?}");
        };
        assert_eq!(last, Some("try again"));
        assert!(retry_after > Duration::from_secs(59), "{retry_after:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_ends_the_call_with_the_last_failure() {
        let (breaker, budget) = (breaker(10), retry_budget(0, 0));
        let driver = driver(&breaker, &budget);
        let deadline = Instant::now() + Duration::from_secs(60);
        let (result, made) = call(driver, deadline, vec![TRY_AGAIN]).await;
        assert_eq!((result, made), (Err(Stopped::BudgetSpent("try again")), 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_waits_at_least_the_providers_retry_after_and_never_past_the_deadline() {
        let (breaker, budget) = (breaker(10), retry_budget(100, 10));
        let driver = driver(&breaker, &budget);
        let slow_down = || TestFailure {
            retryable: true,
            retry_after: Some(Duration::from_secs(5)),
            name: "slow down",
        };
        let started = Instant::now();
        let (result, made) =
            call(driver, started + Duration::from_secs(60), vec![slow_down()]).await;
        assert_eq!((result, made), (Ok("done"), 2));
        assert!(started.elapsed() >= Duration::from_secs(5));

        let (result, made) = call(
            driver,
            Instant::now() + Duration::from_secs(3),
            vec![slow_down()],
        )
        .await;
        assert_eq!((result, made), (Err(Stopped::Failed("slow down")), 1));
    }

    #[tokio::test(start_paused = true)]
    async fn no_attempt_starts_after_the_deadline() {
        let (breaker, budget) = (breaker(10), retry_budget(100, 10));
        let driver = driver(&breaker, &budget);
        let (result, made) = call(driver, Instant::now(), vec![]).await;
        assert_eq!((result, made), (Err(Stopped::OutOfTime { last: None }), 0));
    }
}
