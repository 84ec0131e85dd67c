//! Real Envoy, started from the repository's own `deploy/envoy/envoy.yaml`, rendered by
//! `deploy/envoy/render` (the browser origins of `CORS_ALLOWED_ORIGINS`, the route deadline of
//! `ROUTE_TIMEOUT_SECS`) as a deployment renders it, with only its ports and descriptor path
//! substituted (and the OpenAPI document's path made absolute), in front of a test server.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{envoy, free_port, repository_root};

pub(crate) struct Envoy {
    pub(crate) port: u16,
    child: Child,
    workdir: tempfile::TempDir,
}

impl Envoy {
    /// Envoy allowing the default browser origins (`http://localhost:3000`, `http://127.0.0.1:3000`).
    pub(crate) async fn start_in_front_of(grpc_port: u16) -> Self {
        Self::start(grpc_port, None, None).await
    }

    /// Envoy allowing exactly `origins` (the setting `CORS_ALLOWED_ORIGINS`).
    pub(crate) async fn start_allowing_origins(grpc_port: u16, origins: &[&str]) -> Self {
        Self::start(grpc_port, Some(origins.join(",")), None).await
    }

    /// Envoy whose routes give a request `route_timeout` instead of 15 s (the setting
    /// `ROUTE_TIMEOUT_SECS`, whole seconds): what outlasts the deadline, without waiting 15 s.
    pub(crate) async fn start_with_route_timeout(grpc_port: u16, route_timeout: Duration) -> Self {
        Self::start(grpc_port, None, Some(route_timeout)).await
    }

    async fn start(
        grpc_port: u16,
        allowed_origins: Option<String>,
        route_timeout: Option<Duration>,
    ) -> Self {
        let workdir = tempfile::tempdir().expect("a temporary directory");
        let descriptor = workdir.path().join("supportdesk.pb");
        std::fs::write(&descriptor, supportdesk::wire::proto::FILE_DESCRIPTOR_SET)
            .expect("write the descriptor set");
        let port = free_port();
        let config = configure(
            &render(allowed_origins.as_deref(), route_timeout),
            grpc_port,
            port,
            free_port(),
            &descriptor,
        );
        let config_path = workdir.path().join("envoy.yaml");
        std::fs::write(&config_path, config).expect("write the Envoy config");
        // stdout is the access log; flushed every 100 ms so tests can read it.
        let access_log =
            std::fs::File::create(workdir.path().join(ACCESS_LOG)).expect("the access log file");
        let child = Command::new(envoy())
            .arg("-c")
            .arg(&config_path)
            .args(["--disable-hot-restart", "--log-level", "error"])
            .args(["--file-flush-interval-msec", "100"])
            .stdout(Stdio::from(access_log))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start envoy");
        let envoy = Self {
            port,
            child,
            workdir,
        };
        envoy.wait_until_listening().await;
        envoy
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every access log entry Envoy has written so far (it flushes every 100 ms).
    pub(crate) fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.workdir.path().join(ACCESS_LOG))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The access log entry of the request with `request_id`, once Envoy has written it.
    pub(crate) async fn access_log_entry(&self, request_id: &str) -> serde_json::Value {
        let path = self.workdir.path().join(ACCESS_LOG);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(entry) = text
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|entry| entry["request_id"] == request_id)
            {
                return entry;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no access log entry for {request_id} within 10 s:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_until_listening(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "envoy did not listen on {} within 20 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The file in the work directory Envoy's stdout (the access log) goes to.
const ACCESS_LOG: &str = "access.log";

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `deploy/envoy/render`'s output: the repository's config with `CORS_ALLOWED_ORIGINS` set to
/// `allowed_origins` and `ROUTE_TIMEOUT_SECS` to `route_timeout`, each unset for its default.
fn render(allowed_origins: Option<&str>, route_timeout: Option<Duration>) -> String {
    let mut render = Command::new(repository_root().join("deploy/envoy/render"));
    match allowed_origins {
        Some(origins) => render.env("CORS_ALLOWED_ORIGINS", origins),
        None => render.env_remove("CORS_ALLOWED_ORIGINS"),
    };
    match route_timeout {
        Some(timeout) => {
            assert!(
                timeout.subsec_nanos() == 0 && timeout.as_secs() > 0,
                "ROUTE_TIMEOUT_SECS is whole seconds, not {timeout:?}"
            );
            render.env("ROUTE_TIMEOUT_SECS", timeout.as_secs().to_string())
        }
        None => render.env_remove("ROUTE_TIMEOUT_SECS"),
    };
    let output = render.output().expect("run deploy/envoy/render");
    assert!(
        output.status.success(),
        "deploy/envoy/render failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("a UTF-8 config")
}

/// `rendered` with the listener, admin and backend ports, the descriptor path and the OpenAPI
/// document's path replaced; each replacement must hit exactly once, so the config cannot drift
/// from the test.
fn configure(
    rendered: &str,
    grpc_port: u16,
    listen_port: u16,
    admin_port: u16,
    descriptor: &Path,
) -> String {
    let mut config = rendered.to_owned();
    for (from, to) in [
        (
            "port_value: 8080".to_owned(),
            format!("port_value: {listen_port}"),
        ),
        (
            "port_value: 9901".to_owned(),
            format!("port_value: {admin_port}"),
        ),
        (
            "port_value: 50051".to_owned(),
            format!("port_value: {grpc_port}"),
        ),
        (
            "proto_descriptor: deploy/envoy/supportdesk.pb".to_owned(),
            format!("proto_descriptor: {}", descriptor.display()),
        ),
        (
            "filename: docs/openapi.json".to_owned(),
            format!(
                "filename: {}",
                repository_root().join("docs/openapi.json").display()
            ),
        ),
    ] {
        assert_eq!(
            config.matches(&from).count(),
            1,
            "deploy/envoy/envoy.yaml should contain `{from}` exactly once"
        );
        config = config.replace(&from, &to);
    }
    config
}
