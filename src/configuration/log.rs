//! `LOG_FORMAT` and `RUST_LOG`: how log lines are written and which are.

use std::str::FromStr;

use super::reader::Reader;

#[derive(Clone, Debug)]
pub struct LogSettings {
    /// `LOG_FORMAT`
    pub format: LogFormat,
    /// `RUST_LOG`: a tracing-subscriber filter directive.
    pub filter: String,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object a line: for production and log shippers.
    Json,
    /// Human-readable, coloured: for a terminal.
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            _ => Err("must be `json` or `pretty`".to_owned()),
        }
    }
}

impl Reader<'_> {
    pub(super) fn log(&mut self) -> LogSettings {
        LogSettings {
            format: self.parsed("LOG_FORMAT", LogFormat::Json),
            filter: self.parsed("RUST_LOG", "info".to_owned()),
        }
    }
}
