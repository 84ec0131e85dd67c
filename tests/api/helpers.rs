//! What every test needs: a service running on a free port against its own database (cloned from
//! a migrated template) and its own Redis key prefix, typed clients, and the real external tools
//! (grpcurl, Envoy, buf, diesel) found where `deploy/local/setup` installed them.
//!
//! Components are never optional: a test that cannot reach PostgreSQL, Redis or a tool fails
//! with a message saying how to provide it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::{ExposeSecret, SecretString};
use supportdesk::configuration::{LogFormat, Settings};
use supportdesk::db::models::{NewAccount, NewUser};
use supportdesk::db::{self, MIGRATIONS_FINGERPRINT};
use supportdesk::domain::{AccountId, UserId};
use supportdesk::proto::v1;
use supportdesk::proto::v1::ticket_service_client::TicketServiceClient;
use supportdesk::startup::Application;
use supportdesk::telemetry::{get_subscriber, init_subscriber};
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use uuid::Uuid;

/// Logs are silent unless `TEST_LOG` is set.
static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        init_subscriber(get_subscriber("info", LogFormat::Pretty, std::io::stdout));
    }
});

/// An admin URL of the PostgreSQL server tests may create databases on.
pub(crate) fn admin_database_url() -> String {
    std::env::var("SUPPORTDESK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub(crate) fn redis_url() -> String {
    std::env::var("SUPPORTDESK_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Settings for a test instance: its own database and Redis prefix, a free port, short probes.
pub(crate) fn test_settings(database_name: &str) -> Settings {
    let admin_url = admin_database_url();
    let redis_prefix = format!("supportdesk-test:{}:", Uuid::now_v7().simple());
    let settings = Settings::from_lookup(|key| match key {
        "DATABASE_URL" => Some(admin_url.clone()),
        "REDIS_URL" => Some(redis_url()),
        "REDIS_KEY_PREFIX" => Some(redis_prefix.clone()),
        "GRPC_LISTEN_ADDR" => Some("127.0.0.1:0".to_owned()),
        "HEALTH_PROBE_INTERVAL_MS" => Some("200".to_owned()),
        "SHUTDOWN_DELAY_MS" => Some("0".to_owned()),
        "SHUTDOWN_DRAIN_TIMEOUT_MS" => Some("5000".to_owned()),
        _ => None,
    })
    .expect("test settings are valid");
    let mut settings = settings;
    settings.database.url = settings.database.with_database_name(database_name);
    settings
}

async fn admin_connection() -> AsyncPgConnection {
    let url = admin_database_url();
    AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "cannot reach PostgreSQL at {url} ({error}). Run the suite with deploy/local/test, \
             or set SUPPORTDESK_TEST_DATABASE_URL to a server where tests may create databases."
            )
        })
}

#[derive(diesel::QueryableByName)]
struct DatabaseComment {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    comment: Option<String>,
}

/// The migrated template every test database is cloned from: built once per migration set, by
/// whichever test process gets the advisory lock first.
async fn template_database() -> String {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("supportdesk_template_{MIGRATIONS_FINGERPRINT}");
            let mut admin = admin_connection().await;
            diesel::sql_query("SELECT pg_advisory_lock(74290001)")
                .execute(&mut admin)
                .await
                .expect("advisory lock");
            let comment: Vec<DatabaseComment> = diesel::sql_query(
                "SELECT shobj_description(oid, 'pg_database') AS comment \
                 FROM pg_database WHERE datname = $1",
            )
            .bind::<Text, _>(&name)
            .load(&mut admin)
            .await
            .expect("read the template's state");
            let ready = comment
                .as_slice()
                .first()
                .is_some_and(|row| row.comment.as_deref() == Some("ready"));
            if !ready {
                for statement in [
                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    format!("CREATE DATABASE {name}"),
                ] {
                    diesel::sql_query(statement)
                        .execute(&mut admin)
                        .await
                        .expect("create the template");
                }
                let url = test_settings(&name).database.url;
                db::run_migrations(url).await.expect("migrate the template");
                diesel::sql_query(format!("COMMENT ON DATABASE {name} IS 'ready'"))
                    .execute(&mut admin)
                    .await
                    .expect("mark the template ready");
            }
            diesel::sql_query("SELECT pg_advisory_unlock(74290001)")
                .execute(&mut admin)
                .await
                .expect("advisory unlock");
            name
        })
        .await
        .clone()
}

/// A database of one test, dropped when the test ends (pass or fail).
pub(crate) struct TestDatabase {
    pub(crate) name: String,
}

