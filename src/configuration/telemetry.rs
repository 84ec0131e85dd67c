//! `OTEL_*`: traces over OTLP (docs/observability.md, "Traces"). Off unless an endpoint is set;
//! the variable names and their meanings are OpenTelemetry's own, so an operator's usual
//! settings work, and every value is checked here rather than by the SDK at its first export.

use std::str::FromStr;
use std::time::Duration;

use super::reader::Reader;

/// Where and how spans are exported; `None` in [`super::Settings::traces`] when tracing is off.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSettings {
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's
    /// OTLP/gRPC address (`http://host:4317`; `https://` for TLS is not built in).
    pub endpoint: url::Url,
    /// `OTEL_SERVICE_NAME`: the `service.name` resource attribute.
    pub service_name: String,
    /// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler: TraceSampler,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds): how long one export may take.
    pub export_timeout: Duration,
}

/// Which traces are recorded (OpenTelemetry's `OTEL_TRACES_SAMPLER` values).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TraceSampler {
    /// `always_on`
    AlwaysOn,
    /// `always_off`
    AlwaysOff,
    /// `traceidratio`: this share of traces, by their trace id.
    Ratio(f64),
    /// `parentbased_always_on` (the default): follow the caller's sampled flag; record every
    /// trace that starts here.
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`
    ParentBasedRatio(f64),
}

/// The names `OTEL_TRACES_SAMPLER` takes, before the ratio is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SamplerName {
    AlwaysOn,
    AlwaysOff,
    Ratio,
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedRatio,
}

impl FromStr for SamplerName {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "always_on" => Ok(Self::AlwaysOn),
            "always_off" => Ok(Self::AlwaysOff),
            "traceidratio" => Ok(Self::Ratio),
            "parentbased_always_on" => Ok(Self::ParentBasedAlwaysOn),
            "parentbased_always_off" => Ok(Self::ParentBasedAlwaysOff),
            "parentbased_traceidratio" => Ok(Self::ParentBasedRatio),
            _ => Err("must be one of always_on, always_off, traceidratio, \
                      parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
                .to_owned()),
        }
    }
}

/// The only OTLP transport built in.
const GRPC: &str = "grpc";

impl Reader<'_> {
    pub(super) fn traces(&mut self) -> Option<TraceSettings> {
        let sampler = self.sampler();
        let service_name = self.parsed("OTEL_SERVICE_NAME", "supportdesk".to_owned());
        let export_timeout = self.millis("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000);
        let protocol = self
            .raw("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .map(|value| ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", value))
            .or_else(|| {
                self.raw("OTEL_EXPORTER_OTLP_PROTOCOL")
                    .map(|value| ("OTEL_EXPORTER_OTLP_PROTOCOL", value))
            });
        if let Some((key, value)) = protocol
            && value.trim() != GRPC
        {
            self.problems.push(format!(
                "{key}={value:?} is invalid: only `{GRPC}` (OTLP over gRPC) is supported"
            ));
        }
        let disabled = self.parsed("OTEL_SDK_DISABLED", false);
        let endpoint = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .into_iter()
        .find_map(|key| self.raw(key).map(|value| (key, value)))
        .and_then(|(key, value)| self.endpoint(key, value.trim()))?;
        if disabled {
            return None;
        }
        Some(TraceSettings {
            endpoint,
            service_name,
            sampler,
            export_timeout,
        })
    }

    fn endpoint(&mut self, key: &str, value: &str) -> Option<url::Url> {
        match url::Url::parse(value) {
            Ok(url) if url.scheme() == "http" && url.host_str().is_some_and(|h| !h.is_empty()) => {
                Some(url)
            }
            Ok(_) => {
                self.problems.push(format!(
                    "{key}={value:?} is invalid: must be an http:// URL with a host \
                     (the collector's OTLP/gRPC port, e.g. http://127.0.0.1:4317)"
                ));
                None
            }
            Err(error) => {
                self.problems
                    .push(format!("{key}={value:?} is invalid: {error}"));
                None
            }
        }
    }

    fn sampler(&mut self) -> TraceSampler {
        let name = self.parsed("OTEL_TRACES_SAMPLER", SamplerName::ParentBasedAlwaysOn);
        let ratio = match name {
            SamplerName::Ratio | SamplerName::ParentBasedRatio => {
                let ratio: f64 = self.parsed("OTEL_TRACES_SAMPLER_ARG", 1.0);
                if (0.0..=1.0).contains(&ratio) {
                    ratio
                } else {
                    self.problems.push(format!(
                        "OTEL_TRACES_SAMPLER_ARG={ratio} is invalid: must be between 0 and 1"
                    ));
                    1.0
                }
            }
            SamplerName::AlwaysOn
            | SamplerName::AlwaysOff
            | SamplerName::ParentBasedAlwaysOn
            | SamplerName::ParentBasedAlwaysOff => 1.0,
        };
        match name {
            SamplerName::AlwaysOn => TraceSampler::AlwaysOn,
            SamplerName::AlwaysOff => TraceSampler::AlwaysOff,
            SamplerName::Ratio => TraceSampler::Ratio(ratio),
            SamplerName::ParentBasedAlwaysOn => TraceSampler::ParentBasedAlwaysOn,
            SamplerName::ParentBasedAlwaysOff => TraceSampler::ParentBasedAlwaysOff,
            SamplerName::ParentBasedRatio => TraceSampler::ParentBasedRatio(ratio),
        }
    }
}
