//! Real Envoy, started from the configuration `supportdesk envoy-config` renders from the
//! repository's own `deploy/envoy/envoy.yaml` (the browser origins of `CORS_ALLOWED_ORIGINS`, the
//! route deadline of `ROUTE_TIMEOUT_SECS`, ...) as a deployment renders it, with only its ports,
//! its upstream and its descriptor path set by the command's own flags (and the OpenAPI
//! document's path made absolute), in front of a test server.

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
        Self::launch(
            vec![
                ("UPSTREAM_ADDRESSES", upstreams.join(",")),
                ("SHUTDOWN_DELAY_MS", shutdown_delay.as_millis().to_string()),
            ],
            None,
        )
        .await
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
        Self::launch(settings.to_vec(), Some(grpc_port)).await
    }

    async fn start(
        grpc_port: u16,
        allowed_origins: Option<String>,
        route_timeout: Option<Duration>,
    ) -> Self {
        let mut settings = Vec::new();
        if let Some(origins) = allowed_origins {
            settings.push(("CORS_ALLOWED_ORIGINS", origins));
        }
        if let Some(timeout) = route_timeout {
            assert!(
                timeout.subsec_nanos() == 0 && timeout.as_secs() > 0,
                "ROUTE_TIMEOUT_SECS is whole seconds, not {timeout:?}"
            );
            settings.push(("ROUTE_TIMEOUT_SECS", timeout.as_secs().to_string()));
        }
        Self::launch(settings, Some(grpc_port)).await
    }

    /// Starts Envoy rendered with `settings` on free ports, the descriptor set written for it
    /// (and `UPSTREAM_ADDRESSES` the instance on `grpc_port` when it is given).
    async fn launch(mut settings: Vec<(&str, String)>, grpc_port: Option<u16>) -> Self {
        let workdir = tempfile::tempdir().expect("a temporary directory");
        let descriptor = workdir.path().join("supportdesk.pb");
        std::fs::write(&descriptor, supportdesk::wire::proto::FILE_DESCRIPTOR_SET)
            .expect("write the descriptor set");
        let port = free_port();
        let admin_port = free_port();
        if let Some(grpc_port) = grpc_port {
            settings.push(("UPSTREAM_ADDRESSES", format!("127.0.0.1:{grpc_port}")));
        }
        let config = render_with_flags(
            &settings,
            &[
                "--listen-port".to_owned(),
                port.to_string(),
                "--admin-port".to_owned(),
                admin_port.to_string(),
                "--descriptor".to_owned(),
                descriptor.display().to_string(),
                "--openapi-document".to_owned(),
                repository_root()
                    .join("docs/openapi.json")
                    .display()
                    .to_string(),
            ],
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

/// The settings `supportdesk envoy-config` reads: each is removed from its environment unless
/// a test gives it, so a developer's exported value never leaks into a test.
pub(crate) const ENVOY_SETTINGS: [&str; 10] = [
    "CORS_ALLOWED_ORIGINS",
    "ROUTE_TIMEOUT_SECS",
    "UPSTREAM_ADDRESSES",
    "SHUTDOWN_DELAY_MS",
    "STREAM_INSTANCES",
    "WATCH_MAX_STREAMS_PER_INSTANCE",
    "EXPORT_MAX_CONCURRENT_PER_INSTANCE",
    "WATCH_MAX_DURATION_SECS",
    "EXPORT_MAX_DURATION_SECS",
    "WATCH_HEARTBEAT_SECS",
];

/// `supportdesk envoy-config` with exactly `settings` set (every other setting unset, for its
/// default) and `arguments`: the command, before it has run.
pub(crate) fn envoy_config(settings: &[(&str, String)], arguments: &[String]) -> Command {
    let mut command = Command::new(super::binary::BINARY);
    command.arg("envoy-config").args(arguments);
    for name in ENVOY_SETTINGS {
        command.env_remove(name);
    }
    command.envs(settings.iter().map(|(name, value)| (name, value)));
    command
}

/// `supportdesk envoy-config`'s output (the local shape) with exactly `settings` set.
pub(crate) fn render_with(settings: &[(&str, String)]) -> String {
    render_with_flags(settings, &[])
}

fn render_with_flags(settings: &[(&str, String)], arguments: &[String]) -> String {
    let output = envoy_config(settings, arguments)
        .output()
        .expect("run supportdesk envoy-config");
    assert!(
        output.status.success(),
        "supportdesk envoy-config failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("a UTF-8 config")
}

/// `rendered` read as YAML.
pub(crate) fn parsed(rendered: &str) -> serde_norway::Value {
    serde_norway::from_str(rendered).expect("the rendered configuration is YAML")
}

/// The REST listener's routes of the configuration `config`, in Envoy's order.
pub(crate) fn rest_routes(config: &serde_norway::Value) -> Vec<serde_norway::Value> {
    config["static_resources"]["listeners"]
        .as_sequence()
        .expect("listeners")
        .iter()
        .find(|listener| listener["name"].as_str() == Some("rest"))
        .expect("the rest listener")["filter_chains"][0]["filters"][0]["typed_config"]
        ["route_config"]["virtual_hosts"][0]["routes"]
        .as_sequence()
        .expect("routes")
        .clone()
}
