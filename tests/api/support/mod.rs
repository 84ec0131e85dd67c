//! What every test needs: a service running on a free port against its own database (cloned from
//! a migrated template) and its own Redis key prefix, typed clients, and the real external tools
//! (grpcurl, Envoy, buf, diesel) found where `deploy/local/setup` installed them.
//!
//! Components are never optional: a test that cannot reach PostgreSQL, Redis or a tool fails
//! with a message saying how to provide it.

pub(crate) mod api_keys;
pub(crate) mod attachments;
pub(crate) mod billing;
pub(crate) mod binary;
pub(crate) mod browser;
pub(crate) mod email_api;
pub(crate) mod envoy;
pub(crate) mod exports;
pub(crate) mod fleet;
pub(crate) mod load;
pub(crate) mod notifications;
pub(crate) mod otlp;
pub(crate) mod proxy;
pub(crate) mod redis_server;
pub(crate) mod replica;
pub(crate) mod smtp;
pub(crate) mod source;
pub(crate) mod storage;
pub(crate) mod store_proxy;
pub(crate) mod tickets;
pub(crate) mod typescript_client;
pub(crate) mod users;
pub(crate) mod watched;
pub(crate) mod webhook_endpoints;
pub(crate) mod webhook_receiver;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::{ExposeSecret, SecretString};
use supportdesk::app::startup::{Application, ApplicationBuilder};
use supportdesk::app::telemetry::{get_subscriber, init_subscriber};
use supportdesk::configuration::{LogFormat, Settings};
use supportdesk::db::{self, MIGRATIONS_FINGERPRINT};
use supportdesk::domain::{AccountId, UserId};
use supportdesk::errors::{ERROR_DOMAIN, Reason};
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::account_service_client::AccountServiceClient;
use supportdesk::wire::proto::v1::api_key_service_client::ApiKeyServiceClient;
use supportdesk::wire::proto::v1::attachment_service_client::AttachmentServiceClient;
use supportdesk::wire::proto::v1::auth_service_client::AuthServiceClient;
use supportdesk::wire::proto::v1::billing_service_client::BillingServiceClient;
use supportdesk::wire::proto::v1::dashboard_service_client::DashboardServiceClient;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use supportdesk::wire::proto::v1::user_service_client::UserServiceClient;
use supportdesk::wire::proto::v1::webhook_endpoint_service_client::WebhookEndpointServiceClient;
use supportdesk::wire::proto::v1::webhook_service_client::WebhookServiceClient;
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use uuid::Uuid;

/// The key test instances sign access tokens with.
pub(crate) const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// The key test instances make idempotency fingerprints with.
pub(crate) const TEST_FINGERPRINT_KEY: &str = "test-fingerprint-key-test-fingerprint-key";

