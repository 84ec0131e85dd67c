//! Rate limiting as the admission layer ([`super::admission`]) applies it: every RPC counts
//! against the quota its declaration names (health and reflection against none), per caller
//! when there is one (user or API key), per client IP otherwise. The client IP is the TCP peer,
//! or, when the peer is a trusted proxy (Envoy: an address or a network of `TRUSTED_PROXIES`),
//! the address it appended to `x-forwarded-for`, and nothing before it.
//! Allowed responses carry the IETF `ratelimit` and `ratelimit-policy` fields so clients can
//! pace themselves; refused ones are RESOURCE_EXHAUSTED with `retry-after` as well.

use std::net::IpAddr;

use http::{HeaderName, HeaderValue, Request, Response};
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;

use crate::rate_limit::{Decision, Policy, Subject};
use crate::wire::methods::{Method, Quota};

/// Which quota a request counts against; `None` for none. A path the table does not know (it
/// reached here with a caller, since authentication fails closed) counts as a write.
pub(super) fn policy_for(method: Option<&Method>) -> Option<Policy> {
    match method.map_or(Quota::Write, |method| method.quota) {
        Quota::Exempt => None,
        Quota::Read => Some(Policy::Read),
        Quota::Write => Some(Policy::Write),
        Quota::Public => Some(Policy::Public),
        Quota::Login => Some(Policy::Login),
        Quota::Webhook => Some(Policy::Webhook),
    }
}

/// The client's address: the peer, unless the peer is a trusted proxy (in one of the `trusted`
/// networks), in which case the last address of `x-forwarded-for`: the one Envoy appended (its
/// own TCP peer). Nothing left of it is believed, not even past addresses inside the trusted
/// networks: a client inside them (the example overlay trusts all of 10.0.0.0/8) would
/// otherwise be skipped as a proxy, and the address it wrote itself taken as its own. When the
/// last entry is no address, Envoy did not write it, and the peer is the client.
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|network| network.contains(address));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let Some(forwarded_for) = forwarded_for else {
        return Some(peer);
    };
    forwarded_for
        .rsplit(',')
        .next()
        .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
        .or(Some(peer))
}

/// The client-IP subject of a request.
pub(super) fn client_subject<B>(request: &Request<B>, trusted: &[ipnet::IpNet]) -> Subject {
    let peer = request
        .extensions()
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .map(|address| address.ip());
    let forwarded_for = request
        .headers()
        .get(X_FORWARDED_FOR)
        .and_then(|value| value.to_str().ok());
    match client_ip(peer, forwarded_for, trusted) {
        Some(ip) => Subject::of_ip(ip),
        None => Subject::new("ip", "unknown"),
    }
}

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

pub(super) fn add_headers(response: &mut Response<Body>, decision: &Decision) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::try_from(decision.policy_header()) {
        headers.insert(RATELIMIT_POLICY, value);
    }
    if let Ok(value) = HeaderValue::try_from(decision.limit_header()) {
        headers.insert(RATELIMIT, value);
    }
}

/// The answer to a refused request: RESOURCE_EXHAUSTED when the quota is spent, UNAVAILABLE when
/// Redis could not decide and the policy is to fail closed; with the rate-limit headers.
pub(super) fn refusal(subject: &Subject, decision: &Decision) -> Response<Body> {
    let mut response = tonic::Status::from(decision.refusal(subject)).into_http();
    add_headers(&mut response, decision);
    if let Ok(value) = HeaderValue::from_str(&decision.retry_after_secs().to_string()) {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let envoy: IpAddr = "127.0.0.1".parse().unwrap();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        let trusted = [ipnet::IpNet::from(envoy)];
        assert_eq!(
            client_ip(Some(envoy), Some("10.9.9.9, 203.0.113.7"), &trusted),
            Some(client),
            "the hop Envoy appended, not a spoofable left-most one"
        );
        assert_eq!(
            client_ip(Some(envoy), Some("203.0.113.7, not-an-address"), &trusted),
            Some(envoy),
            "a last entry Envoy did not write"
        );
        assert_eq!(
            client_ip(Some(stranger), Some("203.0.113.7"), &trusted),
            Some(stranger),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(client_ip(Some(envoy), None, &trusted), Some(envoy));
    }

    #[test]
    fn every_address_of_a_trusted_network_is_a_trusted_proxy_and_only_its_last_hop_is_believed() {
        // Envoy's pods in Kubernetes: addresses of the pod network, not known in advance.
        let pods: ipnet::IpNet = "10.0.0.0/8".parse().unwrap();
        let envoy: IpAddr = "10.42.7.19".parse().unwrap();
        let other_envoy: IpAddr = "10.42.3.4".parse().unwrap();
        let outside: IpAddr = "192.0.2.10".parse().unwrap();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(
            client_ip(Some(envoy), Some("203.0.113.7, 10.42.3.4"), &[pods]),
            Some(other_envoy),
            "a client inside the network is that address, whatever it wrote before it"
        );
        assert_eq!(
            client_ip(Some(other_envoy), Some("203.0.113.7"), &[pods]),
            Some(client)
        );
        assert_eq!(
            client_ip(Some(outside), Some("203.0.113.7"), &[pods]),
            Some(outside),
            "a peer outside the network is the client"
        );
    }
}
