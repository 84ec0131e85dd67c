//! The spans an OpenTelemetry trace is made of, and W3C trace context in and out
//! (docs/observability.md, "Traces"). Everything here is inert until [`enable`] is called, which
//! `app::telemetry` does only when an OTLP endpoint is configured: with traces off, no span
//! below is created ([`tracing::Span::none`] instead), no header is read or written, and the
//! database connections carry no instrumentation.
//!
//! - RPC spans are the middleware's own (`rpc`, kind server); [`accept_parent`] makes a caller's
//!   `traceparent` their parent and [`rpc_answered`] records the gRPC code on them.
//! - [`SqlSpans`]: one span per SQL statement, with the statement's text and never its values.
//! - [`redis_script`]: one span per Redis script call.
//! - [`provider_call`]: one span per call to an outside provider (payments, email, storage), whose
//!   trace context [`outgoing_headers`] sends along.
//! - [`current_traceparent`] and [`resumed`]: work queued in a transaction (a notification)
//!   carries its RPC's trace context in its row, and the worker's span joins that trace.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether traces are exported; set once at start-up.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// W3C trace context's header.
const TRACEPARENT: &str = "traceparent";

/// True when traces are exported (an OTLP endpoint is configured).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns the spans of this module on, for the whole process; `app::telemetry` calls it once the
/// exporter exists.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// True when `value` is a well-formed version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`,
/// lower case, as W3C Trace Context writes it. Anything else is ignored whole (with its
/// `tracestate`), so no caller text reaches a span or a log line through it.
pub fn is_plain_traceparent(value: &[u8]) -> bool {
    let lower_hex = |part: &[u8]| {
        part.iter()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(byte))
    };
    value.len() == 55
        && value.starts_with(b"00-")
        && value[35] == b'-'
        && value[52] == b'-'
        && lower_hex(&value[3..35])
        && lower_hex(&value[36..52])
        && lower_hex(&value[53..55])
}

/// Reads a request's headers for the W3C propagator.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes the W3C headers into an outgoing request's headers.
struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes the caller's trace (a well-formed `traceparent`, exactly one) the parent of `span`, the
/// RPC's span, before it is entered. Without one, or with a malformed one, the RPC starts a
/// trace of its own.
pub fn accept_parent(span: &Span, headers: &http::HeaderMap) {
    let mut parents = headers.get_all(TRACEPARENT).iter();
    let (Some(parent), None) = (parents.next(), parents.next()) else {
        return;
    };
    if !is_plain_traceparent(parent.as_bytes()) {
        return;
    }
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if context.span().span_context().is_valid() {
        // Only fails when the span is disabled or already started: then it has no parent to set.
        let _ = span.set_parent(context);
    }
}

/// The `traceparent` (and `tracestate`) of the current span, for a request to an outside
/// provider; empty when traces are off or no trace is active.
pub fn outgoing_headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    if !enabled() {
        return headers;
    }
    let context = opentelemetry::Context::current();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(&mut headers));
    }
    headers
}

/// The `traceparent` of the current span when traces are on and a trace is active: what a
/// transaction stores with the work it queues (`crate::db::Limits`), so that the work, done
/// later by a worker, joins the trace ([`resumed`]). Always a well-formed version-00 value.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let mut headers = http::HeaderMap::new();
    let context = Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(&mut headers));
    headers
        .get(TRACEPARENT)
        .filter(|value| is_plain_traceparent(value.as_bytes()))
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// A span for work a worker does on behalf of whoever queued it (`operation`, e.g.
/// `notification.send`), a child of the span whose `traceparent` was stored with the work
/// ([`current_traceparent`]), in its trace; a trace of its own when none was stored (traces
/// were off, or background work queued it) or the stored value is not well formed. None when
/// traces are off.
pub fn resumed(operation: &'static str, stored: Option<&str>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "queued.work",
        otel.name = operation,
        otel.kind = "consumer",
        operation = operation,
    );
    if let Some(parent) = stored.filter(|parent| is_plain_traceparent(parent.as_bytes())) {
        let mut headers = http::HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_str(parent) {
            headers.insert(TRACEPARENT, value);
        }
        let context = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        if context.span().span_context().is_valid() {
            // Only fails when the span is disabled: then it has no parent to set.
            let _ = span.set_parent(context);
        }
    }
    span
}

