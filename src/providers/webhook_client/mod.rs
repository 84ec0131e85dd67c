//! Requests to addresses customers choose: the HTTP client that delivers webhooks to their
//! endpoints (docs/webhooks.md, "Webhooks we send").
//!
//! Every request is a server-side request forgery waiting to happen, so the client:
//!
//! * resolves the endpoint's host itself ([`GuardedResolver`]) and hands the connector only the
//!   addresses the [`AddressPolicy`] admits: the address checked is the address connected to,
//!   with no second lookup in between (no DNS-rebinding window). A host written as an address
//!   is checked the same way before the request;
//! * passes every address through a [`DialSeam`] last, which tests replace with one that
//!   records the address and refuses anything outside 127.0.0.0/8, so that a broken policy fails
//!   a test instead of reaching the network;
//! * follows no redirect, uses no proxy, bounds each attempt by a timeout, and reads at most
//!   [`MAX_RESPONSE_READ`] bytes of an answer (keeping the first [`EXCERPT_BYTES`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use url::{Host, Url};

use crate::configuration::OutboundWebhookSettings;
use crate::domain::AddressPolicy;

/// The part of an answer kept in the attempt log.
pub const EXCERPT_BYTES: usize = 2048;

/// The most of an answer read before the connection is dropped: an endless body costs this and
/// no more.
pub const MAX_RESPONSE_READ: usize = 64 * 1024;

/// The last check before an address is dialled.
pub trait DialSeam: Send + Sync + fmt::Debug {
    /// `Err` with the reason to refuse dialling `address`.
    fn check(&self, address: SocketAddr) -> Result<(), String>;
}

/// Production's seam: the policy has decided; every address it admitted is dialled.
#[derive(Debug, Default)]
pub struct DialAsAdmitted;

impl DialSeam for DialAsAdmitted {
    fn check(&self, _address: SocketAddr) -> Result<(), String> {
        Ok(())
    }
}

/// Resolves host names for the client: the static table (`OUTBOUND_WEBHOOK_RESOLVE`) or DNS,
/// then only the admitted addresses, each passed through the seam.
#[derive(Clone, Debug)]
struct GuardedResolver {
    policy: AddressPolicy,
    table: Arc<std::collections::BTreeMap<String, Vec<IpAddr>>>,
    seam: Arc<dyn DialSeam>,
}

