//! `supportdesk envoy-config`: Envoy's configuration for a deployment shape, its settings read
//! from the environment; the work is `wire::envoy`'s.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::wire::envoy::{self, EnvoySettings, Places, Shape};

/// Where Envoy runs, and where a local one listens and reads its files.
#[derive(Debug, clap::Args)]
pub struct EnvoyConfigArgs {
    /// The deployment shape: `local` (loopback; deploy/local/run, the tests, the bench) or
    /// `kubernetes` (the Envoy pod's init container; deploy/kubernetes/).
    #[arg(long, value_enum, default_value_t = Shape::Local)]
    pub shape: Shape,
    /// Where to write it; standard output when not given.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The REST listener's port instead of 8080.
    #[arg(long)]
    pub listen_port: Option<u16>,
    /// The admin interface's port instead of 9901.
    #[arg(long)]
    pub admin_port: Option<u16>,
    /// The Kubernetes probes listener's port instead of 9902.
    #[arg(long)]
    pub probes_port: Option<u16>,
    /// The descriptor set's path instead of the shape's (deploy/envoy/supportdesk.pb locally).
    #[arg(long)]
    pub descriptor: Option<String>,
    /// The OpenAPI document's path instead of the shape's (docs/openapi.json locally).
    #[arg(long)]
    pub openapi_document: Option<String>,
}

/// Renders and writes; exits 2 on a setting it refuses (naming it and the bad entry), 1 when the
/// configuration cannot be made or written.
pub fn run(arguments: &EnvoyConfigArgs) -> ExitCode {
    let settings = match EnvoySettings::from_env(arguments.shape.default_upstreams()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("supportdesk envoy-config: {error}");
            return ExitCode::from(2);
        }
    };
    let places = Places {
        listen_port: arguments.listen_port,
        admin_port: arguments.admin_port,
        probes_port: arguments.probes_port,
        descriptor: arguments.descriptor.clone(),
        openapi_document: arguments.openapi_document.clone(),
    };
    let written = envoy::render(arguments.shape, &settings, &places)
        .map_err(|error| error.to_string())
        .and_then(|text| match &arguments.out {
            Some(path) => std::fs::write(path, text)
                .map_err(|error| format!("cannot write {}: {error}", path.display())),
            None => {
                use std::io::Write as _;
                std::io::stdout()
                    .write_all(text.as_bytes())
                    .map_err(|error| format!("cannot write the configuration: {error}"))
            }
        });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("supportdesk envoy-config: {error}");
            ExitCode::FAILURE
        }
    }
}
