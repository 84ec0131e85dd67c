//! The retry rule: which calls may be sent again when it is unknown whether they ran (the
//! connection was reset, or the answer was UNAVAILABLE), generated from the method table's
//! `retry` declarations (`proto/supportdesk/v1/method_policy.proto`) so that no route or client
//! configuration names an RPC by hand:
//!
//! - [`RetryRule::envoy_routes`]: the routes of Envoy's configuration that retry such failures
//!   (`supportdesk envoy-config` puts them before the template's catch-all route), one per RPC (exact paths: cheaper to match than one pattern, and plain to read):
//!   the RPCs declared `RETRY_SAFE` always, the RPCs declared `RETRY_WITH_KEY` when the request
//!   carries an `idempotency-key`. Every other request falls through to the template's
//!   catch-all route, which retries only what never reached the service (connection refused,
//!   stream refused).
//! - [`RetryRule::service_config`]: the gRPC service config recommended to internal services that
//!   call the instances directly: round robin over every address, client-side health checking,
//!   and a retry policy for UNAVAILABLE on the `RETRY_SAFE` RPCs only (a service config cannot
//!   see metadata, so keyed writes are retried by the caller's code, with the same key).
//!
//! docs/deployment.md, "Retries", says why each part is safe.

use std::collections::BTreeMap;

use crate::wire::methods::{Method, MethodTable, Retry};

/// How many times Envoy sends a call in all when its outcome is unknown (the first try and two
/// retries), each time to an instance it has not tried yet.
const ENVOY_ATTEMPTS: u32 = 3;

/// The API's RPCs, split by what a retry may do.
#[derive(Debug)]
pub struct RetryRule<'a> {
    /// Declared `RETRY_SAFE`: retried whatever the request carries.
    pub safe: Vec<&'a Method>,
    /// Declared `RETRY_WITH_KEY`: retried only with an `idempotency-key`.
    pub with_key: Vec<&'a Method>,
}

impl<'a> RetryRule<'a> {
    /// The rule for the API's RPCs (health and reflection are not routed by it).
    pub fn of(table: &'a MethodTable) -> Self {
        let mut safe = Vec::new();
        let mut with_key = Vec::new();
        for method in table.api_methods() {
            match method.retry {
                Retry::Safe => safe.push(method),
                Retry::WithKey => with_key.push(method),
                Retry::Never => {}
            }
        }
        Self { safe, with_key }
    }

    /// Envoy's retry routes, in the order Envoy tries them, each named for its class and gRPC
    /// path: a call whose outcome is unknown (reset, UNAVAILABLE, no answer within the per-try
    /// timeout) is sent again, to another instance, only when running it twice is running it
    /// once. `deadline` is the route deadline (`timeout` and `max_grpc_timeout`), `per_try` the
    /// per-try timeout of the `RETRY_SAFE` routes (Envoy durations, `15s`).
    pub fn envoy_routes(&self, deadline: &str, per_try: &str) -> Vec<serde_json::Value> {
        // RETRY_WITH_KEY, with a key: a repeat replays the first outcome. No per-try timeout: a
        // write that is merely slow must not be raced by its own retry.
        let with_key = self
            .with_key
            .iter()
            .map(|method| envoy_route("retry_with_key", method, deadline, None));
        // RETRY_SAFE: running it twice is running it once. A try gets a third of the deadline,
        // so a hung instance leaves time for two more.
        let safe = self
            .safe
            .iter()
            .map(|method| envoy_route("retry_safe", method, deadline, Some(per_try)));
        with_key.chain(safe).collect()
    }

