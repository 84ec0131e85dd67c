//! Bulkheads: a bound on the calls this instance has in flight to one outside provider (the
//! payment provider today; email and object storage next), so that a slow provider fills its own
//! compartment and nothing else. A request that finds the compartment full is refused at once
//! ([`Bulkhead::try_enter`]), before it records anything, and learns when to come back; background
//! work waits for a place until its own deadline ([`Bulkhead::enter`]).
//!
//! The bound is per instance, not shared through PostgreSQL or Redis: it protects this
//! instance's sockets, memory and tasks, and a bound that needed a round trip to take would
//! fail with the store it lives in. Nothing here holds a pooled connection: callers take a place
//! between their transactions, never inside one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The compartment of one outside provider.
#[derive(Debug)]
pub struct Bulkhead {
    provider: &'static str,
    capacity: usize,
    places: Arc<Semaphore>,
    /// What a refused caller is told to wait: about one call's duration.
    retry_after: Duration,
    refused: AtomicU64,
}

/// A place in the compartment, given back when dropped.
#[derive(Debug)]
pub struct BulkheadPlace {
    _permit: OwnedSemaphorePermit,
}

/// The compartment was full: the caller should come back after `retry_after`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{provider} already has {capacity} calls in flight from this instance; retry in {retry_after:?}"
)]
pub struct BulkheadFull {
    pub provider: &'static str,
    pub capacity: usize,
    pub retry_after: Duration,
}

impl Bulkhead {
    /// A compartment of `capacity` places (at least one) for `provider`, named as clients and
    /// operators see it (`payments`).
    pub fn new(provider: &'static str, capacity: usize, retry_after: Duration) -> Self {
        let capacity = capacity.max(1);
        Self {
            provider,
            capacity,
            places: Arc::new(Semaphore::new(capacity)),
            retry_after,
            refused: AtomicU64::new(0),
        }
    }

    /// A place now, or [`BulkheadFull`] at once.
    pub fn try_enter(&self) -> Result<BulkheadPlace, BulkheadFull> {
        match Arc::clone(&self.places).try_acquire_owned() {
            Ok(permit) => Ok(BulkheadPlace { _permit: permit }),
            Err(_) => Err(self.full()),
        }
    }

    /// A place as soon as one is free, or [`BulkheadFull`] once `deadline` passes first.
    pub async fn enter(&self, deadline: Instant) -> Result<BulkheadPlace, BulkheadFull> {
        match tokio::time::timeout_at(deadline, Arc::clone(&self.places).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(BulkheadPlace { _permit: permit }),
            // The semaphore is never closed; a timeout is the one way here.
            Ok(Err(_)) | Err(_) => Err(self.full()),
        }
    }

    pub fn provider(&self) -> &'static str {
        self.provider
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.capacity - self.places.available_permits()
    }

    /// Callers refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn full(&self) -> BulkheadFull {
        self.refused.fetch_add(1, Ordering::Relaxed);
        BulkheadFull {
            provider: self.provider,
            capacity: self.capacity,
            retry_after: self.retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_compartment_refuses_at_once_and_a_returned_place_is_free_again() {
        let bulkhead = Bulkhead::new("payments", 2, Duration::from_secs(1));
        let first = bulkhead.try_enter().expect("first place");
        let _second = bulkhead.try_enter().expect("second place");
        assert_eq!(bulkhead.in_flight(), 2);
        let refused = bulkhead.try_enter().expect_err("no third place");
        assert_eq!(
            refused,
            BulkheadFull {
                provider: "payments",
                capacity: 2,
                retry_after: Duration::from_secs(1)
            }
        );
        assert_eq!(bulkhead.refused(), 1);
        drop(first);
        assert_eq!(bulkhead.in_flight(), 1);
        bulkhead.try_enter().expect("the returned place");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_caller_gets_the_next_free_place_or_gives_up_at_its_deadline() {
        let bulkhead = Arc::new(Bulkhead::new("payments", 1, Duration::from_secs(1)));
        let held = bulkhead.try_enter().expect("the one place");
        let deadline = Instant::now() + Duration::from_secs(5);
        let gives_up = bulkhead
            .enter(deadline)
            .await
            .expect_err("full until the deadline");
        assert_eq!(gives_up.provider, "payments");
        assert_eq!(Instant::now(), deadline);

        let waiter = {
            let bulkhead = Arc::clone(&bulkhead);
            tokio::spawn(async move {
                bulkhead
                    .enter(Instant::now() + Duration::from_secs(5))
                    .await
                    .map(drop)
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(held);
        waiter.await.expect("joined").expect("the freed place");
    }
}
