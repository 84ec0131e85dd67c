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
    /// The admin interface: stats, and each instance's health as Envoy sees it.
    pub(crate) admin_port: u16,
    child: Child,
    workdir: tempfile::TempDir,
}

impl Envoy {
    /// Envoy allowing the default browser origins (`http://localhost:3000`, `http://127.0.0.1:3000`).
    pub(crate) async fn start_in_front_of(grpc_port: u16) -> Self {
        Self::start(grpc_port, None, None).await
    }

    /// Envoy balancing over every instance of `grpc_ports` (the setting `UPSTREAM_ADDRESSES`),
    /// its health-check interval derived from `shutdown_delay` (`SHUTDOWN_DELAY_MS`) as a
    /// deployment renders it. Waits until Envoy sees each instance that is up healthy.
    pub(crate) async fn start_in_front_of_all(
        grpc_ports: &[u16],
        shutdown_delay: Duration,
    ) -> Self {
        let upstreams: Vec<String> = grpc_ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let rendered = render_with(&[
            ("UPSTREAM_ADDRESSES", upstreams.join(",")),
            ("SHUTDOWN_DELAY_MS", shutdown_delay.as_millis().to_string()),
        ]);
        Self::launch(rendered, None).await
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

    /// Envoy in front of one instance, rendered with exactly `settings` set (the long streams'
    /// limits, say: `WATCH_MAX_STREAMS_PER_INSTANCE`, `EXPORT_MAX_CONCURRENT_PER_INSTANCE`).
    pub(crate) async fn start_rendered_with(grpc_port: u16, settings: &[(&str, String)]) -> Self {
        Self::launch(render_with(settings), Some(grpc_port)).await
    }

    async fn start(
        grpc_port: u16,
        allowed_origins: Option<String>,
        route_timeout: Option<Duration>,
    ) -> Self {
        Self::launch(
            render(allowed_origins.as_deref(), route_timeout),
            Some(grpc_port),
        )
        .await
    }

    /// Starts Envoy from `rendered`, its ports and paths substituted (the upstream's too when
    /// `grpc_port` is given: the rendering has the template's one instance).
    async fn launch(rendered: String, grpc_port: Option<u16>) -> Self {
        let workdir = tempfile::tempdir().expect("a temporary directory");
        let descriptor = workdir.path().join("supportdesk.pb");
        std::fs::write(&descriptor, supportdesk::wire::proto::FILE_DESCRIPTOR_SET)
            .expect("write the descriptor set");
        let port = free_port();
        let admin_port = free_port();
        let config = configure(&rendered, grpc_port, port, admin_port, &descriptor);
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
        let mut envoy = Self {
            port,
            admin_port,
            child,
            workdir,
        };
        envoy.wait_until_listening().await;
        envoy
    }

    /// A counter or gauge of Envoy's admin `/stats` (`cluster.supportdesk.upstream_rq_retry`);
    /// 0 when Envoy has not made it yet.
    pub(crate) async fn stat(&self, name: &str) -> u64 {
        let text = self.admin("/stats").await;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
            .map_or(0, |value| value.trim().parse().expect("a whole number"))
    }

    /// What Envoy's admin interface answers at `path`.
    pub(crate) async fn admin(&self, path: &str) -> String {
        reqwest::get(format!("http://127.0.0.1:{}{path}", self.admin_port))
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("Envoy's admin interface answers")
            .text()
            .await
            .expect("its text")
    }

    /// Per instance of the supportdesk cluster (by gRPC port): `(healthy, requests sent)` as
    /// Envoy's `/clusters` says: healthy when neither a failed health check nor an ejection
    /// keeps requests away from it.
    pub(crate) async fn instances(&self) -> std::collections::BTreeMap<u16, (bool, u64)> {
        let mut instances = std::collections::BTreeMap::new();
        for line in self.admin("/clusters").await.lines() {
            let Some(rest) = line.strip_prefix("supportdesk::127.0.0.1:") else {
                continue;
            };
            let mut parts = rest.splitn(3, "::");
            let (Some(port), Some(key), Some(value)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let port: u16 = port.parse().expect("a port");
            let entry = instances.entry(port).or_insert((false, 0));
            match key {
                "health_flags" => entry.0 = value == "healthy",
                "rq_total" => entry.1 = value.parse().expect("a count"),
                _ => {}
            }
        }
        instances
    }

    /// Waits until Envoy sees the instance on `grpc_port` healthy (`true`) or not (`false`).
    pub(crate) async fn wait_for_instance(&self, grpc_port: u16, healthy: bool, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let now = self.instances().await;
            if now.get(&grpc_port).map(|(is, _)| *is) == Some(healthy) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Envoy did not see 127.0.0.1:{grpc_port} {} within {within:?}: {now:?}",
                if healthy { "healthy" } else { "unhealthy" }
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A gRPC-Web call of the gRPC `path` as a browser sends it: `message` (the encoded request)
    /// in one uncompressed frame, ready for the caller's headers and `send`.
    pub(crate) fn grpc_web(&self, path: &str, message: &[u8]) -> reqwest::RequestBuilder {
        let mut frame = vec![0_u8];
        frame.extend_from_slice(&u32::try_from(message.len()).expect("a frame").to_be_bytes());
        frame.extend_from_slice(message);
        reqwest::Client::new()
            .post(self.url(path))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .body(frame)
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

    async fn wait_until_listening(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            // Its error, above in the test's output, says why (a port taken, a bad config).
            if let Some(exit) = self.child.try_wait().expect("Envoy's state") {
                panic!("envoy exited ({exit}) before listening on {}", self.port);
            }
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

/// `deploy/envoy/render`'s output with exactly `settings` set (every other setting unset, for
/// its default).
pub(crate) fn render_with(settings: &[(&str, String)]) -> String {
    let mut render = Command::new(repository_root().join("deploy/envoy/render"));
    for name in [
        "CORS_ALLOWED_ORIGINS",
        "ROUTE_TIMEOUT_SECS",
        "UPSTREAM_ADDRESSES",
        "SHUTDOWN_DELAY_MS",
        "WATCH_MAX_STREAMS_PER_INSTANCE",
        "EXPORT_MAX_CONCURRENT_PER_INSTANCE",
        "WATCH_MAX_DURATION_SECS",
        "EXPORT_MAX_DURATION_SECS",
        "WATCH_HEARTBEAT_SECS",
    ] {
        render.env_remove(name);
    }
    render.envs(settings.iter().map(|(name, value)| (name, value)));
    let output = render.output().expect("run deploy/envoy/render");
    assert!(
        output.status.success(),
        "deploy/envoy/render failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("a UTF-8 config")
}

/// `deploy/envoy/render`'s output: the repository's config with `CORS_ALLOWED_ORIGINS` set to
/// `allowed_origins` and `ROUTE_TIMEOUT_SECS` to `route_timeout`, each unset for its default.
fn render(allowed_origins: Option<&str>, route_timeout: Option<Duration>) -> String {
    let mut settings = Vec::new();
    if let Some(origins) = allowed_origins {
        settings.push(("CORS_ALLOWED_ORIGINS", origins.to_owned()));
    }
    if let Some(timeout) = route_timeout {
        assert!(
            timeout.subsec_nanos() == 0 && timeout.as_secs() > 0,
            "ROUTE_TIMEOUT_SECS is whole seconds, not {timeout:?}"
        );
        settings.push(("ROUTE_TIMEOUT_SECS", timeout.as_secs().to_string()));
    }
    render_with(&settings)
}

/// `rendered` with the listener, admin and backend ports, the descriptor path and the OpenAPI
/// document's path replaced; each replacement must hit exactly once, so the config cannot drift
/// from the test.
fn configure(
    rendered: &str,
    grpc_port: Option<u16>,
    listen_port: u16,
    admin_port: u16,
    descriptor: &Path,
) -> String {
    let mut config = rendered.to_owned();
    let upstream = grpc_port.map(|grpc_port| {
        (
            "port_value: 50051".to_owned(),
            format!("port_value: {grpc_port}"),
        )
    });
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
    ]
    .into_iter()
    .chain(upstream)
    {
        assert_eq!(
            config.matches(&from).count(),
            1,
            "deploy/envoy/envoy.yaml should contain `{from}` exactly once"
        );
        config = config.replace(&from, &to);
    }
    config
}
