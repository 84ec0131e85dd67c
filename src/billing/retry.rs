//! How often and how soon a failed provider call is tried again: full-jitter exponential backoff
//! (AWS's "Exponential Backoff and Jitter") between a bounded number of attempts, and a retry
//! budget that keeps retries to a fixed share of recent calls, so that an outage does not
//! multiply the load on a provider that is already struggling.
//!
//! The budget is a token bucket counted in thousandths of a retry (integers: there is no float
//! in billing). Every call deposits `percent` × 10 thousandths; every retry withdraws 1000. The
//! bucket holds at most `burst` retries and starts full, so a quiet service can still retry a
//! lone failure, while under sustained failure retries settle at `percent` % of calls.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

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

const MILLI: u64 = 1_000;

/// The token bucket limiting retries to a share of calls. Shared by every call to one provider.
#[derive(Debug)]
pub struct RetryBudget {
    deposit_per_call: u64,
    capacity: u64,
    balance: Mutex<u64>,
}

impl RetryBudget {
    /// Retries may be `percent` % of calls (0..=100), with bursts of up to `burst` retries.
    pub fn new(percent: u32, burst: u32) -> Self {
        let capacity = u64::from(burst) * MILLI;
        Self {
            deposit_per_call: u64::from(percent.min(100)) * MILLI / 100,
            capacity,
            balance: Mutex::new(capacity),
        }
    }

    /// A call starts: it earns the budget its share of a retry.
    pub fn deposit(&self) {
        let mut balance = self.lock();
        *balance = (*balance + self.deposit_per_call).min(self.capacity);
    }

    /// A retry wants to go: true (and one retry withdrawn) if the budget allows it.
    pub fn try_withdraw(&self) -> bool {
        let mut balance = self.lock();
        if *balance >= MILLI {
            *balance -= MILLI;
            true
        } else {
            false
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        // One integer, always written whole: a poisoned lock still holds a valid balance.
        self.balance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    #[test]
    fn the_budget_allows_its_burst_then_a_share_of_calls() {
        let budget = RetryBudget::new(20, 2);
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw(), "the burst is spent");
        for _ in 0..4 {
            budget.deposit();
            assert!(!budget.try_withdraw(), "less than one retry earned");
        }
        budget.deposit();
        assert!(budget.try_withdraw(), "five calls at 20 % earn one retry");
        assert!(!budget.try_withdraw());
    }

    #[test]
    fn the_budget_never_holds_more_than_its_burst() {
        let budget = RetryBudget::new(100, 1);
        (0..50).for_each(|_| budget.deposit());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
    }

    #[test]
    fn a_zero_percent_budget_allows_only_its_burst() {
        let budget = RetryBudget::new(0, 1);
        (0..1_000).for_each(|_| budget.deposit());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
    }
}
