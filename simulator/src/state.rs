//! The simulator's shared state: configuration, the book (ledger, idempotency keys, faults) and
//! the webhook book, each behind one lock held only for synchronous work.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::SimulatorConfig;
use crate::faults::{FaultBook, SettleOutcome};
use crate::idempotency::IdempotencyStore;
use crate::ledger::Ledger;
use crate::request_log::ApiRequest;
use crate::webhooks::WebhookBook;

/// Everything one lock guards, so a request's claim, execution and saving see one consistent book.
#[derive(Debug)]
pub(crate) struct Book {
    pub(crate) ledger: Ledger,
    pub(crate) idempotency: IdempotencyStore,
    pub(crate) faults: FaultBook,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SimulatorConfig,
    book: Mutex<Book>,
    webhooks: Mutex<WebhookBook>,
    requests: Mutex<Vec<ApiRequest>>,
    /// Releases of answers held by `execute_then_hold_answer`: one permit per release, so a
    /// release made before the answer is held is not lost.
    pub(crate) answer_releases: tokio::sync::Semaphore,
    pub(crate) shutdown: CancellationToken,
}

/// A state change to make later (a `settle_later` fault).
#[derive(Debug, Clone)]
pub(crate) enum Settlement {
    PaymentIntent { id: String },
    Refund { id: String },
}

/// A poisoned lock only means a panic elsewhere; the data is still the simulator's best record.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(config: SimulatorConfig, ledger: Ledger) -> Arc<Self> {
        let webhooks = WebhookBook {
            endpoint: config.webhook_endpoint.clone(),
            ..WebhookBook::default()
        };
        Arc::new(Self {
            book: Mutex::new(Book {
                ledger,
                idempotency: IdempotencyStore::new(config.idempotency_key_max_age),
                faults: FaultBook::default(),
            }),
            webhooks: Mutex::new(webhooks),
            requests: Mutex::new(Vec::new()),
            answer_releases: tokio::sync::Semaphore::new(0),
            config,
            shutdown: CancellationToken::new(),
        })
    }

    pub(crate) fn book(&self) -> MutexGuard<'_, Book> {
        lock(&self.book)
    }

    pub(crate) fn webhooks(&self) -> MutexGuard<'_, WebhookBook> {
        lock(&self.webhooks)
    }

    pub(crate) fn log_request(&self, request: ApiRequest) {
        lock(&self.requests).push(request);
    }

    pub(crate) fn requests(&self) -> Vec<ApiRequest> {
        lock(&self.requests).clone()
    }

    /// Runs `settlement` after `after` unless the simulator stops first.
    pub(crate) fn settle_later(
        self: &Arc<Self>,
        settlement: Settlement,
        after: Duration,
        outcome: SettleOutcome,
    ) {
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                () = shared.shutdown.cancelled() => {}
                () = tokio::time::sleep(after) => {
                    let mut book = shared.book();
                    match settlement {
                        Settlement::PaymentIntent { id } => {
                            book.ledger.settle_payment_intent(&id, outcome);
                        }
                        Settlement::Refund { id } => book.ledger.settle_refund(&id, outcome),
                    }
                }
            }
        });
    }

    /// Forgets the ledger, idempotency keys, faults, the delivery log and the request log.
    pub(crate) fn reset(&self) {
        {
            let mut book = self.book();
            book.ledger.clear();
            book.idempotency.clear();
            book.faults.clear();
        }
        {
            let mut webhooks = self.webhooks();
            webhooks.clear_faults();
            webhooks.deliveries.clear();
        }
        lock(&self.requests).clear();
        // Releases nobody used would let a later held answer go at once.
        self.answer_releases.forget_permits(usize::MAX);
    }
}