/// The payment webhook signing secret of test instances (`PAYMENT_WEBHOOK_SECRET`).
pub(crate) const TEST_WEBHOOK_SECRET: &str = "whsec_test_current_0123456789abcdef";
/// The email provider's webhook secret of every test app (`whsec_` and base64 of 24 bytes).
pub(crate) const TEST_EMAIL_WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The password of every user the tests create through the API.
pub(crate) const TEST_PASSWORD: &str = "correct horse battery staple";

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
        "JWT_SECRET" => Some(TEST_JWT_SECRET.to_owned()),
        "IDEMPOTENCY_FINGERPRINT_KEY" => Some(TEST_FINGERPRINT_KEY.to_owned()),
        "PAYMENT_WEBHOOK_SECRET" => Some(TEST_WEBHOOK_SECRET.to_owned()),
        "EMAIL_WEBHOOK_SECRET" => Some(TEST_EMAIL_WEBHOOK_SECRET.to_owned()),
        "GRPC_LISTEN_ADDR" => Some("127.0.0.1:0".to_owned()),
        "HEALTH_PROBE_INTERVAL_MS" => Some("200".to_owned()),
        "SHUTDOWN_DELAY_MS" => Some("0".to_owned()),
        // Tests about other things open many tickets for one requester; the limit's own tests
        // set it back.
        "MAX_OPEN_TICKETS_PER_REQUESTER" => Some("1000".to_owned()),
        // Likewise for quotas: the rate-limit tests set their own.
        "RATE_LIMIT_READ"
        | "RATE_LIMIT_WRITE"
        | "RATE_LIMIT_PUBLIC"
        | "RATE_LIMIT_LOGIN"
        | "RATE_LIMIT_LOGIN_ATTEMPTS"
        | "RATE_LIMIT_LOGIN_NAME_FAILURES"
        | "RATE_LIMIT_AUTH_FAILURES"
        | "RATE_LIMIT_WEBHOOK" => Some("100000/60".to_owned()),
        "SHUTDOWN_DRAIN_TIMEOUT_MS" => Some("5000".to_owned()),
        // No webhook worker unless a test starts some (tests/api/webhooks/processing.rs): events
        // stored by tests about receiving stay as they were stored.
        "WEBHOOK_WORKERS" => Some("0".to_owned()),
        // Likewise for operations (tests/api/operations.rs starts them): imports stay queued, and
        // no worker polls PostgreSQL behind the tests that count round trips.
        "OPERATION_WORKERS" => Some("0".to_owned()),
        // And for outbound webhooks (tests/api/outbound_webhooks/ starts them): deliveries stay
        // queued.
        "OUTBOUND_WEBHOOK_WORKERS" => Some("0".to_owned()),
        // A WatchEvents stream that nobody ends (a contract case, a fuzzer's request, a probe)
        // ends by itself soon; the stream's own tests set it back.
        "WATCH_MAX_DURATION_SECS" => Some("2".to_owned()),
        // Queued imports pile up without workers; the limit's own test sets it back.
        "IMPORT_MAX_CONCURRENT" => Some("1000".to_owned()),
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
    /// Its URL when it lives on a server of the test's own (a replica pair's primary), which
    /// goes away with it; `None`: on the suite's PostgreSQL.
    pub(crate) elsewhere: Option<SecretString>,
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
        Self {
            name,
            elsewhere: None,
        }
    }

    pub(crate) fn url(&self) -> SecretString {
        self.elsewhere
            .clone()
            .unwrap_or_else(|| test_settings(&self.name).database.url)
    }

    pub(crate) async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(self.url().expose_secret())
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.elsewhere.is_some() {
            return;
        }
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

/// The payment provider settings of a test app: the simulator, one attempt of at most 300 ms
/// (tests that want retries or a breaker say so), a breaker that opens only when asked to.
pub(crate) fn test_payment_provider(
    simulator: &payment_simulator::SimulatorHandle,
) -> supportdesk::configuration::PaymentProviderSettings {
    supportdesk::configuration::PaymentProviderSettings {
        url: simulator.base_url().parse().expect("the simulator's URL"),
        secret_key: SecretString::from(simulator.api_key().to_owned()),
        timeout: Duration::from_millis(300),
        max_attempts: 1,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        retry_budget_percent: 100,
        retry_budget_min_per_second: 100,
        breaker_failure_threshold: 100,
        breaker_cool_down: Duration::from_secs(30),
        max_concurrency: 16,
        key_retention: Duration::from_secs(24 * 60 * 60),
        ca_file: None,
    }
}

/// A user the tests created through the API, logged in.
#[derive(Clone, Debug)]
pub(crate) struct TestUser {
    pub(crate) id: UserId,
    pub(crate) account_id: AccountId,
    pub(crate) account_slug: String,
    pub(crate) email: String,
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
}

impl TestUser {
    /// A request made as this user.
    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        with_token(&self.access_token, message)
    }
}

/// A request with `authorization: Bearer <token>`.
pub(crate) fn with_token<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).expect("ascii"),
    );
    request
}

