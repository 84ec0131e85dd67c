//! One version for everything a release ships: Cargo.toml's `[package] version` is what
//! `.ci/version` prints, the only tag the release workflow accepts is `v<version>`, CHANGELOG.md
//! dates that version's section and the release notes are that section, the image is checked to
//! be `<name>:<version>` with that version (and the revision, the license) in its OCI labels
//! before anything is pushed, and `supportdesk --version` prints the version and the git
//! revision the binary was built from.

use std::path::Path;
use std::process::{Command, Output};

use super::{jobs, said, steps, workflow};
use crate::support::repository_root;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const BINARY: &str = env!("CARGO_BIN_EXE_supportdesk");

fn script(name: &str, args: &[&str]) -> Output {
    Command::new(repository_root().join(".ci").join(name))
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("run .ci/{name}: {error}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn ci_version_prints_what_cargo_toml_says() {
    for (field, expected) in [
        (None, VERSION),
        (Some("rust-version"), env!("CARGO_PKG_RUST_VERSION")),
        (Some("license"), env!("CARGO_PKG_LICENSE")),
    ] {
        let output = script("version", field.as_slice());
        assert!(output.status.success(), "{}", said(&output));
        assert_eq!(stdout(&output), expected, "{field:?}");
    }
    let missing = script("version", &["no-such-field"]);
    assert!(!missing.status.success());
}

#[test]
fn a_release_tag_must_name_the_crate_version() {
    let good = script("check-release-tag", &[&format!("v{VERSION}")]);
    assert!(good.status.success(), "{}", said(&good));
    assert_eq!(stdout(&good), VERSION);
    for bad in [
        VERSION.to_owned(),
        format!("v{VERSION}.1"),
        format!("v{VERSION}-rc.1"),
        format!("release-{VERSION}"),
        "v0.0.0".to_owned(),
    ] {
        let output = script("check-release-tag", &[&bad]);
        assert!(!output.status.success(), "{bad} was accepted");
        assert!(
            said(&output).contains(&format!("Cargo.toml says {VERSION}")),
            "{bad}: {}",
            said(&output)
        );
    }
}

/// The headings Keep a Changelog allows inside a version's section.
const CHANGE_KINDS: [&str; 6] = [
    "Added",
    "Changed",
    "Deprecated",
    "Removed",
    "Fixed",
    "Security",
];

#[test]
fn the_changelog_keeps_a_changelog_and_dates_the_crate_version() {
    let text = std::fs::read_to_string(repository_root().join("CHANGELOG.md")).unwrap();
    assert!(text.starts_with("# Changelog\n"));
    let sections: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("## "))
        .collect();
    assert_eq!(sections.first(), Some(&"## [Unreleased]"), "{sections:?}");
    // The newest released section is the crate's version: bumping one without the other fails.
    let newest = sections.get(1).expect("a released version");
    let (heading_version, date) = newest
        .strip_prefix("## [")
        .and_then(|rest| rest.split_once("] - "))
        .unwrap_or_else(|| panic!("{newest}: not `## [VERSION] - YYYY-MM-DD`"));
    assert_eq!(
        heading_version, VERSION,
        "CHANGELOG.md's newest release is not Cargo.toml's version"
    );
    assert!(
        chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(),
        "{newest}: the date is not YYYY-MM-DD"
    );
    let mut versions = Vec::new();
    for heading in &sections[1..] {
        let (version, date) = heading
            .strip_prefix("## [")
            .and_then(|rest| rest.split_once("] - "))
            .unwrap_or_else(|| panic!("{heading}: not `## [VERSION] - YYYY-MM-DD`"));
        assert!(
            chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(),
            "{heading}"
        );
        let numbers: Vec<u64> = version
            .split(['-', '+'])
            .next()
            .unwrap()
            .split('.')
            .map(|n| {
                n.parse()
                    .unwrap_or_else(|_| panic!("{heading}: not a version"))
            })
            .collect();
        assert_eq!(numbers.len(), 3, "{heading}");
        versions.push(numbers);
    }
    assert!(
        versions.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first: {sections:?}"
    );
    for line in text.lines().filter(|line| line.starts_with("### ")) {
        assert!(
            CHANGE_KINDS.contains(&&line[4..]),
            "{line}: not one of {CHANGE_KINDS:?}"
        );
    }
}

