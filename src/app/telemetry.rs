//! Logging set-up: JSON lines in production, pretty output on a terminal. Tests build the same
//! subscriber with a sink of their choice (`TEST_LOG=1` shows it) so that they can silence it or
//! capture it.

use tracing::Subscriber;
use tracing::subscriber::set_global_default;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{EnvFilter, Registry, layer::SubscriberExt};

use crate::configuration::LogFormat;

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
                    .with_writer(sink),
            ),
        ),
    }
}

/// Installs `subscriber` for the whole process; call once.
pub fn init_subscriber(subscriber: Box<dyn Subscriber + Send + Sync>) {
    set_global_default(subscriber).expect("a tracing subscriber was already installed");
}
