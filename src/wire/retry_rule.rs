//! The retry rule: which calls may be sent again when it is unknown whether they ran (the
//! connection was reset, or the answer was UNAVAILABLE), generated from the method table's
//! `retry` declarations (`proto/supportdesk/v1/method_policy.proto`) so that no route or client
//! configuration names an RPC by hand:
//!
//! - [`RetryRule::envoy_routes`]: the routes of `deploy/envoy/envoy.yaml` that retry such
//!   failures, one per RPC (exact paths: cheaper to match than one pattern, and plain to read):
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

/// The first and last lines of the generated block in Envoy's template.
pub const ENVOY_BEGIN: &str = "# BEGIN retry routes";
pub const ENVOY_END: &str = "# END retry routes";

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

    /// The block of routes written between [`ENVOY_BEGIN`] and [`ENVOY_END`] in Envoy's
    /// template, markers included, unindented (the template indents it as its route list).
    /// Deadlines are the template's (15 s, replaced by `deploy/envoy/render`).
    pub fn envoy_routes(&self) -> String {
        let mut out = String::new();
        out.push_str(ENVOY_BEGIN);
        out.push_str(
            ": generated from the method table's `retry` declarations by\n\
             # `supportdesk retry-rule --write deploy/envoy/envoy.yaml`; do not edit: a test\n\
             # fails while they differ. A call whose outcome is unknown (reset, UNAVAILABLE, no\n\
             # answer within the per-try timeout) is sent again, to another instance, only when\n\
             # running it twice is running it once.\n",
        );
        out.push_str(&envoy_route(
            "retry_with_key",
            "RETRY_WITH_KEY, with a key: a repeat replays the first outcome. No per-try\n\
             # timeout: a write that is merely slow must not be raced by its own retry.",
            &self.with_key,
            true,
        ));
        out.push_str(&envoy_route(
            "retry_safe",
            "RETRY_SAFE: running it twice is running it once. A try gets a third of the\n\
             # deadline, so a hung instance leaves time for two more.",
            &self.safe,
            false,
        ));
        out.push_str(ENVOY_END);
        out.push('\n');
        out
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

/// The generated routes of one class: one per RPC of `methods`, matched by its gRPC path (a
/// REST request is routed again on its gRPC path once the transcoder has rewritten it), the
/// first one naming the route action (`&anchor`) that the others repeat (`*anchor`).
fn envoy_route(anchor: &str, why: &str, methods: &[&Method], keyed: bool) -> String {
    let mut out = format!("# {why}\n");
    for (index, method) in methods.iter().enumerate() {
        let first = index == 0;
        out.push_str(&format!("- match:\n    path: \"{}\"\n", method.path));
        if keyed {
            if first {
                out.push_str(
                    "    headers: &keyed\n      - name: idempotency-key\n        present_match: true\n",
                );
            } else {
                out.push_str("    headers: *keyed\n");
            }
        }
        if !first {
            out.push_str(&format!("  route: *{anchor}\n"));
            continue;
        }
        out.push_str(&format!(
            "  route: &{anchor}\n    cluster: supportdesk\n    timeout: 15s\n    max_grpc_timeout: 15s\n"
        ));
        out.push_str(
            "    retry_policy:\n      retry_on: connect-failure,refused-stream,reset,unavailable\n",
        );
        out.push_str(&format!("      num_retries: {}\n", ENVOY_ATTEMPTS - 1));
        if !keyed {
            out.push_str("      per_try_timeout: 5s\n");
        }
        out.push_str(
            "      retry_host_predicate:\n\
             \x20       - name: envoy.retry_host_predicates.previous_hosts\n\
             \x20         typed_config:\n\
             \x20           \"@type\": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate\n\
             \x20     host_selection_retry_max_attempts: 5\n\
             \x20     retry_back_off: { base_interval: 0.025s, max_interval: 0.25s }\n",
        );
    }
    out
}

/// `template` with the text between [`ENVOY_BEGIN`] and [`ENVOY_END`] (markers included)
/// replaced by `block`, indented as the begin marker is; `None` unless the template has exactly
/// one such block.
pub fn splice_envoy_routes(template: &str, block: &str) -> Option<String> {
    let begin = template.find(ENVOY_BEGIN)?;
    if template[begin + 1..].contains(ENVOY_BEGIN) {
        return None;
    }
    let line_start = template[..begin].rfind('\n').map_or(0, |index| index + 1);
    let indent = &template[line_start..begin];
    if !indent.chars().all(|c| c == ' ') {
        return None;
    }
    let end = begin + template[begin..].find(ENVOY_END)?;
    let after = end
        + template[end..]
            .find('\n')
            .map_or(template.len() - end, |index| index + 1);
    let mut out = String::with_capacity(template.len() + block.len());
    out.push_str(&template[..line_start]);
    for line in block.lines() {
        if !line.is_empty() {
            out.push_str(indent);
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&template[after..]);
    Some(out)
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
    fn splicing_replaces_the_one_block_at_its_indentation() {
        let template = "a:\n  # BEGIN retry routes old\n  - old\n  # END retry routes\nb\n";
        assert_eq!(
            splice_envoy_routes(
                template,
                "# BEGIN retry routes new\n- new\n\n# END retry routes\n"
            )
            .unwrap(),
            "a:\n  # BEGIN retry routes new\n  - new\n\n  # END retry routes\nb\n"
        );
        assert_eq!(splice_envoy_routes("no block\n", "x"), None);
        let twice = format!("{template}{template}");
        assert_eq!(splice_envoy_routes(&twice, "x"), None);
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
