//! The delivery pipeline (docs/deployment.md, "Continuous integration and releases"): the forge's workflows in `.github/workflows/`
//! (what they run, how they are pinned and what they may do), the checkers that pass them
//! (actionlint and zizmor, installed by `deploy/local/setup`), and the one version a release
//! carries (Cargo.toml, the tag, the image's labels, CHANGELOG.md, `supportdesk --version`).

pub(crate) mod linters;
pub(crate) mod release;
pub(crate) mod workflows;

use std::path::{Path, PathBuf};
use std::process::Output;

use yaml_rust2::{Yaml, YamlLoader};

use crate::support::repository_root;

/// The workflow files, sorted: every `.yml` and `.yaml` in `.github/workflows/`.
pub(crate) fn workflow_files() -> Vec<PathBuf> {
    let dir = repository_root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("read {}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yml" || ext == "yaml")
        })
        .collect();
    files.sort();
    files
}

/// One workflow file, parsed (YAML 1.2: `on` is a key, not a boolean).
pub(crate) fn load(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    let mut documents = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not YAML: {error}", path.display()));
    assert_eq!(documents.len(), 1, "{}: one YAML document", path.display());
    documents.remove(0)
}

/// A workflow by file name, e.g. `ci.yml`.
pub(crate) fn workflow(name: &str) -> Yaml {
    load(&repository_root().join(".github/workflows").join(name))
}

/// The jobs of a workflow, by id, in file order.
pub(crate) fn jobs(workflow: &Yaml) -> Vec<(String, Yaml)> {
    workflow["jobs"]
        .as_hash()
        .expect("a `jobs` map")
        .iter()
        .map(|(id, job)| (id.as_str().expect("a job id").to_owned(), job.clone()))
        .collect()
}

/// The steps of a job (an empty list for a job that calls a reusable workflow).
pub(crate) fn steps(job: &Yaml) -> Vec<Yaml> {
    job["steps"].as_vec().cloned().unwrap_or_default()
}

/// What a command said, both streams.
pub(crate) fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
