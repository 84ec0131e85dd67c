//! The rate-limit layer: every RPC counts against the quota its declaration names (health and
//! reflection against none), per caller when there is one (user or API key), per client IP
//! otherwise. The client IP is the TCP peer,
//! or, when the peer is a trusted proxy (Envoy), the address it appended to `x-forwarded-for`.
//! Allowed responses carry the IETF `ratelimit` and `ratelimit-policy` fields so clients can
//! pace themselves; refused ones are RESOURCE_EXHAUSTED with `retry-after` as well.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;
use tower::{Layer, Service};

use super::method::declared_method;
use crate::auth::{Caller, Principal};
use crate::errors::AppError;
use crate::methods::{Method, Quota};
use crate::rate_limit::{Decision, Policy, RateLimiter, Subject};

#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
}

impl RateLimitLayer {
    pub fn new(limiter: RateLimiter) -> Self {
        Self { limiter }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: RateLimiter,
}

/// Which quota a request counts against; `None` for none. A path the table does not know (it
/// reached here with a caller, since authentication fails closed) counts as a write.
fn policy_for(method: Option<&Method>) -> Option<Policy> {
    match method.map_or(Quota::Write, |method| method.quota) {
        Quota::Exempt => None,
        Quota::Read => Some(Policy::Read),
        Quota::Write => Some(Policy::Write),
        Quota::Public => Some(Policy::Public),
        Quota::Login => Some(Policy::Login),
    }
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most address of `x-forwarded-for` that is not itself a trusted proxy.
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let Some(forwarded_for) = forwarded_for else {
        return Some(peer);
    };
    forwarded_for
        .rsplit(',')
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .find(|hop| !trusted.contains(hop))
        .or(Some(peer))
}

fn subject_of<B>(request: &Request<B>, trusted: &[IpAddr]) -> Subject {
    if let Some(caller) = request.extensions().get::<Caller>() {
        return match &caller.principal {
            Principal::User { user_id, .. } => Subject::new("user", user_id),
            Principal::ApiKey { key_id, .. } => Subject::new("key", key_id),
        };
    }
    let peer = request
        .extensions()
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .map(|address| address.ip());
    let forwarded_for = request
        .headers()
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok());
    match client_ip(peer, forwarded_for, trusted) {
        Some(ip) => Subject::new("ip", ip),
        None => Subject::new("ip", "unknown"),
    }
}

fn add_headers(response: &mut Response<Body>, decision: &Decision) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&decision.policy_header()) {
        headers.insert("ratelimit-policy", value);
    }
    if let Ok(value) = HeaderValue::from_str(&decision.limit_header()) {
        headers.insert("ratelimit", value);
    }
}

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let Some(policy) = policy_for(declared_method(&request)) else {
            return Box::pin(self.inner.call(request));
        };
        let subject = subject_of(&request, &self.limiter.settings().trusted_proxies);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = self.limiter.clone();
        Box::pin(async move {
            let decision = limiter.check(policy, &subject).await;
            if !decision.allowed {
                let error = if decision.decided {
                    AppError::RateLimited {
                        subject: subject.as_str().to_owned(),
                        policy: decision.policy.name(),
                        quota: decision.quota,
                        retry_after: decision.retry_after,
                    }
                } else {
                    AppError::Unavailable {
                        dependency: crate::errors::Dependency::Redis,
                        source: anyhow::anyhow!("the rate limiter cannot decide and fails closed"),
                    }
                };
                let mut response = tonic::Status::from(error).into_http();
                add_headers(&mut response, &decision);
                if let Ok(value) = HeaderValue::from_str(&decision.retry_after_secs().to_string()) {
                    response.headers_mut().insert("retry-after", value);
                }
                return Ok(response);
            }
            let mut response = inner.call(request).await?;
            if decision.decided {
                add_headers(&mut response, &decision);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let envoy: IpAddr = "127.0.0.1".parse().unwrap();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        let trusted = [envoy];
        assert_eq!(
            client_ip(Some(envoy), Some("10.9.9.9, 203.0.113.7"), &trusted),
            Some(client),
            "the right-most untrusted hop, not a spoofable left-most one"
        );
        assert_eq!(
            client_ip(Some(stranger), Some("203.0.113.7"), &trusted),
            Some(stranger),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(client_ip(Some(envoy), None, &trusted), Some(envoy));
    }
}
