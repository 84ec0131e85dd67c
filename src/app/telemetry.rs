//! Logging set-up: JSON lines in production, pretty output on a terminal. Tests build the same
//! subscriber with a sink of their choice (`TEST_LOG=1` shows it) so that they can silence it or
//! capture it.
//!
//! Both formats write caller text recorded as string fields quoted and escaped (JSON strings;
//! Rust string literals in the pretty format), so it cannot forge a field or a line. The pretty
//! format is coloured only on a terminal, and never when `NO_COLOR` is set: a file gets no ANSI
//! codes.
//!
//! With traces configured ([`start_traces`]), the subscriber gains the OpenTelemetry layer (only
//! then: without traces it is the plain one, so an untraced service pays nothing for them), and
//! every line written while a trace is active carries its `trace_id` and `span_id` (JSON fields;
//! `trace_id=... span_id=...` at the end of a pretty line, which is then uncoloured). Only the
//! fmt layer follows `RUST_LOG`: the service's spans reach the exporter at any log level.

use std::io::IsTerminal;
use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, Tracer};
use tracing::subscriber::set_global_default;
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, layer::SubscriberExt};

use crate::configuration::{LogFormat, TraceSampler, TraceSettings};
use crate::telemetry::traces;

/// A subscriber writing to `sink` in `format`, filtered by `filter` (a `RUST_LOG` directive).
pub fn get_subscriber<Sink>(
    filter: &str,
    format: LogFormat,
    sink: Sink,
) -> Box<dyn Subscriber + Send + Sync>
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = Registry::default().with(filter);
    match format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(sink),
            ),
        ),
        LogFormat::Pretty => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(colour())
                    .with_writer(sink),
            ),
        ),
    }
}

/// The subscriber of [`get_subscriber`] plus the OpenTelemetry layer exporting through
/// `tracer`: the service's spans (target `supportdesk`, INFO and above) whatever `filter` says,
/// and log lines that carry the active trace's ids.
pub fn get_subscriber_with_traces<Sink>(
    filter: &str,
    format: LogFormat,
    sink: Sink,
    tracer: Tracer,
) -> Box<dyn Subscriber + Send + Sync>
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let spans = Targets::new().with_target("supportdesk", tracing::Level::INFO);
    let registry = Registry::default().with(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_filter(spans),
    );
    match format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .map_event_format(|format| WithTraceIds {
                        inner: format,
                        style: LogFormat::Json,
                    })
                    .with_writer(sink)
                    .with_filter(filter),
            ),
        ),
        LogFormat::Pretty => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(false)
                    .map_event_format(|format| WithTraceIds {
                        inner: format,
                        style: LogFormat::Pretty,
                    })
                    .with_writer(sink)
                    .with_filter(filter),
            ),
        ),
    }
}

/// An event format that adds the active trace's `trace_id` and `span_id` to what `inner`
/// writes. The ids are hex digits the exporter made (a caller's `traceparent` is accepted only
/// when well-formed), so they cannot forge anything either.
struct WithTraceIds<F> {
    inner: F,
    style: LogFormat,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = traces::current_ids() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match self.style {
            LogFormat::Json => match line.strip_prefix('{') {
                Some(rest) => {
                    let comma = if rest.starts_with('}') { "" } else { "," };
                    write!(
                        writer,
                        "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"{comma}{rest}"
                    )
                }
                None => writer.write_str(&line),
            },
            LogFormat::Pretty => {
                let body = line.strip_suffix('\n').unwrap_or(&line);
                writeln!(writer, "{body} trace_id={trace_id} span_id={span_id}")
            }
        }
    }
}

/// The tracer provider, kept for [`flush_traces`] and [`shutdown_traces`].
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Builds the OTLP/gRPC exporter and its batch processor for `settings` and turns the service's
/// spans on ([`traces::enable`]); returns the tracer for [`get_subscriber_with_traces`]. Call
/// once, inside the Tokio runtime (the exporter's channel lives on it; the batch processor's own
/// thread hands spans to it).
pub fn start_traces(settings: &TraceSettings) -> anyhow::Result<Tracer> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.as_str())
        .with_timeout(settings.export_timeout)
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler(settings.sampler))
        .with_resource(
            Resource::builder_empty()
                .with_service_name(settings.service_name.clone())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build();
    let tracer = provider.tracer("supportdesk");
    let _ = PROVIDER.set(provider);
    traces::enable();
    Ok(tracer)
}

fn sampler(sampler: TraceSampler) -> Sampler {
    match sampler {
        TraceSampler::AlwaysOn => Sampler::AlwaysOn,
        TraceSampler::AlwaysOff => Sampler::AlwaysOff,
        TraceSampler::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
        TraceSampler::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        TraceSampler::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        TraceSampler::ParentBasedRatio(ratio) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
    }
}

/// Exports every span ended so far and waits for the collector's answer (or the export
/// timeout): the drain calls it once the last RPC has answered. Does nothing without traces.
pub async fn flush_traces() {
    let Some(provider) = PROVIDER.get() else {
        return;
    };
    let provider = provider.clone();
    // The flush blocks until the batch thread has exported, on this runtime's channel.
    match tokio::task::spawn_blocking(move || provider.force_flush()).await {
        Ok(Ok(())) => tracing::info!("traces flushed"),
        Ok(Err(error)) => tracing::warn!(%error, "traces could not be flushed"),
        Err(error) => tracing::warn!(%error, "the traces flush panicked"),
    }
}

/// Flushes and stops the exporter, for the end of the process. Does nothing without traces.
pub async fn shutdown_traces() {
    let Some(provider) = PROVIDER.get() else {
        return;
    };
    let provider = provider.clone();
    let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
}

/// True when the pretty format may colour its output: stdout is a terminal and `NO_COLOR` (the
/// no-color.org convention) is unset or empty.
fn colour() -> bool {
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// Installs `subscriber` for the whole process; call once.
pub fn init_subscriber(subscriber: Box<dyn Subscriber + Send + Sync>) {
    set_global_default(subscriber).expect("a tracing subscriber was already installed");
}