impl TestDatabase {
    pub(crate) async fn create() -> Self {
        let template = template_database().await;
        let name = format!("supportdesk_test_{}", Uuid::now_v7().simple());
        let mut admin = admin_connection().await;
        diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut admin)
            .await
            .expect("clone the template");
        Self { name }
    }

    pub(crate) fn url(&self) -> SecretString {
        test_settings(&self.name).database.url
    }

    pub(crate) async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(self.url().expose_secret())
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            runtime.block_on(async {
                let mut admin = admin_connection().await;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(_))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// A running service with its own database, an account to act as, and typed clients.
pub(crate) struct TestApp {
    pub(crate) address: SocketAddr,
    pub(crate) account_id: AccountId,
    pub(crate) tickets: TicketServiceClient<Channel>,
    pub(crate) health: HealthClient<Channel>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    // Last: dropped after the server has been told to stop.
    pub(crate) database: TestDatabase,
}

impl TestApp {
    pub(crate) async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with settings adjusted by `configure` (for example, pointing at a proxy).
    pub(crate) async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        LazyLock::force(&TRACING);
        let database = TestDatabase::create().await;
        let mut settings = test_settings(&database.name);
        configure(&mut settings);
        let application = Application::build(settings)
            .await
            .expect("the application builds");
        let address = application.local_addr();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{address}"))
            .expect("a valid uri")
            .connect()
            .await
            .expect("connect to the test server");
        let account_id = create_account(&database).await;
        Self {
            address,
            account_id,
            tickets: TicketServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
            shutdown: Some(shutdown),
            server: Some(server),
            database,
        }
    }

    /// A request acting as this app's account.
    pub(crate) fn as_account<T>(&self, message: T) -> Request<T> {
        as_account(self.account_id, message)
    }

    /// The health status of `service` ("" for the whole server), as a name.
    pub(crate) async fn health_of(&self, service: &str) -> String {
        let response = self
            .health
            .clone()
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .expect("health check answers");
        format!("{:?}", response.into_inner().status())
    }

    /// Waits up to `within` for the overall health to become `status` ("Serving", "NotServing").
    pub(crate) async fn wait_for_health(&self, status: &str, within: Duration) -> Duration {
        let started = tokio::time::Instant::now();
        loop {
            if self.health_of("").await == status {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "health did not become {status} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens a ticket with valid values, for tests about something else.
    pub(crate) async fn create_ticket(&self, subject: &str) -> v1::Ticket {
        self.tickets
            .clone()
            .create_ticket(self.as_account(valid_create_request(subject)))
            .await
            .expect("a valid ticket is created")
            .into_inner()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

pub(crate) fn as_account<T>(account_id: AccountId, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "x-account-id",
        MetadataValue::try_from(account_id.to_string()).expect("ascii"),
    );
    request
}

pub(crate) fn valid_create_request(subject: &str) -> v1::CreateTicketRequest {
    v1::CreateTicketRequest {
        ticket: Some(v1::Ticket {
            subject: subject.to_owned(),
            description: "It was working yesterday.".to_owned(),
            requester_email: "jane@example.com".to_owned(),
            ..Default::default()
        }),
    }
}

/// A fresh account (with an agent) in `database`.
pub(crate) async fn create_account(database: &TestDatabase) -> AccountId {
    let mut conn = database.connect().await;
    let id = AccountId::generate();
    NewAccount {
        id: id.as_uuid(),
        name: "Test Account",
        slug: &format!("test-{}", id.as_uuid().simple()),
    }
    .insert(&mut conn)
    .await
    .expect("insert an account");
    id
}

/// An agent of `account_id`, for assignment.
pub(crate) async fn create_agent(
    database: &TestDatabase,
    account_id: AccountId,
    email: &str,
) -> UserId {
    let mut conn = database.connect().await;
    let user = NewUser {
        id: UserId::generate().as_uuid(),
        account_id: account_id.as_uuid(),
        email,
        display_name: "Agent",
        role: "agent",
    }
    .insert(&mut conn)
    .await
    .expect("insert an agent");
    UserId::from_uuid(user.id)
}

/// The error details of a failed call.
pub(crate) fn details(status: &tonic::Status) -> tonic_types::ErrorDetails {
    use tonic_types::StatusExt;
    status.get_error_details()
}

pub(crate) fn error_reason(status: &tonic::Status) -> String {
    details(status)
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

pub(crate) fn violated_fields(status: &tonic::Status) -> Vec<String> {
    details(status)
        .bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .iter()
                .map(|violation| violation.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The repository root: tools and configuration are found relative to it.
pub(crate) fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool installed by `deploy/local/setup`: from its environment variable, or from the
/// `.tools/env` file setup writes (so a plain `cargo test` after setup finds it too).
pub(crate) fn tool(variable: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    let written = std::fs::read_to_string(repository_root().join(".tools/env")).unwrap_or_default();
    written
        .lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|line| line.split_once('='))
        .find(|(name, _)| *name == variable)
        .map(|(_, value)| PathBuf::from(value.trim_matches(['"', '\''])))
        .unwrap_or_else(|| {
            panic!("{variable} is not set and .tools/env does not name it: run deploy/local/setup")
        })
}

pub(crate) fn grpcurl() -> PathBuf {
    tool("GRPCURL_BIN")
}

pub(crate) fn envoy() -> PathBuf {
    tool("ENVOY_BIN")
}

pub(crate) fn buf() -> PathBuf {
    tool("BUF_BIN")
}

pub(crate) fn diesel_cli() -> PathBuf {
    tool("DIESEL_BIN")
}

/// A free TCP port on the loopback interface.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local address")
        .port()
}
