//! Checks of the repository itself: the proto passes `buf lint`, and `src/db/schema.rs` is what
//! `diesel print-schema` generates from the migrations.

use std::process::Command;

use secrecy::ExposeSecret;

use super::helpers::{TestDatabase, buf, diesel_cli, repository_root};

#[test]
fn the_protos_pass_buf_lint() {
    let output = Command::new(buf())
        .arg("lint")
        .current_dir(repository_root())
        .output()
        .expect("run buf");
    assert!(
        output.status.success(),
        "buf lint:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn schema_rs_matches_the_migrations() {
    let database = TestDatabase::create().await;
    let output = Command::new(diesel_cli())
        .args(["print-schema", "--database-url"])
        .arg(database.url().expose_secret())
        .current_dir(repository_root())
        .output()
        .expect("run diesel print-schema");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated = String::from_utf8(output.stdout).unwrap();
    let committed = std::fs::read_to_string(repository_root().join("src/db/schema.rs")).unwrap();
    assert!(
        generated == committed,
        "src/db/schema.rs drifted from migrations/: regenerate it with \
         `diesel print-schema --database-url <a migrated database> > src/db/schema.rs`\n\
         --- generated ---\n{generated}"
    );
}
