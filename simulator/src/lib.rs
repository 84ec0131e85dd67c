//! A local payment provider speaking supportdesk's subset of Stripe's REST API (the team's
//! PROVIDER.md, and this crate's README), for billing's tests and local runs; and, in [`email`],
//! a local email API in Resend's dialect for the notification tests.
//!
//! It is a real HTTP/1.1 server with Stripe's idempotency semantics, a ledger that makes
//! duplicate charges visible, scriptable faults (latency, 5xx, 429, connection resets, "charged
//! but never answered") and signed webhooks with delivery faults. Run it in-process with
//! [`Simulator::start`] or as the `payment-simulator` binary; both expose the same control API
//! under `/_sim`, and the handle offers the same operations as methods.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use payment_simulator::{Simulator, SimulatorConfig};
//! let simulator = Simulator::start(SimulatorConfig::default()).await?;
//! let base_url = simulator.base_url(); // http://127.0.0.1:PORT
//! // ... drive billing against base_url with `Authorization: Bearer sk_test_simulator` ...
//! let charges = simulator.ledger().payment_intents_with_metadata("charge_id", "c1").len();
//! # let _ = (base_url, charges);
//! # Ok(()) }
//! ```

mod api;
mod cards;
pub mod config;
mod control;
mod delivery;
pub mod email;
pub mod error;
pub mod faults;
mod form;
mod idempotency;
mod ids;
pub mod ledger;
mod list;
pub mod objects;
mod request_log;
mod search;
mod server;
mod state;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use crate::config::{DEFAULT_API_KEY, SimulatorConfig};
pub use crate::control::{DisputeRequest, OutsideRefund};
pub use crate::error::{ApiFailure, StripeError};
pub use crate::faults::{
    ActiveFault, Endpoint, FaultAction, FaultRule, InvalidFault, SettleOutcome,
};
pub use crate::idempotency::IdempotencyStats;
pub use crate::ledger::{LedgerSnapshot, LedgerSummary};
pub use crate::objects::{Charge, Dispute, Event, PaymentIntent, Refund};
pub use crate::request_log::ApiRequest;
pub use crate::webhooks::{
    DeliveryAttempt, DeliveryFault, DeliveryFaultRule, RetryPolicy, WebhookEndpoint,
};

use crate::ledger::Ledger;
use crate::state::Shared;

/// Starts simulators.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Binds `config.listen` and serves until the handle is shut down or dropped.
    pub async fn start(config: SimulatorConfig) -> std::io::Result<SimulatorHandle> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let (event_sink, events) = tokio::sync::mpsc::unbounded_channel();
        let shared = Shared::new(config, Ledger::new(event_sink));
        let router = api::routes()
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(&shared),
                request_log::record,
            ))
            .merge(control::routes())
            .fallback(api::unrecognized_url)
            .with_state(Arc::clone(&shared));
        tokio::spawn(delivery::run_dispatcher(Arc::clone(&shared), events));
        tokio::spawn(server::serve(listener, router, shared.shutdown.clone()));
        tracing::info!(%addr, "payment simulator listening");
        Ok(SimulatorHandle { addr, shared })
    }
}

/// A running simulator. Dropping it stops the server, its connections and webhook deliveries.
#[derive(Debug)]
pub struct SimulatorHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Drop for SimulatorHandle {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

impl SimulatorHandle {
    /// The bound address (the real port when the config asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, the base URL billing's adapter should use.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The first configured secret key.
    pub fn api_key(&self) -> &str {
        self.shared
            .config
            .api_keys
            .first()
            .map_or(DEFAULT_API_KEY, String::as_str)
    }

    /// Stops serving: the listener, open connections and webhook deliveries end.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Everything the provider created.
    pub fn ledger(&self) -> LedgerSnapshot {
        self.shared.snapshot(None)
    }

    /// The payment intents with `metadata[key] = value` and what hangs off them.
    pub fn ledger_for_metadata(&self, key: &str, value: &str) -> LedgerSnapshot {
        self.shared.snapshot(Some((key, value)))
    }

    /// How many payment intents exist with `metadata[charge_id] = charge_id`: the count billing's
    /// exactly-once tests assert is 1.
    pub fn payment_intent_count_for_charge_id(&self, charge_id: &str) -> usize {
        self.ledger_for_metadata("charge_id", charge_id)
            .payment_intents
            .len()
    }

    /// Every `/v1` request received, in the order they finished (or were dropped).
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.shared.requests()
    }

    /// How many idempotency keys are running or saved.
    pub fn idempotency_stats(&self) -> IdempotencyStats {
        self.shared.book().idempotency.stats()
    }

    /// Every event recorded, oldest first (whether or not a webhook endpoint is set).
    pub fn events(&self) -> Vec<Event> {
        self.shared.events()
    }

    /// Adds a fault; see [`FaultAction`].
    pub fn add_fault(&self, rule: FaultRule) -> Result<ActiveFault, InvalidFault> {
        self.shared.add_fault(rule)
    }

    /// The faults in force.
    pub fn faults(&self) -> Vec<ActiveFault> {
        self.shared.faults()
    }

    /// Removes one fault; false when it was not in force any more.
    pub fn remove_fault(&self, id: u64) -> bool {
        self.shared.remove_fault(id)
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Lets one answer held by an `execute_then_hold_answer` fault go: one held now, or the next
    /// one held.
    pub fn release_held_answer(&self) {
        self.shared.release_held_answer();
    }

    /// Refunds a payment outside the service (as from the provider's dashboard); sends
    /// `charge.refunded` like any refund.
    pub fn refund_outside(
        &self,
        payment_intent_id: &str,
        request: OutsideRefund,
    ) -> Result<Refund, ApiFailure> {
        self.shared.refund_outside(payment_intent_id, request)
    }

    /// Opens a dispute on a payment; sends `charge.dispute.created`.
    pub fn dispute(
        &self,
        payment_intent_id: &str,
        request: DisputeRequest,
    ) -> Result<Dispute, ApiFailure> {
        self.shared.dispute(payment_intent_id, request)
    }

    /// Sets (or with none removes) the webhook endpoint and its signing secrets.
    pub fn set_webhook_endpoint(&self, endpoint: Option<WebhookEndpoint>) {
        self.shared.set_webhook_endpoint(endpoint);
    }

    /// Adds a delivery fault; see [`DeliveryFault`].
    pub fn add_delivery_fault(&self, rule: DeliveryFaultRule) {
        self.shared.add_delivery_fault(rule);
    }

    /// Removes every delivery fault.
    pub fn clear_delivery_faults(&self) {
        self.shared.clear_delivery_faults();
    }

    /// Every webhook delivery attempt so far, in the order they finished.
    pub fn deliveries(&self) -> Vec<DeliveryAttempt> {
        self.shared.deliveries()
    }

    /// Forgets the ledger, idempotency keys, the delivery and request logs and all faults.
    pub fn reset(&self) {
        self.shared.reset();
    }
}
