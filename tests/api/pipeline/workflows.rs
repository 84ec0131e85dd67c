//! What the workflows run and what they may do: CI's test step is the README's test command and
//! nothing else; every action is pinned to a full commit; every job asks for the least it needs
//! and has a time-out; no workflow hands a secret to a pull request from a fork; checkouts keep no
//! credentials; superseded CI runs are cancelled and releases never are; the caches are keyed on
//! the lockfiles and only CI uses them; the buf-breaking job's script fails on a breaking change.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use yaml_rust2::Yaml;

use super::{jobs, said, steps, workflow, workflow_files};
use crate::support::{buf, repository_root, without_declaration};

/// The README's test command: the first word of the line of "The two commands" that says it runs
/// the tests.
fn readme_test_command() -> String {
    let readme = std::fs::read_to_string(repository_root().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|line| {
            line.starts_with("deploy/local/test ") && line.contains("run the whole test suite")
        })
        .expect("README's 'The two commands' names the test command");
    line.split_whitespace().next().unwrap().to_owned()
}

fn run_text(step: &Yaml) -> Option<&str> {
    step["run"].as_str()
}

#[test]
fn the_ci_test_step_runs_the_readme_test_command_and_nothing_else() {
    let command = readme_test_command();
    assert_eq!(command, "deploy/local/test");
    // .ci/run is the same command: the forge and a local CI run cannot disagree.
    let ci_run = std::fs::read_to_string(repository_root().join(".ci/run")).unwrap();
    let ci_run_commands: Vec<&str> = ci_run
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .collect();
    assert_eq!(
        ci_run_commands,
        [r#"exec "$(dirname "$0")/../deploy/local/test""#]
    );

    let ci = workflow("ci.yml");
    let (_, test_job) = jobs(&ci)
        .into_iter()
        .find(|(id, _)| id == "test")
        .expect("ci.yml has a `test` job");
    let test_steps: Vec<Yaml> = steps(&test_job)
        .into_iter()
        .filter(|step| step["name"].as_str() == Some("Test"))
        .collect();
    assert_eq!(test_steps.len(), 1, "one step named Test");
    let step = &test_steps[0];
    assert_eq!(run_text(step).map(str::trim), Some(command.as_str()));
    let keys: BTreeSet<&str> = step
        .as_hash()
        .unwrap()
        .keys()
        .map(|key| key.as_str().unwrap())
        .collect();
    // No env, working directory, shell, condition or continue-on-error changes what it runs.
    assert_eq!(keys, BTreeSet::from(["name", "run"]), "{step:?}");
    assert!(
        test_job["env"].is_badvalue(),
        "the test job sets no environment of its own"
    );
    assert!(test_job["continue-on-error"].is_badvalue());

    // And no other step of any workflow runs the suite some other way.
    for file in workflow_files() {
        let parsed = super::load(&file);
        for (id, job) in jobs(&parsed) {
            for other in steps(&job) {
                let Some(text) = run_text(&other) else {
                    continue;
                };
                let is_the_test_step = id == "test" && other["name"].as_str() == Some("Test");
                if !is_the_test_step {
                    assert!(
                        !text.contains("deploy/local/test") && !text.contains("cargo test"),
                        "{}: job {id} runs tests outside the test step: {text}",
                        file.display()
                    );
                }
            }
        }
    }
}

/// Every `uses:` line of the workflows, with its file.
fn uses_lines() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for file in workflow_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            let trimmed = line.trim_start().trim_start_matches("- ");
            if let Some(rest) = trimmed.strip_prefix("uses:") {
                found.push((file.display().to_string(), rest.trim().to_owned()));
            }
        }
    }
    found
}

#[test]
fn every_action_is_pinned_to_a_full_commit_and_names_its_release() {
    let uses = uses_lines();
    assert!(uses.len() >= 10, "the workflows use actions: {uses:?}");
    // The same repository at one commit everywhere: one version of each action to keep current.
    let mut commits: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, value) in &uses {
        let (reference, comment) = value
            .split_once(" # ")
            .unwrap_or_else(|| panic!("{file}: `uses: {value}` names no release in a comment"));
        let (action, commit) = reference
            .split_once('@')
            .unwrap_or_else(|| panic!("{file}: `uses: {value}` is not pinned"));
        assert!(
            commit.len() == 40
                && commit
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{file}: `{action}` is pinned to `{commit}`, not a full commit hash"
        );
        let parts: Vec<&str> = action.split('/').collect();
        assert!(
            parts.len() >= 2
                && parts.iter().all(|part| !part.is_empty())
                && !action.starts_with("docker:"),
            "{file}: `{action}` is not an owner/repository action"
        );
        let release = comment.trim();
        let numbers = release.strip_prefix('v').unwrap_or_default();
        assert!(
            numbers.split('.').count() == 3
                && numbers
                    .split('.')
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
            "{file}: `{action}` names `{release}`, not a full release like v1.2.3"
        );
        let repository = format!("{}/{}", parts[0], parts[1]);
        commits
            .entry(repository)
            .or_default()
            .insert(format!("{commit} {release}"));
    }
    for (repository, pins) in commits {
        assert_eq!(
            pins.len(),
            1,
            "{repository} is pinned at more than one commit: {pins:?}"
        );
    }
}

