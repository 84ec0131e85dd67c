//! Webhooks the desk sends (docs/webhooks.md, "Webhooks we send"): the catalogue of event types,
//! an endpoint's URL, the addresses a delivery may never reach, the retry schedule, and the
//! Standard Webhooks signature (`webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`, one `v1` per signing secret, space-separated).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::Mac;
use ipnet::IpNet;
use url::{Host, Url};
use uuid::Uuid;

use super::InvalidValue;
use super::email_webhook::signing_mac;

/// The prefix of a signing secret, as the Standard Webhooks libraries expect it.
pub const SIGNING_SECRET_PREFIX: &str = "whsec_";

/// The bytes of a signing secret the desk generates (the specification asks for 24 to 64).
const SIGNING_SECRET_BYTES: usize = 32;

/// The longest endpoint URL.
const MAX_ENDPOINT_URL_CHARS: usize = 2048;

/// One type of event (the catalogue of docs/webhooks.md; the proto's `event_types` rule lists the
/// same names, checked by a test).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    TicketCreated,
    TicketUpdated,
    TicketStatusChanged,
    TicketAssigned,
    TicketDeleted,
    CommentCreated,
    AttachmentReady,
    ChargeSucceeded,
    ChargeFailed,
    RefundSucceeded,
    OperationDone,
    EndpointDisabled,
    EndpointTest,
}