/// Why no address of a host may be dialled.
#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl GuardedResolver {
    /// The addresses of `host` that may be dialled, or why none may.
    async fn admitted(&self, host: &str) -> Result<Vec<SocketAddr>, Refused> {
        let candidates: Vec<IpAddr> = match self.table.get(&host.to_ascii_lowercase()) {
            Some(addresses) => addresses.clone(),
            None => tokio::net::lookup_host((host, 0))
                .await
                .map_err(|error| Refused(format!("cannot resolve {host}: {error}")))?
                .map(|address| address.ip())
                .collect(),
        };
        self.admit_all(host, &candidates)
    }

    fn admit_all(&self, host: &str, candidates: &[IpAddr]) -> Result<Vec<SocketAddr>, Refused> {
        let mut admitted = Vec::new();
        let mut first_refusal = None;
        for address in candidates {
            match self.policy.admit(*address) {
                Ok(()) => {
                    let socket = SocketAddr::new(*address, 0);
                    self.seam.check(socket).map_err(Refused)?;
                    admitted.push(socket);
                }
                Err(refusal) => {
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        match (admitted.is_empty(), first_refusal) {
            (false, _) => Ok(admitted),
            (true, Some(refusal)) => Err(Refused(format!("{host} resolves to {refusal}"))),
            (true, None) => Err(Refused(format!("{host} resolves to no address"))),
        }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let addresses = resolver.admitted(name.as_str()).await?;
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// The status the endpoint answered, if it answered.
    pub status: Option<u16>,
    /// Why there was no status (or why the answer's body could not be read in time).
    pub error: Option<String>,
    /// The first [`EXCERPT_BYTES`] of the answer, as text.
    pub excerpt: String,
    pub latency: Duration,
}

impl AttemptOutcome {
    /// A 2xx answer.
    pub fn delivered(&self) -> bool {
        self.status
            .is_some_and(|status| (200..300).contains(&status))
    }
}

/// The client deliveries go through.
#[derive(Clone, Debug)]
pub struct WebhookClient {
    client: reqwest::Client,
    resolver: GuardedResolver,
    timeout: Duration,
}

impl WebhookClient {
    pub fn new(
        settings: &OutboundWebhookSettings,
        seam: Arc<dyn DialSeam>,
    ) -> anyhow::Result<Self> {
        let resolver = GuardedResolver {
            policy: AddressPolicy::allowing(settings.allow_networks.clone()),
            table: Arc::new(settings.resolve.clone()),
            seam,
        };
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(resolver.clone()))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!settings.allow_http)
            .connect_timeout(settings.attempt_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .user_agent(concat!("supportdesk-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            resolver,
            timeout: settings.attempt_timeout,
        })
    }

    /// POSTs `body` to `url` with `headers`, within the attempt timeout; never fails, the
    /// outcome says what happened.
    pub async fn post(&self, url: &Url, headers: http::HeaderMap, body: Bytes) -> AttemptOutcome {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let outcome = |status, error: Option<String>, excerpt: String| AttemptOutcome {
            status,
            error,
            excerpt,
            latency: started.elapsed(),
        };
        // A host written as an address never reaches the resolver: it is checked here.
        let literal = match url.host() {
            Some(Host::Ipv4(address)) => Some(IpAddr::V4(address)),
            Some(Host::Ipv6(address)) => Some(IpAddr::V6(address)),
            Some(Host::Domain(_)) | None => None,
        };
        if let Some(address) = literal
            && let Err(refused) = self.resolver.admit_all(&address.to_string(), &[address])
        {
            return outcome(None, Some(refused.0), String::new());
        }
        let request = self
            .client
            .post(url.clone())
            .headers(headers)
            .body(body)
            .send();
        let response = match tokio::time::timeout_at(deadline, request).await {
            Err(_) => {
                return outcome(
                    None,
                    Some(format!("no answer within {} ms", self.timeout.as_millis())),
                    String::new(),
                );
            }
            Ok(Err(error)) => return outcome(None, Some(describe(&error)), String::new()),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let (excerpt, read_error) = bounded_read(response, deadline).await;
        outcome(Some(status), read_error, excerpt)
    }
}

/// Reads at most [`MAX_RESPONSE_READ`] bytes of the answer before `deadline`, keeping the first
/// [`EXCERPT_BYTES`]; the rest is never read (the connection is dropped with the response).
async fn bounded_read(
    mut response: reqwest::Response,
    deadline: Instant,
) -> (String, Option<String>) {
    let mut kept = Vec::new();
    let mut read = 0usize;
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => {
                return (
                    text(&kept),
                    Some("the answer's body did not end in time".to_owned()),
                );
            }
            Ok(Err(error)) => return (text(&kept), Some(describe(&error))),
            Ok(Ok(None)) => return (text(&kept), None),
            Ok(Ok(Some(chunk))) => {
                read += chunk.len();
                let room = EXCERPT_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if read >= MAX_RESPONSE_READ {
                    return (text(&kept), None);
                }
            }
        }
    }
}

/// The bytes as text PostgreSQL stores: invalid UTF-8 and NUL (which a `text` column refuses)
/// become U+FFFD.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{FFFD}")
}

/// A request error as one line: its own words and every cause's (the resolver's refusal is a
/// cause of reqwest's "error sending request").
fn describe(error: &reqwest::Error) -> String {
    let mut message = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let words = cause.to_string();
        if !message.contains(&words) {
            message.push_str(": ");
            message.push_str(&words);
        }
        source = cause.source();
    }
    message
}
