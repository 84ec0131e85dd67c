//! Several instances of the real binary sharing one database, one Redis prefix and one payment
//! simulator, behind one real Envoy rendered for all of them (`UPSTREAM_ADDRESSES`), as
//! `deploy/local/run --instances N` runs them: what the scale-out tests deploy, restart one at a
//! time, kill and load. Each instance keeps its port across restarts, so Envoy's static list
//! stays right; its output goes to a file of its own (kept for the failure message).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use payment_simulator::{Simulator, SimulatorConfig, SimulatorHandle};
use secrecy::ExposeSecret;
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::user_service_client::UserServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::binary::{BINARY, sign_up_through};
use super::envoy::Envoy;
use super::proxy::{TcpProxy, url_through};
use super::{
    PATIENCE, TEST_FINGERPRINT_KEY, TEST_JWT_SECRET, TestDatabase, TestUser, free_port, redis_url,
};

/// Each instance's `SHUTDOWN_DELAY_MS`, and Envoy's rendering of it (health checks every
/// 500 ms): short, so that a rolling restart of three takes seconds.
pub(crate) const DRAIN_DELAY: Duration = Duration::from_millis(1500);

pub(crate) struct Fleet {
    pub(crate) database: TestDatabase,
    pub(crate) simulator: SimulatorHandle,
    /// Each instance's gRPC port, instance 0 first.
    pub(crate) ports: Vec<u16>,
    processes: Vec<Option<Child>>,
    settings: Vec<(String, String)>,
    /// Settings of one instance each over `settings`: (instance, name, value).
    instance_settings: Vec<(usize, String, String)>,
    /// Each instance's `DATABASE_URL`: straight to PostgreSQL, or through its proxy.
    database_urls: Vec<String>,
    logs: tempfile::TempDir,
    pub(crate) envoy: Envoy,
    /// The admin of the account the load runs as, and a customer of that account to charge
    /// (signed up once the first instance serves).
    account: Option<(TestUser, String)>,
}

impl Fleet {
    /// `size` instances on ports of their own, Envoy in front of all of them, and the first `up`
    /// started and seen healthy by Envoy; they reach PostgreSQL through `database_proxy` when
    /// given (the test keeps its own way in).
    pub(crate) async fn start(size: usize, up: usize, database_proxy: Option<&TcpProxy>) -> Self {
        let proxies = vec![database_proxy; size];
        Self::start_through(up, &proxies).await
    }

    /// As many instances as `database_proxies`, each reaching PostgreSQL through its own proxy
    /// when given: one instance can be partitioned from PostgreSQL while the others keep it.
    pub(crate) async fn start_through(up: usize, database_proxies: &[Option<&TcpProxy>]) -> Self {
        Self::start_through_with(up, database_proxies, &redis_url(), &[]).await
    }

    /// As [`Fleet::start_through`], with every instance on the Redis at `redis` (a test's own,
    /// which it may restart or pause) and `more_settings` besides the fleet's own (an SMTP
    /// server to send through, the reconciler's pace).
    pub(crate) async fn start_through_with(
        up: usize,
        database_proxies: &[Option<&TcpProxy>],
        redis: &str,
        more_settings: &[(&str, String)],
    ) -> Self {
        let database = TestDatabase::create().await;
        Self::start_on(database, up, database_proxies, redis, more_settings, &[]).await
    }