impl EventType {
    /// Every type, in the catalogue's order.
    pub const ALL: [Self; 13] = [
        Self::TicketCreated,
        Self::TicketUpdated,
        Self::TicketStatusChanged,
        Self::TicketAssigned,
        Self::TicketDeleted,
        Self::CommentCreated,
        Self::AttachmentReady,
        Self::ChargeSucceeded,
        Self::ChargeFailed,
        Self::RefundSucceeded,
        Self::OperationDone,
        Self::EndpointDisabled,
        Self::EndpointTest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TicketCreated => "ticket.created",
            Self::TicketUpdated => "ticket.updated",
            Self::TicketStatusChanged => "ticket.status_changed",
            Self::TicketAssigned => "ticket.assigned",
            Self::TicketDeleted => "ticket.deleted",
            Self::CommentCreated => "comment.created",
            Self::AttachmentReady => "attachment.ready",
            Self::ChargeSucceeded => "charge.succeeded",
            Self::ChargeFailed => "charge.failed",
            Self::RefundSucceeded => "refund.succeeded",
            Self::OperationDone => "operation.done",
            Self::EndpointDisabled => "endpoint.disabled",
            Self::EndpointTest => "endpoint.test",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == raw)
            .ok_or_else(|| {
                InvalidValue::new(format!(
                    "{raw:?} is no event type; the types are {}",
                    Self::ALL.map(Self::as_str).join(", ")
                ))
            })
    }

    /// What the event's payload carries.
    pub fn resource(self) -> EventResource {
        match self {
            Self::TicketCreated
            | Self::TicketUpdated
            | Self::TicketStatusChanged
            | Self::TicketAssigned
            | Self::TicketDeleted => EventResource::Ticket,
            Self::CommentCreated => EventResource::Comment,
            Self::AttachmentReady => EventResource::Attachment,
            Self::ChargeSucceeded | Self::ChargeFailed => EventResource::Charge,
            Self::RefundSucceeded => EventResource::Refund,
            Self::OperationDone => EventResource::Operation,
            Self::EndpointDisabled | Self::EndpointTest => EventResource::WebhookEndpoint,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of resource an event carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventResource {
    Ticket,
    Comment,
    Attachment,
    Charge,
    /// The charge after the refund, and the refund.
    Refund,
    Operation,
    WebhookEndpoint,
}

/// An endpoint's event filter: the types it is sent, none meaning every type; at most 32,
/// duplicates folded.
pub fn parse_event_types(raw: &[String]) -> Result<Vec<EventType>, InvalidValue> {
    super::within_list_bound(raw, "event types")?;
    let mut types = Vec::new();
    for name in raw {
        let kind = EventType::parse(name)?;
        if !types.contains(&kind) {
            types.push(kind);
        }
    }
    Ok(types)
}

/// Whether `http://` endpoints are accepted (local runs and tests only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemePolicy {
    HttpsOnly,
    HttpAllowed,
}

/// An endpoint URL: absolute, https (or http where allowed), with a host, without user info or
/// fragment, at most 2048 characters. A host given as an address must be one the
/// [`AddressPolicy`] admits; a name is checked at every delivery, on the addresses it resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointUrl(Url);

impl EndpointUrl {
    pub fn parse(
        raw: &str,
        schemes: SchemePolicy,
        addresses: &AddressPolicy,
    ) -> Result<Self, InvalidValue> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(InvalidValue::new("is required"));
        }
        if raw.chars().count() > MAX_ENDPOINT_URL_CHARS {
            return Err(InvalidValue::new(format!(
                "must be at most {MAX_ENDPOINT_URL_CHARS} characters"
            )));
        }
        let url = Url::parse(raw)
            .map_err(|error| InvalidValue::new(format!("is not an absolute URL ({error})")))?;
        match (url.scheme(), schemes) {
            ("https", _) | ("http", SchemePolicy::HttpAllowed) => {}
            ("http", SchemePolicy::HttpsOnly) => {
                return Err(InvalidValue::new(
                    "must be an https URL: deliveries are never sent in clear text",
                ));
            }
            (other, _) => {
                return Err(InvalidValue::new(format!(
                    "must be an https URL, not {other}:"
                )));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(InvalidValue::new(
                "must not carry a user name or password; verify deliveries by their signature",
            ));
        }
        if url.fragment().is_some() {
            return Err(InvalidValue::new("must not have a fragment (#...)"));
        }
        match url.host() {
            None => return Err(InvalidValue::new("must name a host")),
            Some(Host::Ipv4(address)) => addresses
                .admit(IpAddr::V4(address))
                .map_err(|refusal| InvalidValue::new(refusal.to_string()))?,
            Some(Host::Ipv6(address)) => addresses
                .admit(IpAddr::V6(address))
                .map_err(|refusal| InvalidValue::new(refusal.to_string()))?,
            Some(Host::Domain(name)) => {
                if name.eq_ignore_ascii_case("localhost")
                    || name.to_ascii_lowercase().ends_with(".localhost")
                {
                    addresses
                        .admit(IpAddr::V4(Ipv4Addr::LOCALHOST))
                        .map_err(|refusal| InvalidValue::new(refusal.to_string()))?;
                }
            }
        }
        Ok(Self(url))
    }

    /// A URL stored earlier, taken as it was accepted then.
    pub fn stored(raw: &str) -> Result<Self, InvalidValue> {
        Url::parse(raw)
            .map(Self)
            .map_err(|error| InvalidValue::new(format!("stored endpoint URL: {error}")))
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// Why an address is never sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressRefusal {
    Loopback(IpAddr),
    Private(IpAddr),
    LinkLocal(IpAddr),
    Metadata(IpAddr),
    Multicast(IpAddr),
    Unspecified(IpAddr),
    Reserved(IpAddr),
}

impl fmt::Display for AddressRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, address) = match self {
            Self::Loopback(address) => ("a loopback", address),
            Self::Private(address) => ("a private", address),
            Self::LinkLocal(address) => ("a link-local", address),
            Self::Metadata(address) => ("the cloud metadata", address),
            Self::Multicast(address) => ("a multicast", address),
            Self::Unspecified(address) => ("the unspecified", address),
            Self::Reserved(address) => ("a reserved", address),
        };
        write!(
            f,
            "{address} is {what} address: webhooks are sent only to public addresses"
        )
    }
}

