//! `supportdesk envoy-config` (docs/deployment.md, "Envoy's configuration"): what it renders for
//! each deployment shape is a configuration Envoy itself accepts (`envoy --mode validate`), so a
//! template change the rendering mishandles fails here, before any Envoy is started with it.

use std::process::Command;

use crate::support::envoy::envoy_config;
use crate::support::{envoy, repository_root};

#[test]
fn envoy_accepts_what_envoy_config_renders_for_every_shape() {
    let workdir = tempfile::tempdir().expect("a temporary directory");
    let descriptor = workdir.path().join("supportdesk.pb");
    std::fs::write(&descriptor, supportdesk::wire::proto::FILE_DESCRIPTOR_SET)
        .expect("write the descriptor set");
    let document = repository_root().join("docs/openapi.json");
    for shape in ["local", "kubernetes"] {
        let output = envoy_config(
            &[],
            &[
                "--shape".to_owned(),
                shape.to_owned(),
                "--descriptor".to_owned(),
                descriptor.display().to_string(),
                "--openapi-document".to_owned(),
                document.display().to_string(),
            ],
        )
        .output()
        .expect("run supportdesk envoy-config");
        assert!(
            output.status.success(),
            "{shape}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let config = workdir.path().join(format!("envoy-{shape}.yaml"));
        std::fs::write(&config, &output.stdout).expect("write the configuration");
        let validated = Command::new(envoy())
            .args(["--mode", "validate", "--log-level", "error", "-c"])
            .arg(&config)
            .output()
            .expect("run envoy --mode validate");
        assert!(
            validated.status.success(),
            "Envoy refuses the {shape} configuration:\n{}{}",
            String::from_utf8_lossy(&validated.stdout),
            String::from_utf8_lossy(&validated.stderr)
        );
    }
}
