//! Logging set-up: JSON lines in production, pretty output on a terminal. Tests build the same
//! subscriber with a sink of their choice (`TEST_LOG=1` shows it) so that they can silence it or
//! capture it.
//!
//! Both formats write caller text recorded as string fields quoted and escaped (JSON strings;
//! Rust string literals in the pretty format), so it cannot forge a field or a line. The pretty
//! format is coloured only on a terminal, and never when `NO_COLOR` is set: a file gets no ANSI
//! codes.

use std::io::IsTerminal;

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
                    .with_ansi(colour())
                    .with_writer(sink),
            ),
        ),
    }
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
