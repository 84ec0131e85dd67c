//! The real `supportdesk` binary as an operator runs it: JSON logs with request ids, no secrets
//! in them, a graceful SIGTERM, and start-up errors that name the setting.

use std::process::{Command, Stdio};

use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::RunQueryDsl;
use secrecy::ExposeSecret;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1::auth_service_client::AuthServiceClient;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use tonic::transport::Channel;

use crate::support::binary::{BINARY, Running, sign_up_through};
use crate::support::{
    PATIENCE, TEST_FINGERPRINT_KEY, TEST_JWT_SECRET, TEST_PASSWORD, TestDatabase,
    backends_waiting_on_locks, free_port, redis_url, valid_create_request, wait_until,
};

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_request_id_and_no_secret() {
    let database = TestDatabase::create().await;
    let running = Running::start(&database, &[("SHUTDOWN_DELAY_MS", "0")]);
    let channel = running.channel().await;
    running.wait_for_health("Serving").await;
    // Signing up and logging in handle a password and mint tokens: none may reach the logs.
    let admin = sign_up_through(&channel).await;
    let refreshed = AuthServiceClient::new(channel.clone())
        .refresh_token(supportdesk::wire::proto::v1::RefreshTokenRequest {
            refresh_token: admin.refresh_token.clone(),
        })
        .await
        .expect("refreshed")
        .into_inner()
        .tokens
        .expect("tokens");

    let mut request = admin.request(valid_create_request("logged"));
    request
        .metadata_mut()
        .insert("x-request-id", "log-me-42".parse().unwrap());
    TicketServiceClient::new(channel.clone())
        .create_ticket(request)
        .await
        .expect("created");

    // Bytes that are no LoginRequest: refused, and logged at INFO with the request's id.
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let mut malformed = tonic::Request::new(vec![0x0a_u8, 0x0a, b'x']);
    malformed
        .metadata_mut()
        .insert("x-request-id", "malformed-7".parse().unwrap());
    let status = grpc
        .unary(
            malformed,
            http::uri::PathAndQuery::from_static("/supportdesk.v1.AuthService/Login"),
            crate::support::RawBytes,
        )
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    // An open connection would hold the drain until its timeout.
    drop(grpc);

    running.terminate();
    let (code, stdout, stderr) = running.wait();
    assert_eq!(code, Some(0), "clean exit; stderr: {stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let of_request: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| line["span"]["method"] == "/supportdesk.v1.TicketService/CreateTicket")
        .collect();
    assert!(!of_request.is_empty(), "the request was logged");
    for line in &of_request {
        assert_eq!(line["span"]["request_id"], "log-me-42", "{line}");
    }
    let refusal = lines
        .iter()
        .find(|line| line["reason"] == Reason::MalformedMessage.as_str())
        .expect("the malformed message was logged");
    assert_eq!(refusal["level"], "INFO", "{refusal}");
    assert_eq!(refusal["field"], "account", "{refusal}");
    assert_eq!(refusal["span"]["request_id"], "malformed-7", "{refusal}");
    let everything = format!("{}{stderr}", stdout.join("\n"));
    for secret in [
        "hunter2-secret",
        TEST_PASSWORD,
        TEST_JWT_SECRET,
        TEST_FINGERPRINT_KEY,
        &admin.access_token,
        &admin.refresh_token,
        &refreshed.access_token,
        &refreshed.refresh_token,
    ] {
        assert!(
            !everything.contains(secret),
            "a secret leaked into the logs"
        );
    }
    assert!(
        everything.contains("logged in"),
        "the login itself was logged (without its secrets)"
    );
}

#[tokio::test]
async fn the_runtime_has_as_many_workers_as_worker_threads_says() {
    let database = TestDatabase::create().await;
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    // Three: neither the cores of a CI machine (two) nor one, so a default cannot pass for it.
    let running = Running::start(
        &database,
        &[
            ("WORKER_THREADS", "3"),
            ("METRICS_LISTEN_ADDR", &metrics_addr),
        ],
    );
    running.channel().await;
    running.wait_for_health("Serving").await;
    let scrape = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .expect("the metrics endpoint answers")
        .text()
        .await
        .expect("a body");
    assert!(
        scrape
            .lines()
            .any(|line| line == "supportdesk_runtime_workers 3"),
        "{scrape}"
    );
}

/// mimalloc's arenas would otherwise be backed by 2 MiB huge pages whenever the kernel finds
/// them, and resident memory at 1,000 streams would swing between 57 and 100 MiB from one run
/// to the next (docs/performance.md, "Memory").
#[tokio::test]
async fn the_service_runs_with_transparent_huge_pages_turned_off() {
    let database = TestDatabase::create().await;
    let running = Running::start(&database, &[]);
    running.wait_for_health("Serving").await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", running.pid()))
        .expect("the process's status is readable");
    let thp = status
        .lines()
        .find_map(|line| line.strip_prefix("THP_enabled:"))
        .expect("the kernel reports THP_enabled (Linux 5.0 and later)");
    assert_eq!(thp.trim(), "0", "{status}");
}

#[tokio::test]
async fn sigterm_reports_not_serving_finishes_in_flight_rpcs_and_exits_zero() {
    let database = TestDatabase::create().await;
    let running = Running::start(&database, &[("SHUTDOWN_DELAY_MS", "1000")]);
    let channel = running.channel().await;
    running.wait_for_health("Serving").await;
    let admin = sign_up_through(&channel).await;

    // A row lock keeps the create inside PostgreSQL while the signal arrives.
    let mut lock = database.connect().await;
    diesel::sql_query("BEGIN").execute(&mut lock).await.unwrap();
    diesel::sql_query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
        .bind::<SqlUuid, _>(admin.account_id.as_uuid())
        .execute(&mut lock)
        .await
        .unwrap();
    let in_flight = tokio::spawn({
        let channel = channel.clone();
        let admin = admin.clone();
        async move {
            TicketServiceClient::new(channel)
                .create_ticket(admin.request(valid_create_request("in flight")))
                .await
        }
    });
    wait_until("the create waiting for the lock", PATIENCE, || async {
        backends_waiting_on_locks(&database).await == 1
    })
    .await;

    running.terminate();
    running.wait_for_health("NotServing").await;
    // After SHUTDOWN_DELAY_MS the listener closes and draining starts, the create still waiting.
    let address = format!("127.0.0.1:{}", running.port);
    wait_until("the listener closing", PATIENCE, || async {
        tokio::net::TcpStream::connect(&address).await.is_err()
    })
    .await;
    assert!(!in_flight.is_finished(), "the RPC is still in flight");
    diesel::sql_query("ROLLBACK")
        .execute(&mut lock)
        .await
        .unwrap();

    let created = in_flight
        .await
        .expect("joined")
        .expect("the in-flight RPC completes while the server drains")
        .into_inner();
    assert_eq!(created.subject, "in flight");
    let (code, _, stderr) = tokio::task::spawn_blocking(move || running.wait())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "stderr: {stderr}");
}