/// The addresses a delivery may connect to: every public address, and none of the loopback,
/// private, link-local, metadata, multicast, unspecified or reserved ones (IPv4, IPv6, and IPv4
/// written as IPv6 or carried by 6to4 and Teredo) unless an allowed network (`OUTBOUND_WEBHOOK_ALLOW_NETWORKS`, for local runs
/// and tests) contains it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn allowing(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    pub fn admit(&self, address: IpAddr) -> Result<(), AddressRefusal> {
        let canonical = canonical(address);
        if self
            .allowed
            .iter()
            .any(|network| network.contains(&canonical) || network.contains(&address))
        {
            return Ok(());
        }
        match refusal(canonical) {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`, `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`),
/// or carried by a tunnel (6to4 `2002:AABB:CCDD::/48`, whose packets go to that IPv4 address;
/// Teredo `2001:0::/32`, whose packets go to the client's IPv4 address, stored inverted in the
/// last 32 bits), as the IPv4 address it reaches.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let segments = v6.segments();
            let embedded = Ipv4Addr::new(
                (segments[6] >> 8) as u8,
                segments[6] as u8,
                (segments[7] >> 8) as u8,
                segments[7] as u8,
            );
            let compatible = segments[..6].iter().all(|segment| *segment == 0)
                && !v6.is_loopback()
                && !v6.is_unspecified();
            let nat64 = segments[0] == 0x64
                && segments[1] == 0xff9b
                && segments[2..6].iter().all(|segment| *segment == 0);
            let six_to_four = segments[0] == 0x2002;
            let teredo = segments[0] == 0x2001 && segments[1] == 0;
            if compatible || nat64 {
                IpAddr::V4(embedded)
            } else if six_to_four {
                IpAddr::V4(Ipv4Addr::from(
                    (u32::from(segments[1]) << 16) | u32::from(segments[2]),
                ))
            } else if teredo {
                IpAddr::V4(Ipv4Addr::from(!u32::from(embedded)))
            } else {
                address
            }
        }
    }
}

fn refusal(address: IpAddr) -> Option<AddressRefusal> {
    match address {
        IpAddr::V4(v4) => refusal_v4(v4).map(|make| make(address)),
        IpAddr::V6(v6) => refusal_v6(v6).map(|make| make(address)),
    }
}

type Refuse = fn(IpAddr) -> AddressRefusal;

fn refusal_v4(address: Ipv4Addr) -> Option<Refuse> {
    let octets = address.octets();
    if address == Ipv4Addr::new(169, 254, 169, 254) || address == Ipv4Addr::new(100, 100, 100, 200)
    {
        return Some(AddressRefusal::Metadata);
    }
    if address.is_unspecified() || octets[0] == 0 {
        return Some(AddressRefusal::Unspecified);
    }
    if address.is_loopback() {
        return Some(AddressRefusal::Loopback);
    }
    if address.is_link_local() {
        return Some(AddressRefusal::LinkLocal);
    }
    // RFC 1918, and the carrier-grade NAT range 100.64.0.0/10 (RFC 6598).
    if address.is_private() || (octets[0] == 100 && (octets[1] & 0xc0) == 64) {
        return Some(AddressRefusal::Private);
    }
    if address.is_multicast() {
        return Some(AddressRefusal::Multicast);
    }
    // 192.0.0.0/24 (protocol assignments), the documentation ranges, 198.18.0.0/15
    // (benchmarking), 240.0.0.0/4 and the broadcast address.
    let reserved = (octets[0] == 192 && octets[1] == 0 && octets[2] == 0)
        || address.is_documentation()
        || (octets[0] == 198 && (octets[1] & 0xfe) == 18)
        || octets[0] >= 240;
    reserved.then_some(AddressRefusal::Reserved)
}

fn refusal_v6(address: Ipv6Addr) -> Option<Refuse> {
    let segments = address.segments();
    if address == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some(AddressRefusal::Metadata);
    }
    if address.is_unspecified() {
        return Some(AddressRefusal::Unspecified);
    }
    if address.is_loopback() {
        return Some(AddressRefusal::Loopback);
    }
    // fe80::/10.
    if (segments[0] & 0xffc0) == 0xfe80 {
        return Some(AddressRefusal::LinkLocal);
    }
    // Unique local fc00::/7, and the deprecated site-local fec0::/10.
    if (segments[0] & 0xfe00) == 0xfc00 || (segments[0] & 0xffc0) == 0xfec0 {
        return Some(AddressRefusal::Private);
    }
    if address.is_multicast() {
        return Some(AddressRefusal::Multicast);
    }
    // Documentation 2001:db8::/32, discard 100::/64, and everything outside 2000::/3 (the only
    // range handed out for the public internet).
    let reserved = (segments[0] == 0x2001 && segments[1] == 0x0db8)
        || (segments[0] == 0x0100 && segments[1..4].iter().all(|segment| *segment == 0))
        || (segments[0] & 0xe000) != 0x2000;
    reserved.then_some(AddressRefusal::Reserved)
}

/// When each retry of a failed delivery comes due, counted from the failure before it: the
/// delays between attempts (the first attempt is at once). Parsed from `5s,5m,30m,2h,...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl RetrySchedule {
    /// Parses a comma-separated list of delays with a unit each (`ms`, `s`, `m`, `h`, `d`).
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let mut delays = Vec::new();
        for item in raw.split(',').map(str::trim) {
            let split = item
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(|| InvalidValue::new(format!("{item:?} has no unit (s, m, h)")))?;
            let (number, unit) = item.split_at(split);
            let number: u64 = number
                .parse()
                .map_err(|_| InvalidValue::new(format!("{item:?} is not a number and a unit")))?;
            let unit_millis = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                other => {
                    return Err(InvalidValue::new(format!(
                        "{other:?} is no unit; use ms, s, m, h or d"
                    )));
                }
            };
            delays.push(Duration::from_millis(number.saturating_mul(unit_millis)));
        }
        if delays.is_empty() || delays.iter().any(Duration::is_zero) {
            return Err(InvalidValue::new("must list one or more delays above zero"));
        }
        Ok(Self(delays))
    }

    /// How many attempts a delivery gets: the first and one per delay.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.0.len() + 1).unwrap_or(u32::MAX)
    }

    /// The delay before the attempt after attempt `attempt` (from 1), or `None` when that was the
    /// last one.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        let index = usize::try_from(attempt).ok()?.checked_sub(1)?;
        self.0.get(index).copied()
    }

    /// From the first attempt to the last.
    pub fn span(&self) -> Duration {
        self.0.iter().sum()
    }
}

