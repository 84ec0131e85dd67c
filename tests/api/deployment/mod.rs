//! How supportdesk is shipped and run (docs/deployment.md): Envoy's configuration as
//! `supportdesk envoy-config` renders it for each shape (`envoy_config`), the Kubernetes
//! manifests rendered,
//! validated and held to the service's own settings (`manifests`), the OCI image built from the
//! debug build and run for real with podman (`image`), migrations that are safe to run twice and
//! at once (`migrations`), and the health name liveness probes ask (`liveness`).

pub(crate) mod envoy_config;
pub(crate) mod image;
pub(crate) mod liveness;
pub(crate) mod manifests;
pub(crate) mod migrations;