#[test]
fn a_missing_setting_stops_the_process_naming_it() {
    let output = Command::new(BINARY)
        .arg("serve")
        .env_clear()
        .env("LOG_FORMAT", "yaml")
        .output()
        .expect("run supportdesk");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in [
        "DATABASE_URL",
        "REDIS_URL",
        "JWT_SECRET",
        "IDEMPOTENCY_FINGERPRINT_KEY",
        "LOG_FORMAT",
    ] {
        assert!(stderr.contains(name), "{name} not named in: {stderr}");
    }
}

#[test]
fn the_descriptor_command_writes_the_set_envoy_needs() {
    let directory = tempfile::tempdir().unwrap();
    let out = directory.path().join("supportdesk.pb");
    let status = Command::new(BINARY)
        .args(["descriptor", "--out"])
        .arg(&out)
        .env_clear()
        .status()
        .expect("run supportdesk descriptor");
    assert!(status.success());
    let written = std::fs::read(&out).unwrap();
    assert_eq!(written, supportdesk::wire::proto::FILE_DESCRIPTOR_SET);
    let text = String::from_utf8_lossy(&written);
    for needed in [
        "/v1/tickets/{id}",
        "google/api/http.proto",
        "google/rpc/error_details.proto",
    ] {
        assert!(
            text.contains(needed),
            "{needed} missing from the descriptor set"
        );
    }
}

#[tokio::test]
async fn an_operator_creates_an_account_from_the_command_line_and_its_admin_logs_in() {
    let app = crate::support::TestApp::spawn().await;
    let slug = format!("cli-{}", uuid::Uuid::now_v7().simple());
    let mut child = Command::new(BINARY)
        .args(["create-account", "--name", "From the CLI", "--slug", &slug])
        .args(["--admin-email", "ops@cli.example", "--admin-name", "Ops"])
        .env_clear()
        .env("DATABASE_URL", app.database.url().expose_secret())
        .env("REDIS_URL", redis_url())
        .env("JWT_SECRET", TEST_JWT_SECRET)
        .env("IDEMPOTENCY_FINGERPRINT_KEY", TEST_FINGERPRINT_KEY)
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run supportdesk create-account");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{TEST_PASSWORD}").unwrap();
    }
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .expect("create-account finishes");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains(TEST_PASSWORD), "the password was echoed");

    let admin = crate::support::log_in(&app.auth, &slug, "ops@cli.example").await;
    assert_eq!(
        stdout.lines().last().unwrap_or_default().trim(),
        admin.account_id.to_string(),
        "the last line is the new account's id"
    );
}