/// A signing secret: `whsec_` and the base64 of its key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    key: Vec<u8>,
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

impl SigningSecret {
    /// A fresh secret of 32 random bytes.
    pub fn generate() -> Self {
        use rand::RngCore as _;
        let mut key = vec![0; SIGNING_SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self { key }
    }

    /// The key bytes a secret was stored as.
    pub fn from_key(key: Vec<u8>) -> Self {
        Self { key }
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The secret as the customer sees it once: `whsec_<base64>`.
    pub fn reveal(&self) -> String {
        format!("{SIGNING_SECRET_PREFIX}{}", BASE64.encode(&self.key))
    }

    /// `v1,<base64 of HMAC-SHA256("{id}.{timestamp}.{body}")>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = signing_mac(&self.key, id, timestamp, body)
            .finalize()
            .into_bytes();
        format!("v1,{}", BASE64.encode(tag))
    }
}

/// The `webhook-signature` header of a delivery: one `v1` signature per secret, space-separated
/// (the new secret first during a rotation's overlap).
pub fn webhook_signature_header(
    secrets: &[&SigningSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|secret| secret.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether an endpoint is sent its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    Enabled,
    Disabled,
}

impl EndpointState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "enabled" => Ok(Self::Enabled),
            "disabled" => Ok(Self::Disabled),
            other => Err(InvalidValue::new(format!("{other:?} is no endpoint state"))),
        }
    }
}

