//! Breaking changes caught before they ship: `buf breaking` (rules `FILE`, buf.yaml) compares
//! the protos with the stored contract `proto/contract.binpb`, the image of the last contract
//! clients were given (docs/openapi.md, "Breaking changes"). A deliberate breaking change in a
//! scratch copy is shown to fail it.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{buf, repository_root, without_declaration};

/// The stored contract, as `buf build` wrote it.
fn stored_contract() -> std::path::PathBuf {
    repository_root().join("proto/contract.binpb")
}

fn buf_breaking(root: &Path) -> Output {
    Command::new(buf())
        .arg("breaking")
        .arg("--against")
        .arg(stored_contract())
        .current_dir(root)
        .output()
        .expect("run buf breaking")
}

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_protos_break_nothing_of_the_stored_contract() {
    let output = buf_breaking(&repository_root());
    assert!(
        output.status.success(),
        "buf breaking against proto/contract.binpb:\n{}",
        said(&output)
    );
}

/// Copies `from` into `to`, recursively.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a directory");
    for entry in std::fs::read_dir(from).expect("read a directory") {
        let path = entry.expect("an entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy a file");
        }
    }
}

#[test]
fn removing_a_field_in_a_scratch_copy_fails_buf_breaking() {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    copy_tree(
        &repository_root().join("proto"),
        &scratch.path().join("proto"),
    );
    std::fs::copy(
        repository_root().join("buf.yaml"),
        scratch.path().join("buf.yaml"),
    )
    .expect("copy buf.yaml");
    // The scratch copy is unchanged so far: it passes, so the failure below is the edit's.
    assert!(buf_breaking(scratch.path()).status.success());

    let ticket_proto = scratch.path().join("proto/supportdesk/v1/ticket.proto");
    let text = std::fs::read_to_string(&ticket_proto).expect("ticket.proto");
    std::fs::write(
        &ticket_proto,
        without_declaration(&text, "string requester_email = "),
    )
    .expect("write the edit");

    let output = buf_breaking(scratch.path());
    assert!(
        !output.status.success(),
        "buf breaking passed:\n{}",
        said(&output)
    );
    assert!(
        said(&output).contains("Previously present field \"8\" with name \"requester_email\""),
        "{}",
        said(&output)
    );
}
