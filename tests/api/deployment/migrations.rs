//! `supportdesk migrate` as a Kubernetes Job runs it: twice, and two at once (a retried Job, two
//! deploys racing) on a database that has none of the schema yet. Each run holds the migration
//! advisory lock (`supportdesk::db::MIGRATION_LOCK_KEY`): the second waits for the first and
//! then finds nothing pending, so both succeed and every migration is applied exactly once.

use std::process::Command;

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::ExposeSecret;

use crate::support::binary::BINARY;
use crate::support::{
    TEST_FINGERPRINT_KEY, TEST_JWT_SECRET, TestDatabase, admin_database_url, count_of, redis_url,
    repository_root,
};

/// A database with nothing in it (not cloned from the migrated template), dropped at the end.
pub(crate) async fn empty_database() -> TestDatabase {
    let name = format!("supportdesk_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = AsyncPgConnection::establish(&admin_database_url())
        .await
        .expect("connect to PostgreSQL as the test admin");
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create an empty database");
    TestDatabase {
        name,
        elsewhere: None,
    }
}

/// The migrations of the repository (`migrations/*/up.sql`).
pub(crate) fn migration_count() -> i64 {
    let count = std::fs::read_dir(repository_root().join("migrations"))
        .expect("read migrations/")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("up.sql").is_file())
        .count();
    i64::try_from(count).unwrap()
}

#[derive(diesel::QueryableByName)]
struct Version {
    #[diesel(sql_type = Text)]
    version: String,
}

#[tokio::test]
async fn two_migrate_runs_at_once_both_succeed_and_apply_every_migration_once() {
    let database = empty_database().await;
    let url = database.url().expose_secret().to_owned();
    let start = || {
        Command::new(BINARY)
            .arg("migrate")
            .env_clear()
            .env("DATABASE_URL", &url)
            .env("REDIS_URL", redis_url())
            .env("JWT_SECRET", TEST_JWT_SECRET)
            .env("IDEMPOTENCY_FINGERPRINT_KEY", TEST_FINGERPRINT_KEY)
            .env("LOG_FORMAT", "json")
            .spawn()
            .expect("start supportdesk migrate")
    };
    let (mut first, mut second) = (start(), start());
    let first = first.wait().expect("wait for the first migrate");
    let second = second.wait().expect("wait for the second migrate");
    assert!(first.success(), "the first run: {first}");
    assert!(second.success(), "the second run: {second}");

    let expected = migration_count();
    assert_eq!(
        count_of(
            &database,
            "SELECT count(*) AS count FROM __diesel_schema_migrations"
        )
        .await,
        expected
    );
    let mut conn = database.connect().await;
    let versions: Vec<Version> =
        diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
            .load(&mut conn)
            .await
            .expect("read the applied migrations");
    let mut distinct: Vec<String> = versions.into_iter().map(|row| row.version).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(i64::try_from(distinct.len()).unwrap(), expected);

    // Once more, after both: nothing pending, nothing done, success.
    let again = start().wait().expect("wait for the third migrate");
    assert!(again.success(), "a run with nothing pending: {again}");
}