/// Why an endpoint was disabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisabledReason {
    /// Every attempt failed for the whole retry schedule.
    Failing,
    /// An admin disabled it.
    ByAdmin,
}

impl DisabledReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failing => "failing",
            Self::ByAdmin => "by_admin",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "failing" => Ok(Self::Failing),
            "by_admin" => Ok(Self::ByAdmin),
            other => Err(InvalidValue::new(format!(
                "{other:?} is no disabled reason"
            ))),
        }
    }
}

/// A registered endpoint, without its secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: Uuid,
    pub account_id: Uuid,
    pub url: String,
    pub description: String,
    /// Empty: every type.
    pub event_types: Vec<EventType>,
    pub state: EndpointState,
    pub disabled_reason: Option<DisabledReason>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where a delivery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "pending" => Ok(Self::Pending),
            "succeeded" => Ok(Self::Succeeded),
            "failed" => Ok(Self::Failed),
            other => Err(InvalidValue::new(format!("{other:?} is no delivery state"))),
        }
    }
}

/// One event for one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub state: DeliveryState,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Newest first.
    pub attempt_log: Vec<DeliveryAttempt>,
}

/// One attempt of a delivery, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub attempt: i32,
    pub url: String,
    pub started_at: DateTime<Utc>,
    pub latency_ms: i32,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub response_excerpt: String,
}

/// The public id of an event: `evt_` and the 32 hex digits of its UUID.
pub fn event_public_id(id: Uuid) -> String {
    format!("evt_{}", id.simple())
}

/// A position in the order events are streamed in (WatchEvents): the id of the transaction that
/// wrote the event and its sequence number, sent to clients as `<txid>.<seq>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventCursor {
    pub txid: i64,
    pub seq: i64,
}

impl EventCursor {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let invalid = || InvalidValue::new("is not a cursor WatchEvents sent");
        let (txid, seq) = raw.split_once('.').ok_or_else(invalid)?;
        let number = |part: &str| -> Result<i64, InvalidValue> {
            if part.is_empty() || part.len() > 18 || !part.bytes().all(|byte| byte.is_ascii_digit())
            {
                return Err(invalid());
            }
            part.parse().map_err(|_| invalid())
        };
        Ok(Self {
            txid: number(txid)?,
            seq: number(seq)?,
        })
    }
}

impl fmt::Display for EventCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.txid, self.seq)
    }
}