    /// As [`Fleet::start_through_with`], on `database` (one on a server of the test's own, whose
    /// proxies `database_proxies` lead to), and with `instance_settings` (instance index, name,
    /// value) over the fleet's for one instance each: one instance sending mail through another
    /// provider, say.
    pub(crate) async fn start_on(
        database: TestDatabase,
        up: usize,
        database_proxies: &[Option<&TcpProxy>],
        redis: &str,
        more_settings: &[(&str, String)],
        instance_settings: &[(usize, &str, String)],
    ) -> Self {
        let size = database_proxies.len();
        let simulator = Simulator::start(SimulatorConfig::default())
            .await
            .expect("the simulator starts");
        let ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let database_urls = database_proxies
            .iter()
            .map(|proxy| match proxy {
                Some(proxy) => url_through(database.url().expose_secret(), proxy.address),
                None => database.url().expose_secret().to_owned(),
            })
            .collect();
        let settings: Vec<(String, String)> = [
            ("REDIS_URL", redis),
            (
                "REDIS_KEY_PREFIX",
                &format!("supportdesk-test:{}:", uuid::Uuid::now_v7().simple()),
            ),
            ("JWT_SECRET", TEST_JWT_SECRET),
            ("IDEMPOTENCY_FINGERPRINT_KEY", TEST_FINGERPRINT_KEY),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "warn"),
            ("HEALTH_PROBE_INTERVAL_MS", "200"),
            ("SHUTDOWN_DELAY_MS", &DRAIN_DELAY.as_millis().to_string()),
            ("PAYMENT_PROVIDER_URL", &simulator.base_url()),
            ("PAYMENT_PROVIDER_SECRET_KEY", simulator.api_key()),
            // The load's caller is one admin: its quotas must not be what fails a call.
            ("RATE_LIMIT_READ", "1000000/1"),
            ("RATE_LIMIT_WRITE", "1000000/1"),
            // It logs in again and again: the chaos run alone tests this quota (more_settings).
            ("RATE_LIMIT_LOGIN_ATTEMPTS", "1000000/1"),
            ("DATABASE_POOL_SIZE", "8"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .chain(
            more_settings
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone())),
        )
        .collect();
        let envoy = Envoy::start_in_front_of_all(&ports, DRAIN_DELAY).await;
        let mut fleet = Self {
            database,
            simulator,
            processes: (0..size).map(|_| None).collect(),
            ports,
            settings,
            instance_settings: instance_settings
                .iter()
                .map(|(index, name, value)| (*index, (*name).to_owned(), value.clone()))
                .collect(),
            database_urls,
            logs: tempfile::tempdir().expect("a directory for the logs"),
            envoy,
            account: None,
        };
        for index in 0..up {
            fleet.spawn(index);
        }
        for index in 0..up {
            fleet.wait_serving(index).await;
        }
        // Envoy takes a host it has not checked yet for healthy: the ones not started must have
        // failed their checks before any call is sent.
        for port in &fleet.ports[up..] {
            fleet.envoy.wait_for_instance(*port, false, PATIENCE).await;
        }
        let channel = fleet.direct_channel(0).await;
        let admin = sign_up_through(&channel).await;
        let customer_id = UserServiceClient::new(channel)
            .create_user(admin.request(v1::CreateUserRequest {
                user: Some(v1::User {
                    email: format!("customer-{}@example.com", uuid::Uuid::now_v7().simple()),
                    role: v1::UserRole::Customer.into(),
                    ..Default::default()
                }),
                password: String::new(),
            }))
            .await
            .expect("create the customer")
            .into_inner()
            .id;
        fleet.account = Some((admin, customer_id));
        fleet
    }

    /// Whether the instances were given the setting `name`.
    pub(crate) fn has_setting(&self, name: &str) -> bool {
        self.settings.iter().any(|(given, _)| given == name)
    }

    /// The admin of the account the load runs as.
    pub(crate) fn admin(&self) -> &TestUser {
        &self.account.as_ref().expect("signed up").0
    }

    /// A customer of the admin's account, to charge.
    pub(crate) fn customer_id(&self) -> &str {
        &self.account.as_ref().expect("signed up").1
    }

    fn spawn(&mut self, index: usize) {
        assert!(self.processes[index].is_none(), "instance {index} runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(index))
            .expect("the instance's log");
        let child = Command::new(BINARY)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.settings.iter().map(|(name, value)| (name, value)))
            .envs(
                self.instance_settings
                    .iter()
                    .filter(|(instance, _, _)| *instance == index)
                    .map(|(_, name, value)| (name, value)),
            )
            .env("DATABASE_URL", &self.database_urls[index])
            .env(
                "GRPC_LISTEN_ADDR",
                format!("127.0.0.1:{}", self.ports[index]),
            )
            .stdout(Stdio::from(log.try_clone().expect("the log again")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start supportdesk");
        self.processes[index] = Some(child);
    }

    fn log_path(&self, index: usize) -> std::path::PathBuf {
        self.logs.path().join(format!("instance-{index}.log"))
    }

    /// How many instances the fleet has (running or not).
    pub(crate) fn size(&self) -> usize {
        self.ports.len()
    }

    /// What instance `index` has written so far.
    pub(crate) fn log_of(&self, index: usize) -> String {
        std::fs::read_to_string(self.log_path(index)).unwrap_or_default()
    }

    /// Every line of every instance's log (each of its lives) that reports a panic.
    pub(crate) fn panics(&self) -> Vec<String> {
        (0..self.ports.len())
            .flat_map(|index| {
                self.log_of(index)
                    .lines()
                    .filter(|line| line.contains("panicked"))
                    .map(|line| format!("instance {index}: {line}"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A channel straight to instance `index`, once it listens.
    pub(crate) async fn direct_channel(&self, index: usize) -> Channel {
        let started = Instant::now();
        loop {
            if let Ok(channel) =
                Channel::from_shared(format!("http://127.0.0.1:{}", self.ports[index]))
                    .unwrap()
                    .connect()
                    .await
            {
                return channel;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "instance {index} did not listen: {}",
                self.log_of(index)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A channel to Envoy (one HTTP/2 connection, every call balanced by Envoy).
    pub(crate) fn envoy_channel(&self) -> Channel {
        Channel::from_shared(self.envoy.url(""))
            .unwrap()
            .connect_lazy()
    }

    /// What instance `index` answers for the health name `service` (`None`: it does not answer).
    pub(crate) async fn health_of(&self, index: usize, service: &str) -> Option<String> {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{}", self.ports[index]))
            .unwrap()
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .ok()?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .ok()?;
        Some(format!("{:?}", answer.into_inner().status()))
    }

    /// Waits until instance `index` reports SERVING and Envoy sees it healthy.
    pub(crate) async fn wait_serving(&self, index: usize) {
        let started = Instant::now();
        while self.health_of(index, "").await.as_deref() != Some("Serving") {
            assert!(
                started.elapsed() < PATIENCE,
                "instance {index} never reported SERVING: {}",
                self.log_of(index)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.envoy
            .wait_for_instance(self.ports[index], true, PATIENCE)
            .await;
    }

    /// Instance `index`'s process id.
    pub(crate) fn pid(&self, index: usize) -> u32 {
        self.processes[index]
            .as_ref()
            .expect("the instance runs")
            .id()
    }

    /// SIGTERM to instance `index`; waits for it to drain and exit 0.
    pub(crate) async fn stop(&mut self, index: usize) {
        let pid = self.pid(index).to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success());
        self.wait_for_exit(index).await;
    }

    /// Waits for instance `index` (sent SIGTERM) to exit, and asserts it exited 0.
    pub(crate) async fn wait_for_exit(&mut self, index: usize) {
        let mut child = self.processes[index].take().expect("the instance runs");
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("joined")
            .expect("wait for the instance");
        assert_eq!(
            status.code(),
            Some(0),
            "instance {index} drained and exited 0: {}",
            self.log_of(index)
        );
    }

    /// Starts instance `index` (again) and waits until it serves through Envoy.
    pub(crate) async fn start_instance(&mut self, index: usize) {
        self.spawn(index);
        self.wait_serving(index).await;
    }

    /// Stops instance `index` with SIGTERM and starts its replacement: one step of a rolling
    /// restart.
    pub(crate) async fn restart(&mut self, index: usize) {
        self.stop(index).await;
        self.start_instance(index).await;
    }

    /// Whether instance `index`'s process (the same one: nothing restarts it) still runs.
    pub(crate) fn is_running(&mut self, index: usize) -> bool {
        self.processes[index]
            .as_mut()
            .is_some_and(|child| child.try_wait().expect("the instance's state").is_none())
    }

    /// SIGKILL to instance `index`: nothing of it runs after.
    pub(crate) fn kill(&mut self, index: usize) {
        let mut child = self.processes[index].take().expect("the instance runs");
        child.kill().expect("SIGKILL the instance");
        child.wait().expect("reap the instance");
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in self.processes.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // `bench/chaos` keeps every instance's log (each of its lives) beside the run's history,
        // passed or failed, for an investigation; a failed test keeps them in the temporary
        // directory, and says where.
        let keep = std::env::var_os("SUPPORTDESK_FLEET_LOGS")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::thread::panicking().then(|| {
                    std::env::temp_dir().join(format!(
                        "supportdesk-fleet-logs-{}-{}",
                        std::process::id(),
                        self.ports.first().copied().unwrap_or_default()
                    ))
                })
            });
        if let Some(dir) = keep
            && std::fs::create_dir_all(&dir).is_ok()
        {
            if std::thread::panicking() {
                eprintln!("the fleet's instance logs are kept in {}", dir.display());
            }
            for index in 0..self.ports.len() {
                let _ = std::fs::copy(
                    self.log_path(index),
                    dir.join(format!("instance-{index}.log")),
                );
            }
        }
    }
}
