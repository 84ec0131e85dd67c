//! Stripe's idempotency layer: the first result under a key is saved and replayed to every retry.
//!
//! Keys are scoped by the API key that sent them. A key is *claimed* once the request passed
//! validation and its execution begins; until the result is saved, a retry answers 409 (the
//! first is still running). The saved status and body are replayed byte for byte, errors
//! included. A retry whose endpoint or parameters differ from the first request's is an
//! `idempotency_error` (400). Entries older than the configured age (Stripe: 24 hours) are
//! treated as pruned, and the key starts afresh.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;

/// Keys longer than this are refused, as Stripe does.
pub(crate) const MAX_KEY_LENGTH: usize = 255;

/// What identifies "the same request": its path and its decoded parameters in sorted order
/// (parameter order on the wire does not matter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestFingerprint {
    pub(crate) path: String,
    pub(crate) params: Vec<(String, String)>,
}

/// A saved answer.
#[derive(Debug, Clone)]
pub(crate) struct SavedResponse {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

#[derive(Debug)]
enum EntryState {
    Running,
    Done(SavedResponse),
}

#[derive(Debug)]
struct Entry {
    fingerprint: RequestFingerprint,
    state: EntryState,
    claimed_at: Instant,
}

/// The outcome of presenting a key.
#[derive(Debug)]
pub(crate) enum Claim {
    /// First use (or the old entry was pruned): execute, then [`IdempotencyStore::save`].
    Execute,
    /// A finished request used this key: answer its saved response.
    Replay(SavedResponse),
    /// A request with this key is still executing.
    StillRunning,
    /// The key was first used with another endpoint or other parameters.
    Mismatch { first_path: String },
}

#[derive(Debug)]
pub(crate) struct IdempotencyStore {
    entries: HashMap<(String, String), Entry>,
    max_age: Duration,
}

impl IdempotencyStore {
    pub(crate) fn new(max_age: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            max_age,
        }
    }

    pub(crate) fn claim(
        &mut self,
        api_key: &str,
        key: &str,
        fingerprint: RequestFingerprint,
        now: Instant,
    ) -> Claim {
        let scoped = (api_key.to_owned(), key.to_owned());
        if let Some(entry) = self.entries.get(&scoped)
            && now.duration_since(entry.claimed_at) < self.max_age
        {
            if entry.fingerprint != fingerprint {
                return Claim::Mismatch {
                    first_path: entry.fingerprint.path.clone(),
                };
            }
            return match &entry.state {
                EntryState::Running => Claim::StillRunning,
                EntryState::Done(saved) => Claim::Replay(saved.clone()),
            };
        }
        self.entries.insert(
            scoped,
            Entry {
                fingerprint,
                state: EntryState::Running,
                claimed_at: now,
            },
        );
        Claim::Execute
    }

    pub(crate) fn save(&mut self, api_key: &str, key: &str, response: SavedResponse) {
        if let Some(entry) = self.entries.get_mut(&(api_key.to_owned(), key.to_owned())) {
            entry.state = EntryState::Done(response);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    pub(crate) fn stats(&self) -> IdempotencyStats {
        let running = self
            .entries
            .values()
            .filter(|entry| matches!(entry.state, EntryState::Running))
            .count();
        IdempotencyStats {
            running,
            saved: self.entries.len() - running,
        }
    }
}

/// How many idempotency keys are held by a running request, and how many have a saved result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdempotencyStats {
    /// Keys whose first request is still executing (a retry now answers 409).
    pub running: usize,
    /// Keys with a saved response (a retry now replays it).
    pub saved: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(amount: &str) -> RequestFingerprint {
        RequestFingerprint {
            path: "/v1/payment_intents".to_owned(),
            params: vec![("amount".to_owned(), amount.to_owned())],
        }
    }

    fn saved() -> SavedResponse {
        SavedResponse {
            status: StatusCode::OK,
            body: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn a_key_runs_once_then_replays() {
        let mut store = IdempotencyStore::new(Duration::from_secs(60));
        let now = Instant::now();
        assert!(matches!(
            store.claim("sk", "k", fingerprint("1"), now),
            Claim::Execute
        ));
        assert!(matches!(
            store.claim("sk", "k", fingerprint("1"), now),
            Claim::StillRunning
        ));
        store.save("sk", "k", saved());
        assert!(matches!(
            store.claim("sk", "k", fingerprint("1"), now),
            Claim::Replay(_)
        ));
        assert!(matches!(
            store.claim("sk", "k", fingerprint("2"), now),
            Claim::Mismatch { .. }
        ));
    }

    #[test]
    fn keys_are_scoped_by_api_key_and_pruned_after_their_age() {
        let mut store = IdempotencyStore::new(Duration::from_secs(60));
        let now = Instant::now();
        assert!(matches!(
            store.claim("sk_a", "k", fingerprint("1"), now),
            Claim::Execute
        ));
        assert!(matches!(
            store.claim("sk_b", "k", fingerprint("2"), now),
            Claim::Execute
        ));
        store.save("sk_a", "k", saved());
        let later = now + Duration::from_secs(61);
        assert!(matches!(
            store.claim("sk_a", "k", fingerprint("3"), later),
            Claim::Execute
        ));
    }
}
