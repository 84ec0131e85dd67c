//! The simulator's configuration, shared by the binary's flags and the library's callers.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::webhooks::{RetryPolicy, WebhookEndpoint};

/// The secret key accepted when none is configured.
pub const DEFAULT_API_KEY: &str = "sk_test_simulator";

/// How the simulator runs.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Where to listen; port 0 picks a free port (read it back from the handle).
    pub listen: SocketAddr,
    /// Secret keys accepted as `Authorization: Bearer <key>`; idempotency keys are scoped by them.
    pub api_keys: Vec<String>,
    /// Refuse POSTs without `Idempotency-Key` (Stripe accepts them; tests of an adapter that must
    /// always send one want them refused).
    pub require_idempotency_key: bool,
    /// Age after which an idempotency key is treated as pruned (Stripe: 24 hours).
    pub idempotency_key_max_age: Duration,
    /// Where webhooks go; none sends none (events are still recorded).
    pub webhook_endpoint: Option<WebhookEndpoint>,
    /// When failed webhook deliveries are retried.
    pub webhook_retry: RetryPolicy,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            api_keys: vec![DEFAULT_API_KEY.to_owned()],
            require_idempotency_key: false,
            idempotency_key_max_age: Duration::from_secs(24 * 60 * 60),
            webhook_endpoint: None,
            webhook_retry: RetryPolicy::default(),
        }
    }
}