/// A running service with its own database, a signed-up account whose admin is logged in, and
/// typed clients.
pub(crate) struct TestApp {
    pub(crate) address: SocketAddr,
    /// Where `GET /metrics` answers, when the test set `metrics_listen_addr`.
    pub(crate) metrics_address: Option<SocketAddr>,
    pub(crate) account_id: AccountId,
    pub(crate) admin: TestUser,
    pub(crate) tickets: TicketServiceClient<Channel>,
    pub(crate) users: UserServiceClient<Channel>,
    pub(crate) accounts: AccountServiceClient<Channel>,
    pub(crate) auth: AuthServiceClient<Channel>,
    pub(crate) api_keys: ApiKeyServiceClient<Channel>,
    pub(crate) attachments: AttachmentServiceClient<Channel>,
    pub(crate) billing: BillingServiceClient<Channel>,
    pub(crate) webhooks: WebhookServiceClient<Channel>,
    pub(crate) webhook_endpoints: WebhookEndpointServiceClient<Channel>,
    pub(crate) dashboard: DashboardServiceClient<Channel>,
    pub(crate) health: HealthClient<Channel>,
    /// The payment provider every test app charges through: the simulator, in-process.
    pub(crate) simulator: payment_simulator::SimulatorHandle,
    pub(crate) redis_prefix: String,
    pub(crate) settings: Settings,
    /// What wakes the webhook workers (`Application::webhook_wake`).
    pub(crate) webhook_wake: std::sync::Arc<tokio::sync::Notify>,
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
        Self::spawn_with_application(configure, |application| application).await
    }

    /// Spawns with settings adjusted by `configure` and the application, before it is built, by
    /// `adjust` (for example, a background task added with `ApplicationBuilder::with_task`).
    pub(crate) async fn spawn_with_application(
        configure: impl FnOnce(&mut Settings),
        adjust: impl FnOnce(ApplicationBuilder) -> ApplicationBuilder,
    ) -> Self {
        LazyLock::force(&TRACING);
        let database = TestDatabase::create().await;
        let simulator =
            payment_simulator::Simulator::start(payment_simulator::SimulatorConfig::default())
                .await
                .expect("the payment simulator starts");
        let mut settings = test_settings(&database.name);
        settings.payment_provider = Some(test_payment_provider(&simulator));
        storage::SHARED_STORAGE.configure(&mut settings);
        configure(&mut settings);
        let redis_prefix = settings.redis.key_prefix.clone();
        let application = adjust(Application::builder(settings.clone()))
            .build()
            .await
            .expect("the application builds");
        let address = application.local_addr();
        let metrics_address = application.metrics_addr();
        let webhook_wake = application.webhook_wake();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{address}"))
            .expect("a valid uri")
            .connect()
            .await
            .expect("connect to the test server");
        let accounts = AccountServiceClient::new(channel.clone());
        let auth = AuthServiceClient::new(channel.clone());
        let admin = sign_up(&accounts, &auth).await;
        Self {
            address,
            metrics_address,
            account_id: admin.account_id,
            admin,
            tickets: TicketServiceClient::new(channel.clone()),
            users: UserServiceClient::new(channel.clone()),
            accounts,
            auth,
            api_keys: ApiKeyServiceClient::new(channel.clone()),
            attachments: AttachmentServiceClient::new(channel.clone()),
            billing: BillingServiceClient::new(channel.clone()),
            webhooks: WebhookServiceClient::new(channel.clone()),
            webhook_endpoints: WebhookEndpointServiceClient::new(channel.clone()),
            dashboard: DashboardServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
            simulator,
            redis_prefix,
            settings,
            webhook_wake,
            shutdown: Some(shutdown),
            server: Some(server),
            database,
        }
    }

    /// Waits up to `within` for the service to stop by itself (nothing asked it to), and returns
    /// what `run_until_stopped` returned.
    pub(crate) async fn stopped_by_itself(&mut self, within: Duration) -> anyhow::Result<()> {
        let server = self.server.take().expect("the service was running");
        tokio::time::timeout(within, server)
            .await
            .unwrap_or_else(|_| panic!("the service did not stop within {within:?}"))
            .expect("run_until_stopped did not panic")
    }

    /// Stops the service as a SIGTERM would (the shutdown delay, then the drain), and returns
    /// what `run_until_stopped` returned.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        let _ = self
            .shutdown
            .take()
            .expect("the service was running")
            .send(());
        self.server
            .take()
            .expect("the service was running")
            .await
            .expect("run_until_stopped did not panic")
    }

    /// Starts stopping the service as a SIGTERM would, without waiting: what is running meets
    /// the drain while the test goes on; the handle answers what `run_until_stopped` returned.
    pub(crate) fn begin_stopping(&mut self) -> JoinHandle<anyhow::Result<()>> {
        let _ = self
            .shutdown
            .take()
            .expect("the service was running")
            .send(());
        self.server.take().expect("the service was running")
    }

    /// A request made as this app's admin.
    pub(crate) fn as_admin<T>(&self, message: T) -> Request<T> {
        self.admin.request(message)
    }

    /// Another account, signed up through the API, with its admin logged in.
    pub(crate) async fn sign_up_another_account(&self) -> TestUser {
        sign_up(&self.accounts, &self.auth).await
    }

    /// Adds a user with `role` to `admin`'s account and logs them in.
    pub(crate) async fn add_user(&self, admin: &TestUser, role: v1::UserRole) -> TestUser {
        let email = format!(
            "{}-{}@example.com",
            role.as_str_name().to_lowercase(),
            Uuid::now_v7().simple()
        );
        let user = sent_again_while_a_dependency_is_unavailable(|| {
            let mut users = self.users.clone();
            let request = admin.request(v1::CreateUserRequest {
                user: Some(v1::User {
                    email: email.clone(),
                    role: role.into(),
                    ..Default::default()
                }),
                password: TEST_PASSWORD.to_owned(),
            });
            async move { users.create_user(request).await }
        })
        .await
        .expect("the admin adds a user")
        .into_inner();
        let mut logged_in = log_in(&self.auth, &admin.account_slug, &email).await;
        assert_eq!(logged_in.id.to_string(), user.id);
        logged_in.account_slug.clone_from(&admin.account_slug);
        logged_in
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
    pub(crate) async fn wait_for_health(&self, status: &str, within: Duration) {
        let started = tokio::time::Instant::now();
        loop {
            if self.health_of("").await == status {
                return;
            }
            assert!(
                started.elapsed() < within,
                "health did not become {status} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GetTicket as the admin.
    pub(crate) async fn get_ticket(&self, id: &str) -> Result<v1::Ticket, tonic::Status> {
        self.tickets
            .clone()
            .get_ticket(self.as_admin(v1::GetTicketRequest {
                id: id.to_owned(),
                ..Default::default()
            }))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Opens a ticket with valid values as the admin, for tests about something else.
    pub(crate) async fn create_ticket(&self, subject: &str) -> v1::Ticket {
        self.create_as_admin(valid_create_request(subject)).await
    }

    /// CreateTicket as the admin, for a request that must succeed.
    pub(crate) async fn create_as_admin(&self, request: v1::CreateTicketRequest) -> v1::Ticket {
        self.tickets
            .clone()
            .create_ticket(self.as_admin(request))
            .await
            .expect("a valid ticket is created")
            .into_inner()
    }
}

/// Signs a new account up through CreateAccount and logs its admin in.
pub(crate) async fn sign_up(
    accounts: &AccountServiceClient<Channel>,
    auth: &AuthServiceClient<Channel>,
) -> TestUser {
    let slug = format!("test-{}", Uuid::now_v7().simple());
    let email = format!("admin@{slug}.example.com");
    sent_again_while_a_dependency_is_unavailable(|| {
        let mut accounts = accounts.clone();
        let request = v1::CreateAccountRequest {
            name: "Test Account".to_owned(),
            slug: slug.clone(),
            admin_email: email.clone(),
            admin_password: TEST_PASSWORD.to_owned(),
            admin_display_name: "Test Admin".to_owned(),
        };
        async move { accounts.create_account(request).await }
    })
    .await
    .expect("sign up");
    log_in(auth, &slug, &email).await
}

/// Logs `email` of account `slug` in with [`TEST_PASSWORD`].
pub(crate) async fn log_in(auth: &AuthServiceClient<Channel>, slug: &str, email: &str) -> TestUser {
    let response = sent_again_while_a_dependency_is_unavailable(|| {
        let mut auth = auth.clone();
        let request = v1::LoginRequest {
            account: slug.to_owned(),
            email: email.to_owned(),
            password: TEST_PASSWORD.to_owned(),
        };
        async move { auth.login(request).await }
    })
    .await
    .expect("log in")
    .into_inner();
    let user = response.user.expect("the user");
    let tokens = response.tokens.expect("tokens");
    TestUser {
        id: UserId::parse(&user.id).expect("a user id"),
        account_id: AccountId::parse(&user.account_id).expect("an account id"),
        account_slug: slug.to_owned(),
        email: email.to_owned(),
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
    }
}

/// The answer to `call`, sent again while it is answered UNAVAILABLE for a dependency (a loaded
/// machine's Redis slower than the service's timeout, a PostgreSQL connection not made or not
/// free within the pool's: retryable answers, docs/errors.md), as a client does, three more
/// times at most, 200 ms apart. For the set-up steps of tests about something else. Safe without
/// an idempotency key: those answers come from admission, the credentials' lookup or the pool's
/// checkout, before a handler writes anything; the one exception, a connection lost while its
/// commit is under way, would show as the resend's refusal (the account or user exists, the
/// refresh token was used), so a test fails visibly rather than passing on a double.
pub(crate) async fn sent_again_while_a_dependency_is_unavailable<T, Call, Answer>(
    mut call: Call,
) -> Result<T, tonic::Status>
where
    Call: FnMut() -> Answer,
    Answer: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut sent = 0;
    loop {
        sent += 1;
        match call().await {
            Err(status)
                if sent < 4
                    && matches!(
                        error_reason(&status),
                        Some(
                            Reason::RedisUnavailable
                                | Reason::DatabaseUnavailable
                                | Reason::DatabaseBusy
                        )
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            answer => return answer,
        }
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

/// The error details of a failed call.
pub(crate) fn details(status: &tonic::Status) -> tonic_types::ErrorDetails {
    use tonic_types::StatusExt;
    status.get_error_details()
}

/// The ErrorInfo reason of a failed call; `None` when it has no ErrorInfo, or a reason that is
/// not one of [`Reason`]'s.
pub(crate) fn error_reason(status: &tonic::Status) -> Option<Reason> {
    details(status)
        .error_info()
        .and_then(|info| Reason::parse(&info.reason))
}

/// Asserts that `status` carries the ErrorInfo of this service (domain `supportdesk`) with the
/// reason `expected`. Write the reason as `Reason::X` in the call itself:
/// tests/api/cross_cutting/error_reasons.rs counts such calls, and fails for a reason no test asserts.
#[track_caller]
pub(crate) fn assert_reason(status: &tonic::Status, expected: Reason) {
    let details = details(status);
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, ERROR_DOMAIN, "{status:?}");
    assert_eq!(info.reason, expected.as_str(), "{status:?}");
}

/// [`assert_reason`] for an error answered as JSON over REST (or a webhook delivery):
/// `{"code", "message", "details": [ErrorInfo, ...]}`, the ErrorInfo found by its `@type`.
#[track_caller]
pub(crate) fn assert_json_reason(body: &serde_json::Value, expected: Reason) {
    let info = body["details"]
        .as_array()
        .and_then(|details| {
            details
                .iter()
                .find(|detail| detail["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
        })
        .unwrap_or_else(|| panic!("no ErrorInfo in {body}"));
    assert_eq!(info["domain"], ERROR_DOMAIN, "{body}");
    assert_eq!(info["reason"], expected.as_str(), "{body}");
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

/// `proto_text` without the field declaration that starts with `start` (its options included,
/// from that line to the one ending in `;`): a breaking change for the buf tests to catch.
pub(crate) fn without_declaration(proto_text: &str, start: &str) -> String {
    let mut inside = false;
    let kept: Vec<&str> = proto_text
        .lines()
        .filter(|line| {
            inside = inside || line.trim_start().starts_with(start);
            let removed = inside;
            inside = inside && !line.trim_end().ends_with(';');
            !removed
        })
        .collect();
    assert!(
        kept.len() < proto_text.lines().count(),
        "no declaration starts with {start:?}"
    );
    kept.join("\n")
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

/// Prometheus's promtool (`deploy/local/setup test` unpacks Debian's package into .tools/).
pub(crate) fn promtool() -> PathBuf {
    tool("PROMTOOL_BIN")
}

/// How long a poll waits before it gives up. A poll ends as soon as its condition holds, so a
/// generous limit costs nothing on a quiet machine and keeps a loaded one from failing a test
/// on time alone; where a bound is the feature, the test asserts it on its own.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `condition` until it holds; fails the test naming `what` once `within` has passed.
pub(crate) async fn wait_until<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = tokio::time::Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < within,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The one row of a `SELECT count(*) AS count ...`.
#[derive(diesel::QueryableByName)]
pub(crate) struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) count: i64,
}

/// The count a `SELECT count(*) AS count ...` of `database` answers.
pub(crate) async fn count_of(database: &TestDatabase, sql: &str) -> i64 {
    let mut conn = database.connect().await;
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .count
}

/// Holds a row lock on the app's account, so that creating a ticket (whose foreign keys must
/// share-lock that row) blocks inside PostgreSQL until the returned connection rolls back.
pub(crate) async fn lock_account(app: &TestApp) -> AsyncPgConnection {
    let mut conn = app.database.connect().await;
    diesel::sql_query("BEGIN").execute(&mut conn).await.unwrap();
    diesel::sql_query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
        .bind::<diesel::sql_types::Uuid, _>(app.account_id.as_uuid())
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// Rolls `lock`'s transaction back once `waiting` of the service's connections to `database` wait
/// for a lock (the calls a test lined up behind the rows `lock` holds), failing the test naming
/// `what` if they do not.
pub(crate) async fn release_once_waiting(
    database: &TestDatabase,
    lock: AsyncPgConnection,
    waiting: i64,
    what: &str,
) {
    end_once_waiting(database, lock, waiting, what, "ROLLBACK").await;
}

/// The same, committing what `lock`'s transaction wrote.
pub(crate) async fn commit_once_waiting(
    database: &TestDatabase,
    lock: AsyncPgConnection,
    waiting: i64,
    what: &str,
) {
    end_once_waiting(database, lock, waiting, what, "COMMIT").await;
}

async fn end_once_waiting(
    database: &TestDatabase,
    mut lock: AsyncPgConnection,
    waiting: i64,
    what: &str,
    end: &str,
) {
    wait_until(what, PATIENCE, async || {
        backends_waiting_on_locks(database).await == waiting
    })
    .await;
    diesel::sql_query(end)
        .execute(&mut lock)
        .await
        .unwrap_or_else(|error| panic!("{end}: {error}"));
}

/// How many of the service's connections to `database` are waiting for a lock (client backends
/// only: autovacuum's workers are PostgreSQL's own).
pub(crate) async fn backends_waiting_on_locks(database: &TestDatabase) -> i64 {
    backends_where(
        database,
        "wait_event_type = 'Lock' AND backend_type = 'client backend'",
    )
    .await
}

/// How many of the service's connections to `database` are doing anything (not idle; client
/// backends only).
pub(crate) async fn busy_backends(database: &TestDatabase) -> i64 {
    backends_where(
        database,
        "state <> 'idle' AND backend_type = 'client backend'",
    )
    .await
}

async fn backends_where(database: &TestDatabase, condition: &str) -> i64 {
    let mut conn = database.connect().await;
    let rows: Vec<Count> = diesel::sql_query(format!(
        "SELECT count(*) AS count FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid() AND {condition}"
    ))
    .bind::<Text, _>(&database.name)
    .load(&mut conn)
    .await
    .expect("pg_stat_activity");
    rows[0].count
}

/// A loopback port held by a socket that is bound and does not listen, for as long as the value
/// lives: a connection to it is refused at once, and no other test's server can be handed the
/// port meanwhile (a port merely found free could be, and a test that expects nothing there
/// would then reach that server).
pub(crate) struct ClosedPort {
    pub(crate) port: u16,
    holder: socket2::Socket,
}

impl ClosedPort {
    pub(crate) fn new() -> Self {
        let (port, holder) = reserve_handed_off_port();
        Self { port, holder }
    }

    /// Lets the port go, for a server about to bind it.
    pub(crate) fn release(self) -> u16 {
        drop(self.holder);
        self.port
    }
}

/// A free TCP port on the loopback interface, for a server in another process to bind.
pub(crate) fn free_port() -> u16 {
    reserve_handed_off_port().0
}

/// A loopback port no one else in this process has been given, bound (not listening) by the
/// socket returned.
///
/// Ports handed to another process are drawn, in turn, from just below the kernel's ephemeral
/// range (`ip_local_port_range`), never by binding port 0: between the moment a port found that
/// way is let go and the moment the other process binds it, the kernel may hand the same port to
/// any bind of port 0 or outgoing connection of the hundreds of tests running at once, and the
/// server then fails to start (or, worse, the test reaches the other server). The kernel hands
/// out nothing below its range, and the turn taken here hands out each port once.
fn reserve_handed_off_port() -> (u16, socket2::Socket) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    static RANGE: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    let &(low, size) = RANGE.get_or_init(|| {
        let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
            .unwrap_or(32_768);
        let low = ephemeral_low.saturating_sub(12_000).max(1_024);
        assert!(
            ephemeral_low > low + 1_000,
            "the ephemeral port range starts at {ephemeral_low}: too low to leave test ports below it"
        );
        // Another test process on the machine starts elsewhere in the range, and far away:
        // nextest starts processes with consecutive pids, which, one port apart, would draw
        // each other's ports as soon as one let a reserved port go to its server.
        let start = std::process::id().wrapping_mul(997) % (ephemeral_low - low);
        NEXT.store(start, std::sync::atomic::Ordering::Relaxed);
        (low, ephemeral_low - low)
    });
    for _ in 0..size {
        let turn = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = u16::try_from(low + turn % size).expect("a port");
        let holder = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        let address = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
        if holder.bind(&address.into()).is_ok() {
            return (port, holder);
        }
    }
    panic!("no free loopback port from {low} to {}", low + size - 1);
}

/// `request` with a fresh `idempotency-key`.
pub(crate) fn keyed<T>(mut request: Request<T>) -> Request<T> {
    request.metadata_mut().insert(
        "idempotency-key",
        MetadataValue::try_from(Uuid::now_v7().to_string()).expect("ascii"),
    );
    request
}

/// A second instance of the service on `settings`' database and Redis (another port).
pub(crate) async fn second_instance(settings: &Settings) -> (Channel, JoinHandle<()>) {
    let mut settings = settings.clone();
    settings.server.listen_addr = "127.0.0.1:0".parse().expect("an address");
    let application = Application::build(settings).await.expect("builds");
    let address = application.local_addr();
    let server = tokio::spawn(async move {
        let _ = application.run_until_stopped(std::future::pending()).await;
    });
    let channel = Channel::from_shared(format!("http://{address}"))
        .expect("a valid uri")
        .connect()
        .await
        .expect("connect to the second instance");
    (channel, server)
}

/// Every RPC of the API as (service, method), read from the descriptor set the server registers:
/// package supportdesk.v1's services by their short name (`TicketService`), and the vendored
/// services our proto declares (`(supportdesk.v1.foreign_method)`) by their full name
/// (`google.longrunning.Operations`). Tests that must cover the whole API iterate over this.
pub(crate) fn every_rpc() -> Vec<(String, String)> {
    supportdesk::wire::methods::MethodTable::get()
        .expect("the method table loads")
        .api_methods()
        .map(|method| {
            let service = method
                .service
                .strip_prefix("supportdesk.v1.")
                .unwrap_or(&method.service);
            (service.to_owned(), method.name.clone())
        })
        .collect()
}

/// The HTTP/2 path of an RPC named as [`every_rpc`] names it, `Service.Method`.
pub(crate) fn rpc_path(rpc: &str) -> String {
    let (service, method) = rpc.rsplit_once('.').expect("Service.Method");
    if service.contains('.') {
        format!("/{service}/{method}")
    } else {
        format!("/supportdesk.v1.{service}/{method}")
    }
}

/// Turns the instance's metrics endpoint on (a free port).
pub(crate) fn with_metrics(settings: &mut Settings) {
    settings.server.metrics_listen_addr = Some("127.0.0.1:0".parse().expect("an address"));
}

/// Every sample of one scrape of an instance's `GET /metrics`, by series (name and labels).
pub(crate) struct Scrape(pub(crate) std::collections::HashMap<String, f64>);

impl Scrape {
    pub(crate) async fn of(app: &TestApp) -> Self {
        let address = app.metrics_address.expect("metrics are on in this test");
        let response = reqwest::get(format!("http://{address}/metrics"))
            .await
            .expect("the metrics endpoint answers");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        let text = response.text().await.expect("a body");
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
        Self(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .map(|line| {
                    let (series, value) = line.rsplit_once(' ').expect("series value");
                    (series.to_owned(), value.parse().expect("a number"))
                })
                .collect(),
        )
    }

    /// The value of a series that counts (a counter, a gauge of whole numbers, a bucket).
    pub(crate) fn get(&self, series: &str) -> u64 {
        let value = *self
            .0
            .get(series)
            .unwrap_or_else(|| panic!("{series} is not exported"));
        assert!(
            value.fract() == 0.0 && value >= 0.0,
            "{series} is {value}, not a count"
        );
        value as u64
    }

    /// The series of metric `name`, with their values.
    pub(crate) fn family(&self, name: &str) -> std::collections::BTreeMap<&str, u64> {
        self.0
            .iter()
            .filter(|(series, _)| {
                series
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
            })
            .map(|(series, _)| (series.as_str(), self.get(series)))
            .collect()
    }
}

/// `request` carrying the idempotency key `key`.
pub(crate) fn with_key<T>(mut request: Request<T>, key: &str) -> Request<T> {
    request.metadata_mut().insert(
        "idempotency-key",
        MetadataValue::try_from(key).expect("an ASCII key"),
    );
    request
}

/// CreateCharge of `amount_minor` units of `currency_code` from `customer_id`, paid with the
/// test card that always succeeds.
pub(crate) fn charge_request(
    customer_id: &str,
    amount_minor: i64,
    currency_code: &str,
) -> v1::CreateChargeRequest {
    charge_paid_with(customer_id, amount_minor, currency_code, "pm_card_visa")
}

/// CreateCharge paid with `payment_method` (the simulator's test cards: `pm_card_visa`,
/// `pm_card_chargeDeclined`, ...).
pub(crate) fn charge_paid_with(
    customer_id: &str,
    amount_minor: i64,
    currency_code: &str,
    payment_method: &str,
) -> v1::CreateChargeRequest {
    v1::CreateChargeRequest {
        charge: Some(v1::Charge {
            customer_id: customer_id.to_owned(),
            amount: Some(v1::Money {
                amount_minor,
                currency_code: currency_code.to_owned(),
            }),
            payment_method: payment_method.to_owned(),
            ..Default::default()
        }),
    }
}

/// An amount in US cents.
pub(crate) fn usd(cents: i64) -> supportdesk::domain::Money {
    supportdesk::domain::Money::parse(cents, "USD").expect("a valid amount")
}

/// A deadline `seconds` from now.
pub(crate) fn in_seconds(seconds: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(seconds)
}

/// The scope a request of `caller` due by `deadline` hands the services, for tests that call a
/// service directly.
pub(crate) fn scope_of(
    caller: &supportdesk::auth::Caller,
    deadline: tokio::time::Instant,
) -> supportdesk::scope::RequestScope {
    supportdesk::scope::RequestScope::for_caller(
        caller.clone(),
        supportdesk::scope::RequestDeadline::at(deadline),
    )
}

/// A gRPC client of the server at `address`, ready, sending and receiving message bytes as they
/// are ([`RawBytes`]).
pub(crate) async fn raw_client(address: SocketAddr) -> tonic::client::Grpc<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("an endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    grpc
}

/// Sends and receives message bytes as they are, so a test can send what no generated client
/// would.
#[derive(Clone, Copy, Default)]
pub(crate) struct RawBytes;

impl tonic::codec::Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> Self::Encoder {
        RawBytes
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let remaining = bytes::Buf::remaining(buf);
        Ok(Some(bytes::Buf::copy_to_bytes(buf, remaining).to_vec()))
    }
}