#[test]
fn the_release_notes_are_the_versions_section() {
    let output = script("release-notes", &[VERSION]);
    assert!(output.status.success(), "{}", said(&output));
    let notes = stdout(&output);
    let text = std::fs::read_to_string(repository_root().join("CHANGELOG.md")).unwrap();
    let start = text.find(&format!("## [{VERSION}] - ")).unwrap();
    let body = &text[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let body = body.find("\n## ").map_or(body, |end| &body[..end]);
    assert_eq!(notes, body.trim());
    assert!(notes.contains("### Added"));
}

/// Runs a copy of `.ci/release-notes` against a CHANGELOG.md of the test's own.
fn release_notes_of(changelog: &str, version: &str) -> Output {
    let scratch = tempfile::tempdir().unwrap();
    std::fs::create_dir(scratch.path().join(".ci")).unwrap();
    std::fs::copy(
        repository_root().join(".ci/release-notes"),
        scratch.path().join(".ci/release-notes"),
    )
    .unwrap();
    std::fs::write(scratch.path().join("CHANGELOG.md"), changelog).unwrap();
    Command::new(scratch.path().join(".ci/release-notes"))
        .arg(version)
        .output()
        .unwrap()
}

#[test]
fn release_notes_refuse_a_missing_an_undated_or_an_empty_section() {
    let changelog = "# Changelog\n\n## [Unreleased]\n\n## [1.1.0]\n\n- undated\n\n\
                     ## [1.0.1] - 2026-01-02\n\n## [1.0.0] - 2026-01-01\n\n### Added\n\n- first\n\n\
                     [1.0.0]: https://example.invalid/1.0.0\n";
    let first = release_notes_of(changelog, "1.0.0");
    assert!(first.status.success(), "{}", said(&first));
    assert_eq!(
        stdout(&first),
        "### Added\n\n- first",
        "link definitions are not notes"
    );
    for (version, complaint) in [
        ("2.0.0", "has no '## [2.0.0] - YYYY-MM-DD' section"),
        ("1.1.0", "is not dated"),
        ("1.0.1", "is empty"),
        ("1.0", "has no '## [1.0] - YYYY-MM-DD' section"),
    ] {
        let output = release_notes_of(changelog, version);
        assert!(!output.status.success(), "{version}: {}", said(&output));
        assert!(
            said(&output).contains(complaint),
            "{version}: {}",
            said(&output)
        );
    }
}

/// Runs `.ci/check-image` with a stand-in `podman` that reports `labels` for any image.
fn check_image(image: &str, revision: &str, labels: &[(&str, &str)]) -> Output {
    let scratch = tempfile::tempdir().unwrap();
    let podman = scratch.path().join("podman");
    let answer: String = labels
        .iter()
        .map(|(name, value)| format!("{name}={value}\n"))
        .collect();
    std::fs::write(scratch.path().join("labels"), answer).unwrap();
    // The real inspect prints one line per label with the template check-image passes.
    std::fs::write(
        &podman,
        format!(
            "#!/bin/sh\n[ \"$1 $2 $3\" = 'image inspect --format' ] || exit 64\ncat '{}'\n",
            scratch.path().join("labels").display()
        ),
    )
    .unwrap();
    make_executable(&podman);
    let path = format!(
        "{}:{}",
        scratch.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(repository_root().join(".ci/check-image"))
        .args([image, revision])
        .env("PATH", path)
        .env_remove("CONTAINER_ENGINE")
        .output()
        .unwrap()
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_image_check_accepts_only_the_crate_version_revision_and_license() {
    let revision = "0123456789abcdef0123456789abcdef01234567";
    let image = format!("supportdesk:{VERSION}");
    let good = [
        ("org.opencontainers.image.version", VERSION),
        ("org.opencontainers.image.revision", revision),
        (
            "org.opencontainers.image.licenses",
            env!("CARGO_PKG_LICENSE"),
        ),
        (
            "org.opencontainers.image.source",
            "https://example.invalid/supportdesk",
        ),
    ];
    let output = check_image(&image, revision, &good);
    assert!(output.status.success(), "{}", said(&output));

    // What deploy/container/build writes: the crate's license first, then the C library's.
    let with_libc = format!(
        "{} AND LGPL-2.1-or-later AND GPL-3.0-or-later WITH GCC-exception-3.1",
        env!("CARGO_PKG_LICENSE")
    );
    let mut built = good.to_vec();
    built[2].1 = &with_libc;
    let output = check_image(&image, revision, &built);
    assert!(output.status.success(), "{}", said(&output));

    let wrong_tag = check_image("supportdesk:latest", revision, &good);
    assert!(!wrong_tag.status.success());
    assert!(
        said(&wrong_tag).contains("not tagged with the crate's version"),
        "{}",
        said(&wrong_tag)
    );

    for (index, (name, _)) in good.iter().enumerate() {
        // The source is wherever the forge keeps the repository: only its presence is checked.
        if *name != "org.opencontainers.image.source" {
            let mut changed = good.to_vec();
            changed[index].1 = "0.0.0-other";
            let output = check_image(&image, revision, &changed);
            assert!(!output.status.success(), "{name} changed was accepted");
            assert!(
                said(&output).contains(&format!("label {name} is '0.0.0-other'")),
                "{}",
                said(&output)
            );
        }
        let mut without = good.to_vec();
        without.remove(index);
        let output = check_image(&image, revision, &without);
        assert!(!output.status.success(), "{name} missing was accepted");
        assert!(
            said(&output).contains(&format!("no label {name}")),
            "{}",
            said(&output)
        );
    }
}

#[test]
fn the_workflows_build_and_check_the_image_of_the_crate_version() {
    let ci = workflow("ci.yml");
    let release = workflow("release.yml");
    let runs = |workflow: &yaml_rust2::Yaml, job_id: &str| -> Vec<String> {
        let (_, job) = jobs(workflow)
            .into_iter()
            .find(|(id, _)| id == job_id)
            .unwrap_or_else(|| panic!("no job {job_id}"));
        steps(&job)
            .iter()
            .filter_map(|step| step["run"].as_str().map(|run| run.trim().to_owned()))
            .collect()
    };
    let image_job = runs(&ci, "image");
    let build = image_job
        .iter()
        .position(|run| run == "deploy/container/build");
    let check = image_job
        .iter()
        .position(|run| run == r#".ci/check-image "supportdesk:$(.ci/version)""#);
    assert!(build.is_some() && check > build, "{image_job:?}");

    let release_build = runs(&release, "build");
    let tag = release_build
        .iter()
        .position(|run| run.contains(r#".ci/check-release-tag "$GITHUB_REF_NAME""#))
        .expect("the release checks its tag");
    let cargo = release_build
        .iter()
        .position(|run| run.starts_with("cargo build"))
        .unwrap();
    let image = release_build
        .iter()
        .position(|run| run == "deploy/container/build")
        .unwrap();
    let checked = release_build
        .iter()
        .position(|run| run == r#".ci/check-image "supportdesk:$VERSION""#)
        .unwrap();
    assert!(
        tag < cargo && cargo < image && image < checked,
        "{release_build:?}"
    );
    // The version every later step uses is the one the tag check printed.
    let text =
        std::fs::read_to_string(repository_root().join(".github/workflows/release.yml")).unwrap();
    assert!(text.contains("VERSION: ${{ steps.version.outputs.version }}"));
    assert!(
        !text.contains(&format!(":{VERSION}")),
        "a literal version in release.yml"
    );
}

/// The revision the binary should report: this checkout's HEAD, when this is a git checkout.
fn checkout_revision() -> Option<String> {
    let root = repository_root();
    let toplevel = Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .current_dir(&root)
        .output()
        .ok()?;
    let toplevel = String::from_utf8(toplevel.stdout).ok()?;
    if Path::new(toplevel.trim()).canonicalize().ok()? != root.canonicalize().ok()? {
        return None;
    }
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&root)
        .output()
        .ok()?;
    head.status
        .success()
        .then(|| String::from_utf8_lossy(&head.stdout).trim().to_owned())
}

#[test]
fn supportdesk_version_prints_the_version_and_the_git_revision() {
    for flag in ["--version", "-V"] {
        let output = Command::new(BINARY).arg(flag).env_clear().output().unwrap();
        assert!(output.status.success(), "{}", said(&output));
        let printed = stdout(&output);
        let revision = printed
            .strip_prefix(&format!("supportdesk {VERSION} (revision "))
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{flag} printed {printed:?}"));
        match checkout_revision() {
            Some(head) => assert_eq!(revision, head, "built from a stale revision"),
            // A build outside a git checkout: the variable's value, else `unknown`.
            None => assert!(
                revision == "unknown"
                    || (revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())),
                "{printed}"
            ),
        }
    }
}
