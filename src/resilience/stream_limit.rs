//! Places for long streams (exports, WatchEvents), per account and per instance: a stream holds
//! a pooled connection (an export's snapshot) or checks one out every poll interval (an event
//! stream) for minutes, so one account opening many could starve every other account's calls
//! of the pool. A stream takes its place before it touches the pool and gives it back when its
//! task ends ([`StreamPlace`] is dropped with the task); one that finds no place is refused at
//! once with RESOURCE_EXHAUSTED `STREAM_LIMIT` (docs/rate-limits.md, "Concurrent streams").
//!
//! The places are this instance's, not shared through Redis or PostgreSQL: they protect this
//! instance's pool, and a count in a store would outlive an instance killed mid-stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::domain::AccountId;
use crate::errors::{AppError, AppResult};

/// The places of one kind of stream.
#[derive(Clone, Debug)]
pub struct StreamLimits {
    /// What the streams are, as the refusal names them ("exports").
    kind: &'static str,
    per_account: (usize, &'static str),
    per_instance: (usize, &'static str),
    held: Arc<Mutex<Held>>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_account: HashMap<AccountId, usize>,
}

/// One stream's place, given back when dropped.
#[derive(Debug)]
pub struct StreamPlace {
    account: AccountId,
    held: Arc<Mutex<Held>>,
}

impl StreamLimits {
    /// At most `per_account` streams of one account and `per_instance` in all, each with the
    /// name of the setting that sets it.
    pub fn new(
        kind: &'static str,
        per_account: (u32, &'static str),
        per_instance: (u32, &'static str),
    ) -> Self {
        let places = |(limit, setting): (u32, &'static str)| {
            (usize::try_from(limit).unwrap_or(usize::MAX), setting)
        };
        Self {
            kind,
            per_account: places(per_account),
            per_instance: places(per_instance),
            held: Arc::default(),
        }
    }

    /// A place for a stream of `account`, or STREAM_LIMIT naming the limit that is reached (the
    /// account's first: that one is the caller's to fix).
    pub fn take(&self, account: AccountId) -> AppResult<StreamPlace> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let of_account = held.by_account.get(&account).copied().unwrap_or(0);
        let refused =
            |(limit, setting): (usize, &'static str), subject: String| AppError::StreamLimit {
                kind: self.kind,
                subject,
                limit,
                setting,
            };
        if of_account >= self.per_account.0 {
            return Err(refused(self.per_account, format!("accounts/{account}")));
        }
        if held.total >= self.per_instance.0 {
            return Err(refused(self.per_instance, "instance".to_owned()));
        }
        held.total += 1;
        *held.by_account.entry(account).or_default() += 1;
        Ok(StreamPlace {
            account,
            held: Arc::clone(&self.held),
        })
    }
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.total = held.total.saturating_sub(1);
        if let Some(count) = held.by_account.get_mut(&self.account) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.by_account.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_at_its_limit_is_refused_and_a_place_given_back_is_taken_again() {
        let limits = StreamLimits::new("exports", (2, "PER_ACCOUNT"), (3, "PER_INSTANCE"));
        let (one, other) = (AccountId::generate(), AccountId::generate());
        let first = limits.take(one).unwrap();
        let _second = limits.take(one).unwrap();
        assert!(matches!(
            limits.take(one),
            Err(AppError::StreamLimit {
                setting: "PER_ACCOUNT",
                limit: 2,
                ..
            })
        ));
        let _third = limits.take(other).unwrap();
        assert!(matches!(
            limits.take(other),
            Err(AppError::StreamLimit {
                setting: "PER_INSTANCE",
                limit: 3,
                ..
            })
        ));
        drop(first);
        limits.take(other).unwrap();
    }
}