/// The permissions a job may hold: read everywhere, and the two writes the release needs, each
/// in the job that does that one thing.
fn allowed_write(file: &str, job: &str, scope: &str) -> bool {
    matches!(
        (file, job, scope),
        ("release.yml", "publish", "packages") | ("release.yml", "release", "contents")
    )
}

#[test]
fn every_job_holds_the_least_permission_it_needs_and_has_a_time_out() {
    for file in workflow_files() {
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        let parsed = super::load(&file);
        assert!(
            parsed["permissions"]
                .as_hash()
                .is_some_and(|map| map.is_empty()),
            "{name}: `permissions: {{}}` at the top (each job says what it needs)"
        );
        for (id, job) in jobs(&parsed) {
            let permissions = job["permissions"]
                .as_hash()
                .unwrap_or_else(|| panic!("{name}: job {id} states its permissions"));
            for (scope, level) in permissions {
                let scope = scope.as_str().unwrap();
                match level.as_str() {
                    Some("read" | "none") => {}
                    Some("write") => assert!(
                        allowed_write(&name, &id, scope),
                        "{name}: job {id} may write {scope}"
                    ),
                    other => panic!("{name}: job {id}: {scope}: {other:?}"),
                }
            }
            let minutes = job["timeout-minutes"]
                .as_i64()
                .unwrap_or_else(|| panic!("{name}: job {id} has no timeout-minutes"));
            assert!(
                (1..=120).contains(&minutes),
                "{name}: job {id} may run {minutes} minutes"
            );
        }
    }
}

#[test]
fn no_workflow_hands_a_secret_to_a_pull_request_from_a_fork() {
    for file in workflow_files() {
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        let parsed = super::load(&file);
        let triggers: Vec<String> = match &parsed["on"] {
            Yaml::String(one) => vec![one.clone()],
            Yaml::Array(many) => many
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect(),
            Yaml::Hash(map) => map.keys().map(|t| t.as_str().unwrap().to_owned()).collect(),
            other @ (Yaml::Real(_)
            | Yaml::Integer(_)
            | Yaml::Boolean(_)
            | Yaml::Alias(_)
            | Yaml::Null
            | Yaml::BadValue) => panic!("{name}: `on` is {other:?}"),
        };
        for trigger in &triggers {
            // Both run with the base repository's secrets for code a fork controls.
            assert!(
                trigger != "pull_request_target" && trigger != "workflow_run",
                "{name} runs on {trigger}"
            );
        }
        let text = std::fs::read_to_string(&file).unwrap();
        if text.contains("secrets.") {
            assert_eq!(
                triggers,
                ["push"],
                "{name} uses a secret: it may run only on pushes"
            );
            let tags = &parsed["on"]["push"]["tags"];
            assert!(
                tags.as_vec().is_some_and(|tags| !tags.is_empty())
                    && parsed["on"]["push"]["branches"].is_badvalue(),
                "{name} uses a secret: it may run only on pushed tags"
            );
        }
    }
}

#[test]
fn checkouts_keep_no_credentials() {
    let mut checkouts = 0;
    for file in workflow_files() {
        let parsed = super::load(&file);
        for (id, job) in jobs(&parsed) {
            for step in steps(&job) {
                if step["uses"]
                    .as_str()
                    .is_some_and(|uses| uses.starts_with("actions/checkout@"))
                {
                    checkouts += 1;
                    assert_eq!(
                        step["with"]["persist-credentials"].as_bool(),
                        Some(false),
                        "{}: job {id} checks out with its token left in .git/config",
                        file.display()
                    );
                }
            }
        }
    }
    assert!(checkouts >= 5, "{checkouts} checkouts");
}

#[test]
fn superseded_ci_runs_are_cancelled_and_releases_never_are() {
    let ci = workflow("ci.yml");
    let group = ci["concurrency"]["group"]
        .as_str()
        .expect("ci.yml's concurrency group");
    assert!(
        group.contains("github.event.pull_request.number") && group.contains("github.ref"),
        "one group per pull request (and per branch): {group}"
    );
    assert_eq!(
        ci["concurrency"]["cancel-in-progress"].as_str(),
        Some("${{ github.event_name == 'pull_request' }}")
    );
    let release = workflow("release.yml");
    assert!(release["concurrency"]["group"].as_str().is_some());
    assert_eq!(
        release["concurrency"]["cancel-in-progress"].as_bool(),
        Some(false)
    );
}

