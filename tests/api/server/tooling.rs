//! Checks of the repository itself: the proto passes `buf lint`, every shell script passes
//! `shellcheck`, and `src/db/schema.rs` is what `diesel print-schema` generates from the
//! migrations.

use std::process::Command;

use secrecy::ExposeSecret;

use crate::support::{TestDatabase, buf, diesel_cli, repository_root, tool};

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

/// The bash scripts of the repository: files under `deploy/`, `.ci/` and `bench/` that start
/// with a bash shebang or end in `.sh`.
fn shell_scripts() -> Vec<std::path::PathBuf> {
    let mut scripts = Vec::new();
    let mut pending: Vec<_> = ["deploy", ".ci", "bench"]
        .iter()
        .map(|dir| repository_root().join(dir))
        .filter(|dir| dir.is_dir())
        .collect();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("target") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|ext| ext == "sh")
                || std::fs::read(&path).is_ok_and(|bytes| bytes.starts_with(b"#!/usr/bin/env bash"))
            {
                scripts.push(path);
            }
        }
    }
    scripts.sort();
    scripts
}

#[test]
fn every_shell_script_passes_shellcheck() {
    let scripts = shell_scripts();
    for expected in ["deploy/local/run", "deploy/local/test", ".ci/run"] {
        assert!(
            scripts.contains(&repository_root().join(expected)),
            "{expected} is not among the scripts found: {scripts:?}"
        );
    }
    let output = Command::new(tool("SHELLCHECK_BIN"))
        .arg("--external-sources")
        .args(&scripts)
        .current_dir(repository_root())
        .output()
        .expect("run shellcheck");
    assert!(
        output.status.success(),
        "shellcheck:\n{}{}",
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