/// The trace and span ids of the current span, in hex, when a trace is active: what log lines
/// carry as `trace_id` and `span_id`.
pub fn current_ids() -> Option<(String, String)> {
    let context = opentelemetry::Context::current();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// The span of one RPC when traces are on: the middleware's fields (method, request id, then the
/// caller), plus OpenTelemetry's name, kind and RPC attributes.
pub fn rpc_span(method: &str, request_id: &str) -> Span {
    let (service, name) = method
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", method));
    tracing::info_span!(
        "rpc",
        otel.name = method.trim_start_matches('/'),
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = name,
        rpc.grpc.status_code = Empty,
        method = method,
        request_id = request_id,
        account_id = Empty,
        caller = Empty,
    )
}

/// gRPC codes that are the server's fault: OpenTelemetry's semantic conventions mark a server
/// span as an error for these only (a NOT_FOUND is the caller's business).
const SERVER_FAULTS: [u16; 6] = [2, 4, 12, 13, 14, 15];

/// Records the gRPC `code` an RPC answered on its span.
pub fn rpc_answered(span: &Span, code: u16) {
    span.record("rpc.grpc.status_code", i64::from(code));
    if SERVER_FAULTS.contains(&code) {
        span.record("otel.status_code", "error");
    }
}

/// A span for one call of the Redis script `script`; none when traces are off.
pub fn redis_script(script: &'static str) -> Span {
    redis_call(script, "EVALSHA")
}

/// A span for one Redis command (`operation`, e.g. `GET`) made for `purpose`, inside the current
/// span (an RPC's); none when traces are off or no span is current.
pub fn redis_call(purpose: &'static str, operation: &'static str) -> Span {
    // Outside any span (the cache's background repair), no trace of its own either.
    if !enabled() || Span::current().is_none() {
        return Span::none();
    }
    tracing::info_span!(
        "redis",
        otel.name = purpose,
        otel.kind = "client",
        db.system = "redis",
        db.operation = operation,
        purpose = purpose,
    )
}

/// A span for one call (one attempt) to the outside `provider` (`payments`, `email`,
/// `storage`), doing `operation` (an HTTP method and path, without query or values); none when
/// traces are off. [`provider_outcome`] records how it ended.
pub fn provider_call(provider: &'static str, method: &str, path: &str) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        "provider.call",
        otel.name = format!("{provider} {method}").as_str(),
        otel.kind = "client",
        otel.status_code = Empty,
        provider = provider,
        http.request.method = method,
        url.path = path,
        http.response.status_code = Empty,
        outcome = Empty,
    )
}

/// Records how a provider call ended: the HTTP status when there was an answer, and `outcome`
/// (`ok`, `refused`, `failed`, `timeout`, `unreachable`...).
pub fn provider_outcome(span: &Span, status: Option<u16>, outcome: &str, failed: bool) {
    if span.is_none() {
        return;
    }
    if let Some(status) = status {
        span.record("http.response.status_code", i64::from(status));
    }
    span.record("outcome", outcome);
    if failed {
        span.record("otel.status_code", "error");
    }
}

/// diesel instrumentation that opens a span per SQL statement (kind client, `db.statement` the
/// statement's text, never its bound values) under whatever span is current, closing it when
/// the statement finishes. Installed on the pool's connections only when traces are on.
/// Statements outside any span (a background job's polling) open none, so idle polling does not
/// make a trace a second.
#[derive(Debug, Default)]
pub struct SqlSpans {
    /// The statements started and not yet finished, oldest first (diesel-async may pipeline).
    open: VecDeque<Span>,
}

impl SqlSpans {
    fn start(&mut self, statement: &str) {
        if Span::current().is_none() {
            self.open.push_back(Span::none());
            return;
        }
        let operation = statement
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        self.open.push_back(tracing::info_span!(
            "sql",
            otel.name = operation.as_str(),
            otel.kind = "client",
            otel.status_code = Empty,
            db.system = "postgresql",
            db.operation = operation.as_str(),
            db.statement = statement,
            error = Empty,
        ));
    }

    fn finish(&mut self, error: Option<&diesel::result::Error>) {
        let Some(span) = self.open.pop_front() else {
            return;
        };
        if let Some(error) = error
            && !span.is_none()
        {
            span.record("otel.status_code", "error");
            span.record("error", error.to_string().as_str());
        }
    }
}

/// The statement's text without the values diesel's debug form appends (`-- binds: [...]`).
fn statement_text(query: &dyn diesel::connection::DebugQuery) -> String {
    without_values(query.to_string())
}

/// How a transaction's opening round trip sets the trace it carries (`crate::db::Limits`).
pub const TRACEPARENT_SETTING: &str = "set_config('supportdesk.traceparent', '";

/// `text` without diesel's appended binds, and with the `traceparent` a transaction's opening
/// round trip interpolates replaced by `<traceparent>`: a statement's span shows its shape,
/// never a value (the trace it names is the span's own anyway).
fn without_values(mut text: String) -> String {
    if let Some(binds) = text.find(" -- binds: ") {
        text.truncate(binds);
    }
    if let Some(at) = text.find(TRACEPARENT_SETTING) {
        let value = at + TRACEPARENT_SETTING.len();
        let end = text[value..]
            .find('\'')
            .map_or(text.len(), |quote| value + quote);
        text.replace_range(value..end, "<traceparent>");
    }
    text
}

impl Instrumentation for SqlSpans {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            self.start(&statement_text(query));
        } else if let InstrumentationEvent::FinishQuery { error, .. } = event {
            self.finish(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statements_text_keeps_neither_its_binds_nor_the_traceparent_of_its_transaction() {
        let begin = format!(
            "BEGIN; SELECT set_config('statement_timeout', '900', true), \
             {TRACEPARENT_SETTING}00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', true)"
        );
        assert_eq!(
            without_values(begin),
            "BEGIN; SELECT set_config('statement_timeout', '900', true), \
             set_config('supportdesk.traceparent', '<traceparent>', true)"
        );
        assert_eq!(
            without_values("SELECT 1 WHERE a = $1 -- binds: [7]".to_owned()),
            "SELECT 1 WHERE a = $1"
        );
    }

    #[test]
    fn only_a_well_formed_version_00_traceparent_is_plain() {
        assert!(is_plain_traceparent(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        for malformed in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 injected=1",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473\"-00f067aa0ba902b7-01",
        ] {
            assert!(!is_plain_traceparent(malformed.as_bytes()), "{malformed}");
        }
    }
}