#[test]
fn ci_runs_on_pull_requests_and_pushes_and_releases_on_version_tags() {
    let ci = workflow("ci.yml");
    assert!(
        !ci["on"]["pull_request"].is_badvalue(),
        "ci.yml runs on pull requests"
    );
    assert!(
        ci["on"]["push"]["branches"].as_vec().is_some(),
        "ci.yml runs on pushes"
    );
    let ids: Vec<String> = jobs(&ci).into_iter().map(|(id, _)| id).collect();
    for expected in ["test", "buf-breaking", "image", "msrv"] {
        assert!(
            ids.iter().any(|id| id == expected),
            "ci.yml has no {expected} job: {ids:?}"
        );
    }
    let release = workflow("release.yml");
    let tags: Vec<&str> = release["on"]["push"]["tags"]
        .as_vec()
        .expect("release.yml runs on tags")
        .iter()
        .map(|tag| tag.as_str().unwrap())
        .collect();
    assert_eq!(tags, ["v*"]);
}

#[test]
fn every_job_runs_in_the_same_debian_container() {
    // One toolchain image: CI tests what the release builds, and pinning it is one edit.
    let mut images = BTreeSet::new();
    for file in workflow_files() {
        let parsed = super::load(&file);
        for (id, job) in jobs(&parsed) {
            if let Some(image) = job["container"]["image"].as_str() {
                images.insert(image.to_owned());
            } else {
                // Only the release's last job runs on the host: it needs the forge's `gh`.
                assert_eq!(
                    (file.file_name().unwrap().to_str().unwrap(), id.as_str()),
                    ("release.yml", "release"),
                    "job {id} runs outside the container"
                );
            }
        }
    }
    assert_eq!(images.len(), 1, "{images:?}");
    let image = images.into_iter().next().unwrap();
    assert!(
        image.starts_with("rust:") && image.contains("-bookworm"),
        "{image}: Rust on Debian 12, what the README's commands are written for"
    );
}

/// The paths and keys of the cache steps of a workflow.
fn cache_steps(parsed: &Yaml) -> Vec<(String, Yaml)> {
    let mut found = Vec::new();
    for (id, job) in jobs(parsed) {
        for step in steps(&job) {
            if step["uses"]
                .as_str()
                .is_some_and(|uses| uses.starts_with("actions/cache"))
            {
                found.push((id.clone(), step));
            }
        }
    }
    found
}

#[test]
fn the_caches_are_keyed_on_the_lockfiles_and_written_by_main_only() {
    let ci = workflow("ci.yml");
    let caches = cache_steps(&ci);
    assert!(!caches.is_empty());
    let mut keys = BTreeSet::new();
    for (job, step) in &caches {
        let uses = step["uses"].as_str().unwrap();
        let key = step["with"]["key"].as_str().expect("a cache key");
        if uses.starts_with("actions/cache/restore@") {
            keys.insert(key.to_owned());
            let path = step["with"]["path"].as_str().unwrap();
            if path.contains(".tools") {
                assert!(
                    key.contains("hashFiles('deploy/local/setup')"),
                    "{job}: {key}"
                );
            } else {
                assert!(key.contains("hashFiles('Cargo.lock')"), "{job}: {key}");
            }
        } else {
            assert!(uses.starts_with("actions/cache/save@"), "{job}: {uses}");
            let condition = step["if"].as_str().unwrap_or_default();
            assert!(
                condition.starts_with("github.ref == 'refs/heads/main'"),
                "{job}: a cache is saved outside main: {condition:?}"
            );
        }
    }
    assert!(keys.iter().any(|key| key.contains("Cargo.lock")));
    assert!(keys.iter().any(|key| key.contains("deploy/local/setup")));
    // A cache restored into a release build could carry what a pull request put there.
    assert!(cache_steps(&workflow("release.yml")).is_empty());
}

#[test]
fn the_buf_breaking_script_fails_on_a_breaking_change_and_passes_without_one() {
    let root = repository_root();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    // A repository of its own: the protos, buf.yaml and the script, committed once.
    let copy = Command::new("cp")
        .args(["-R", "proto", "buf.yaml", ".ci"])
        .arg(dir)
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(copy.status.success(), "{}", said(&copy));
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .args([
                "-c",
                "user.name=test",
                "-c",
                "user.email=test@example.invalid",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {}", said(&output));
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "protos"]);
    let breaking = || {
        Command::new(dir.join(".ci/buf-breaking"))
            .arg("main")
            .env("BUF_BIN", buf())
            .current_dir(dir)
            .output()
            .unwrap()
    };
    let unchanged = breaking();
    assert!(unchanged.status.success(), "{}", said(&unchanged));

    let ticket = dir.join("proto/supportdesk/v1/ticket.proto");
    let text = std::fs::read_to_string(&ticket).unwrap();
    std::fs::write(
        &ticket,
        without_declaration(&text, "string requester_email = "),
    )
    .unwrap();
    let broken = breaking();
    assert!(!broken.status.success(), "{}", said(&broken));
    assert!(
        said(&broken).contains("requester_email"),
        "{}",
        said(&broken)
    );

    let missing = Command::new(dir.join(".ci/buf-breaking"))
        .arg("no-such-branch")
        .env("BUF_BIN", buf())
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        said(&missing).contains("is not a commit of this clone"),
        "{}",
        said(&missing)
    );
}