#[tokio::test]
async fn seed_demo_makes_a_demo_customer_the_demo_admin_can_charge() {
    let app = crate::support::TestApp::spawn().await;
    let seed = || {
        let output = Command::new(BINARY)
            .arg("seed-demo")
            .env_clear()
            .env("DATABASE_URL", app.database.url().expose_secret())
            .env("REDIS_URL", redis_url())
            .env("JWT_SECRET", TEST_JWT_SECRET)
            .env("IDEMPOTENCY_FINGERPRINT_KEY", TEST_FINGERPRINT_KEY)
            .output()
            .expect("run supportdesk seed-demo");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
        assert_eq!(
            lines.len(),
            2,
            "the account id, then the customer id: {stdout}"
        );
        (lines[0].clone(), lines[1].clone())
    };
    let (account_id, customer_id) = seed();
    assert_eq!(
        seed(),
        (account_id.clone(), customer_id.clone()),
        "a second run finds the same account and customer"
    );

    let token = AuthServiceClient::new(
        Channel::from_shared(format!("http://{}", app.address))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
    .login(supportdesk::wire::proto::v1::LoginRequest {
        account: "demo".to_owned(),
        email: "admin@demo.example".to_owned(),
        password: "supportdesk-demo".to_owned(),
    })
    .await
    .expect("the demo login works")
    .into_inner()
    .tokens
    .unwrap()
    .access_token;
    let mut request = crate::support::with_token(
        &token,
        supportdesk::wire::proto::v1::CreateChargeRequest {
            charge: Some(supportdesk::wire::proto::v1::Charge {
                customer_id: customer_id.clone(),
                amount: Some(supportdesk::wire::proto::v1::Money {
                    amount_minor: 1_250,
                    currency_code: "USD".to_owned(),
                }),
                payment_method: "pm_card_visa".to_owned(),
                ..Default::default()
            }),
        },
    );
    request
        .metadata_mut()
        .insert("idempotency-key", "seed-demo-charge".parse().unwrap());
    let charge = app
        .billing
        .clone()
        .create_charge(request)
        .await
        .expect("the demo customer can be charged")
        .into_inner();
    assert_eq!(charge.account_id, account_id);
    assert_eq!(charge.customer_id, customer_id);
    assert_eq!(
        charge.status,
        i32::from(supportdesk::wire::proto::v1::ChargeStatus::Succeeded)
    );
}

#[tokio::test]
async fn seed_demo_makes_a_demo_login_and_can_generate_tickets_to_list() {
    let app = crate::support::TestApp::spawn().await;
    let seed = |tickets: &str| {
        let output = Command::new(BINARY)
            .args(["seed-demo", "--tickets", tickets])
            .env_clear()
            .env("DATABASE_URL", app.database.url().expose_secret())
            .env("REDIS_URL", redis_url())
            .env("JWT_SECRET", TEST_JWT_SECRET)
            .env("IDEMPOTENCY_FINGERPRINT_KEY", TEST_FINGERPRINT_KEY)
            .output()
            .expect("run supportdesk seed-demo");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    seed("300");
    seed("500"); // tops up to 500, does not add 500 more

    let response = AuthServiceClient::new(
        Channel::from_shared(format!("http://{}", app.address))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
    .login(supportdesk::wire::proto::v1::LoginRequest {
        account: "demo".to_owned(),
        email: "admin@demo.example".to_owned(),
        password: "supportdesk-demo".to_owned(),
    })
    .await
    .expect("the printed demo login works")
    .into_inner();
    let token = response.tokens.unwrap().access_token;
    let mut seen = 0;
    let mut page_token = String::new();
    loop {
        let page = app
            .tickets
            .clone()
            .list_tickets(crate::support::with_token(
                &token,
                supportdesk::wire::proto::v1::ListTicketsRequest {
                    page_size: 100,
                    page_token,
                    statuses: vec![supportdesk::wire::proto::v1::TicketStatus::Open.into()],
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        seen += page.tickets.len();
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, 100, "a fifth of 500 generated tickets are open");

    wait_until("seed-demo's own ANALYZE of tickets", PATIENCE, || async {
        #[derive(diesel::QueryableByName)]
        struct Analyzed {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            analyzed: bool,
        }
        // last_analyze is set by ANALYZE itself, never by autovacuum (last_autoanalyze).
        diesel::sql_query(
            "SELECT last_analyze IS NOT NULL AS analyzed FROM pg_stat_user_tables \
                 WHERE relname = 'tickets'",
        )
        .get_result::<Analyzed>(&mut app.database.connect().await)
        .await
        .unwrap()
        .analyzed
    })
    .await;
}
