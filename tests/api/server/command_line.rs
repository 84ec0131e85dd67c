//! The subcommands the local scripts (and container health checks) use instead of shell:
//! `migrate --create-database`, `healthcheck` and `login`, run as the real binary.

use std::process::{Command, Output};

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::ExposeSecret;
use supportdesk::wire::proto::v1;

use crate::support::{
    ClosedPort, Count, TEST_FINGERPRINT_KEY, TEST_JWT_SECRET, TEST_PASSWORD, TestApp, TestDatabase,
    admin_database_url, redis_url, with_token,
};

const BINARY: &str = env!("CARGO_BIN_EXE_supportdesk");

/// Runs the binary off the test's runtime thread, which serves the in-process `TestApp`.
async fn supportdesk(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env_clear()
        .env("LOG_FORMAT", "json")
        .envs(env.iter().copied());
    tokio::task::spawn_blocking(move || command.output().expect("run supportdesk"))
        .await
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn count(conn: &mut AsyncPgConnection, query: &str, name: &str) -> i64 {
    diesel::sql_query(query)
        .bind::<Text, _>(name)
        .get_result::<Count>(conn)
        .await
        .expect(query)
        .count
}

#[tokio::test]
async fn migrate_creates_a_missing_database_once_and_migrates_it() {
    // Not created yet: dropping it at the end cleans up after the command.
    let database = TestDatabase {
        name: format!("supportdesk_cli_{}", uuid::Uuid::now_v7().simple()),
        elsewhere: None,
    };
    let url = database.url();
    let settings = [
        ("DATABASE_URL", url.expose_secret()),
        ("REDIS_URL", &redis_url()),
        ("JWT_SECRET", TEST_JWT_SECRET),
        ("IDEMPOTENCY_FINGERPRINT_KEY", TEST_FINGERPRINT_KEY),
    ];

    let without_flag = supportdesk(&["migrate"], &settings).await;
    assert!(
        !without_flag.status.success(),
        "plain migrate does not create databases"
    );
    for run in ["first", "second"] {
        let output = supportdesk(&["migrate", "--create-database"], &settings).await;
        assert!(output.status.success(), "{run} run: {}", stderr(&output));
    }

    let mut server = AsyncPgConnection::establish(&admin_database_url())
        .await
        .unwrap();
    assert_eq!(
        count(
            &mut server,
            "SELECT count(*) AS count FROM pg_database WHERE datname = $1",
            &database.name
        )
        .await,
        1
    );
    let mut created = database.connect().await;
    let applied = count(
        &mut created,
        "SELECT count(*) AS count FROM __diesel_schema_migrations WHERE version <> $1",
        "",
    )
    .await;
    let embedded = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().join("up.sql").exists())
        .count();
    assert_eq!(applied, i64::try_from(embedded).unwrap());
}

#[tokio::test]
async fn healthcheck_exits_zero_for_a_serving_service_and_names_what_it_got_otherwise() {
    let app = TestApp::spawn().await;
    let address = app.address.to_string();
    let serving = supportdesk(&["healthcheck", "--addr", &address, "--wait", "10"], &[]).await;
    assert!(serving.status.success(), "{}", stderr(&serving));
    let per_service = supportdesk(
        &[
            "healthcheck",
            "--addr",
            &address,
            "--service",
            "supportdesk.v1.TicketService",
        ],
        &[],
    )
    .await;
    assert!(per_service.status.success(), "{}", stderr(&per_service));

    let unknown = supportdesk(
        &[
            "healthcheck",
            "--addr",
            &address,
            "--service",
            "no.such.Service",
        ],
        &[],
    )
    .await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("did not report SERVING"),
        "{}",
        stderr(&unknown)
    );

    let closed_port = ClosedPort::new();
    let nobody = format!("127.0.0.1:{}", closed_port.port);
    let closed = supportdesk(&["healthcheck", "--addr", &nobody, "--wait", "1"], &[]).await;
    assert_eq!(closed.status.code(), Some(1));
    let message = stderr(&closed);
    assert!(
        message.contains(&format!("{nobody} did not report SERVING within 1s"))
            && message.contains("cannot connect"),
        "{message}"
    );
}

#[tokio::test]
async fn login_prints_an_access_token_that_authenticates_and_refuses_a_wrong_password() {
    let app = TestApp::spawn().await;
    let address = app.address.to_string();
    let login = async |password: &str| {
        supportdesk(
            &[
                "login",
                "--addr",
                &address,
                "--account",
                &app.admin.account_slug,
                "--email",
                &app.admin.email,
            ],
            &[("SUPPORTDESK_PASSWORD", password)],
        )
        .await
    };

    let output = login(TEST_PASSWORD).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let token = String::from_utf8(output.stdout).unwrap();
    let me = app
        .users
        .clone()
        .get_current_user(with_token(token.trim_end(), v1::GetCurrentUserRequest {}))
        .await
        .expect("the printed token authenticates")
        .into_inner();
    assert_eq!(me.email, app.admin.email);

    let refused = login("not the password").await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(refused.stdout.is_empty());
    assert!(
        stderr(&refused).contains("login refused: Unauthenticated"),
        "{}",
        stderr(&refused)
    );
}

#[tokio::test]
async fn migrate_reports_each_stored_address_the_address_rule_refuses_and_no_other() {
    let app = TestApp::spawn().await;
    let old_rule = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let plain_but_unusual = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let mut conn = app.database.connect().await;
    for (user, address) in [
        (&old_rule, "a,b@example.com"),
        // Outside the plain shape the scan skips, and deliverable: looked at, not reported.
        (&plain_but_unusual, "o'brien{x}@example.com"),
    ] {
        diesel::sql_query("UPDATE users SET email = $1 WHERE id = $2")
            .bind::<Text, _>(address)
            .bind::<diesel::sql_types::Uuid, _>(user.id.as_uuid())
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let url = app.database.url();
    let settings = [
        ("DATABASE_URL", url.expose_secret()),
        ("REDIS_URL", &redis_url()),
        ("JWT_SECRET", TEST_JWT_SECRET),
        ("IDEMPOTENCY_FINGERPRINT_KEY", TEST_FINGERPRINT_KEY),
    ];

    let output = supportdesk(&["migrate"], &settings).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<serde_json::Value> = [&output.stdout, &output.stderr]
        .into_iter()
        .flat_map(|stream| {
            String::from_utf8_lossy(stream)
                .into_owned()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect();
    let reported: Vec<(String, String)> = lines
        .iter()
        .filter(|line| line["level"] == "WARN")
        .map(|line| {
            (
                line["user_id"].as_str().unwrap_or_default().to_owned(),
                line["address"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        reported,
        [(old_rule.id.to_string(), "a,b@example.com".to_owned())],
        "{lines:#?}"
    );
    let summary = lines
        .iter()
        .find(|line| line["message"] == "stored addresses checked against the address rule")
        .expect("the summary line");
    assert_eq!(summary["undeliverable"], 1);
}