/// An event id as clients send it (`evt_` and 32 hex digits), as the UUID it is.
pub fn parse_event_public_id(raw: &str) -> Result<Uuid, InvalidValue> {
    raw.strip_prefix("evt_")
        .filter(|hex| hex.len() == 32 && hex.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .and_then(|hex| Uuid::try_parse(hex).ok())
        .ok_or_else(|| InvalidValue::new("must be an event id: evt_ and 32 hex digits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(raw: &str) -> bool {
        AddressPolicy::default()
            .admit(raw.parse().unwrap())
            .is_err()
    }

    #[test]
    fn public_addresses_are_admitted_and_every_internal_one_is_refused() {
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!refused(public), "{public} should be admitted");
        }
        for internal in [
            "127.0.0.1",
            "127.9.9.9",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::ffff:10.0.0.1",
        ] {
            assert!(refused(internal), "{internal} should be refused");
        }
    }

    #[test]
    fn six_to_four_and_teredo_addresses_are_judged_by_the_ipv4_address_they_embed() {
        // 6to4 (2002:AABB:CCDD::/48) carries its IPv4 address in bits 16-47; Teredo
        // (2001:0::/32) the client's, inverted, in the last 32 bits (RFC 4380).
        for (internal, refusal) in [
            (
                "2002:7f00:1::",
                AddressRefusal::Loopback("127.0.0.1".parse().unwrap()),
            ),
            (
                "2002:a9fe:a9fe::1",
                AddressRefusal::Metadata("169.254.169.254".parse().unwrap()),
            ),
            (
                "2002:0a00:0001:ffff::",
                AddressRefusal::Private("10.0.0.1".parse().unwrap()),
            ),
            (
                "2001:0:4136:e378:8000:63bf:80ff:fffe",
                AddressRefusal::Loopback("127.0.0.1".parse().unwrap()),
            ),
            (
                "2001:0:4136:e378:8000:63bf:5601:5601",
                AddressRefusal::Metadata("169.254.169.254".parse().unwrap()),
            ),
        ] {
            assert_eq!(
                AddressPolicy::default().admit(internal.parse().unwrap()),
                Err(refusal),
                "{internal}"
            );
        }
        // A public IPv4 address behind either form is as public as itself.
        for public in ["2002:0808:0808::1", "2001:0:4136:e378:8000:63bf:f7f7:f7f7"] {
            assert!(!refused(public), "{public} should be admitted");
        }
    }

    #[test]
    fn the_metadata_address_is_named_as_such_even_written_as_ipv6() {
        let refusal = AddressPolicy::default()
            .admit("::ffff:169.254.169.254".parse().unwrap())
            .unwrap_err();
        assert!(
            matches!(refusal, AddressRefusal::Metadata(_)),
            "{refusal:?}"
        );
    }

    #[test]
    fn an_allowed_network_admits_its_addresses_only() {
        let policy = AddressPolicy::allowing(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(policy.admit("127.0.0.1".parse().unwrap()).is_ok());
        assert!(policy.admit("::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(policy.admit("169.254.169.254".parse().unwrap()).is_err());
        assert!(policy.admit("10.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn an_endpoint_url_must_be_https_without_credentials_or_internal_literal_hosts() {
        let policy = AddressPolicy::default();
        let parse = |raw| EndpointUrl::parse(raw, SchemePolicy::HttpsOnly, &policy);
        assert!(parse("https://hooks.example.com/supportdesk?x=1").is_ok());
        for (raw, problem) in [
            ("http://hooks.example.com/", "https"),
            ("ftp://hooks.example.com/", "https"),
            ("https://user:pw@hooks.example.com/", "user name"),
            ("https://hooks.example.com/#top", "fragment"),
            ("https://127.0.0.1/", "loopback"),
            ("https://[::ffff:a9fe:a9fe]/", "metadata"),
            ("https://localhost:8443/", "loopback"),
            ("not a url", "absolute URL"),
        ] {
            let error = parse(raw).unwrap_err();
            assert!(error.description().contains(problem), "{raw}: {error}");
        }
        assert!(
            EndpointUrl::parse("http://127.0.0.1:9/x", SchemePolicy::HttpAllowed, &{
                AddressPolicy::allowing(vec!["127.0.0.0/8".parse().unwrap()])
            })
            .is_ok()
        );
    }

    #[test]
    fn the_default_schedule_spans_about_three_days_in_ten_attempts() {
        let schedule = RetrySchedule::parse("5s,5m,30m,2h,5h,10h,14h,20h,20h").unwrap();
        assert_eq!(schedule.attempts(), 10);
        assert_eq!(schedule.delay_after(1), Some(Duration::from_secs(5)));
        assert_eq!(
            schedule.delay_after(9),
            Some(Duration::from_secs(20 * 3600))
        );
        assert_eq!(schedule.delay_after(10), None);
        let hours = schedule.span().as_secs_f64() / 3600.0;
        assert!((71.0..73.0).contains(&hours), "{hours}");
        assert!(RetrySchedule::parse("5x").is_err());
        assert!(RetrySchedule::parse("0s").is_err());
    }

    #[test]
    fn a_signature_is_the_standard_webhooks_hmac_of_id_timestamp_and_body() {
        // The example of the Standard Webhooks specification's reference implementations.
        let secret =
            SigningSecret::from_key(BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap());
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(secret.reveal().starts_with("whsec_"));
    }

    #[test]
    fn every_event_type_parses_from_its_name() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()).unwrap(), kind);
        }
        assert!(EventType::parse("ticket.exploded").is_err());
    }
}
