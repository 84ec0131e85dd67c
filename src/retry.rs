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

use std::time::Duration;

use rand::Rng;
pub use tower::retry::budget::{Budget, TpsBudget};

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
}