    /// The recommended gRPC service config for a client of the instances' addresses.
    pub fn service_config(&self) -> serde_json::Value {
        let mut by_service: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for method in &self.safe {
            by_service
                .entry(method.service.as_str())
                .or_default()
                .push(method.name.as_str());
        }
        let names: Vec<serde_json::Value> = by_service
            .iter()
            .flat_map(|(service, methods)| {
                methods
                    .iter()
                    .map(move |method| serde_json::json!({ "service": service, "method": method }))
            })
            .collect();
        serde_json::json!({
            "loadBalancingConfig": [{ "round_robin": {} }],
            // The overall status: an instance that is draining or has lost PostgreSQL or Redis
            // says NOT_SERVING and gets no new calls while another one serves.
            "healthCheckConfig": { "serviceName": "" },
            "methodConfig": [{
                "name": names,
                "retryPolicy": {
                    "maxAttempts": ENVOY_ATTEMPTS,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }],
            // The client's retry budget: retries stop while more than half of the recent calls
            // failed, so an outage is not met with three times the load.
            "retryThrottling": { "maxTokens": 10, "tokenRatio": 0.1 },
        })
    }
}

/// The route of one RPC of a class (`retry_with_key`, `retry_safe`), matched by its gRPC path (a
/// REST request is routed again on its gRPC path once the transcoder has rewritten it); a keyed
/// class (no `per_try`) only when the request carries an `idempotency-key`.
fn envoy_route(
    class: &str,
    method: &Method,
    deadline: &str,
    per_try: Option<&str>,
) -> serde_json::Value {
    let mut route_match = serde_json::json!({ "path": method.path });
    if per_try.is_none() {
        route_match["headers"] =
            serde_json::json!([{ "name": "idempotency-key", "present_match": true }]);
    }
    let mut retry_policy = serde_json::json!({
        "retry_on": "connect-failure,refused-stream,reset,unavailable",
        "num_retries": ENVOY_ATTEMPTS - 1,
    });
    if let Some(per_try) = per_try {
        retry_policy["per_try_timeout"] = serde_json::json!(per_try);
    }
    retry_policy["retry_host_predicate"] = serde_json::json!([{
        "name": "envoy.retry_host_predicates.previous_hosts",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
        },
    }]);
    retry_policy["host_selection_retry_max_attempts"] = serde_json::json!(5);
    retry_policy["retry_back_off"] =
        serde_json::json!({ "base_interval": "0.025s", "max_interval": "0.25s" });
    serde_json::json!({
        "name": format!("{class}{}", method.path),
        "match": route_match,
        "route": {
            "cluster": "supportdesk",
            "timeout": deadline,
            "max_grpc_timeout": deadline,
            "retry_policy": retry_policy,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> &'static MethodTable {
        MethodTable::get().expect("the method table")
    }

    #[test]
    fn every_api_rpc_is_safe_keyed_or_never_and_reads_are_safe() {
        let rule = RetryRule::of(table());
        let get = |name: &str| {
            table()
                .api_methods()
                .find(|method| method.name == name)
                .unwrap_or_else(|| panic!("{name} is an RPC"))
        };
        assert!(rule.safe.contains(&get("GetTicket")));
        assert!(rule.with_key.contains(&get("CreateTicket")));
        assert!(rule.with_key.contains(&get("CreateCharge")));
        for never in [
            "Login",
            "RefreshToken",
            "RequestPasswordReset",
            "DeleteAttachment",
        ] {
            assert!(!rule.safe.contains(&get(never)), "{never}");
            assert!(!rule.with_key.contains(&get(never)), "{never}");
        }
    }

    #[test]
    fn the_service_config_retries_unavailable_on_safe_methods_only() {
        let config = RetryRule::of(table()).service_config();
        let names = config["methodConfig"][0]["name"].as_array().unwrap();
        assert!(names.contains(&serde_json::json!({
            "service": "supportdesk.v1.TicketService", "method": "GetTicket"
        })));
        assert!(!names.contains(&serde_json::json!({
            "service": "supportdesk.v1.TicketService", "method": "CreateTicket"
        })));
        assert_eq!(
            config["methodConfig"][0]["retryPolicy"]["retryableStatusCodes"],
            serde_json::json!(["UNAVAILABLE"])
        );
    }
}
