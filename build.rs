//! Compiles `proto/` without a system `protoc`: protox parses the files, tonic-prost-build
//! generates the Rust code, and the encoded descriptor set (imports, source info and the
//! `google.api.http` options intact) is written for reflection and Envoy. The `google/api`,
//! `google/rpc` and `google/longrunning` files the API imports are vendored in `proto/vendor/`: a
//! clone builds with nothing but cargo.
//!
//! It also records the git revision the binary is built from (`supportdesk --version`): the
//! checkout's `HEAD` commit; where there is no checkout of this repository (a source tarball, an
//! image build given only the sources) the `SUPPORTDESK_GIT_REVISION` variable, else `unknown`.
//! Cargo reruns this script when `HEAD` moves (the files git changes then), never on every build.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=migrations");
    let proto_root = manifest_dir.join("proto");
    let vendored = proto_root.join("vendor");

    let mut protos = vec![
        // Not imported by our files, but grpcurl and Envoy need them to render error details.
        PathBuf::from("google/rpc/status.proto"),
        PathBuf::from("google/rpc/error_details.proto"),
    ];
    protos.extend(service_protos(&proto_root)?);

    let mut compiler = protox::Compiler::new([proto_root, vendored])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&protos)?;

    // Written from protox's own encoding: a round trip through prost_types drops the
    // `google.api.http` extension options, and Envoy would then transcode nothing.
    std::fs::write(
        out_dir.join("supportdesk_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    // Messages packed into `google.protobuf.Any` (an Operation's metadata and response) carry
    // `type.googleapis.com/<full name>`: prost's default `/<full name>` makes Envoy answer 502.
    let mut config = tonic_prost_build::Config::new();
    config
        .enable_type_names()
        .type_name_domain(["."], "type.googleapis.com");
    // Decoding failures are the client's mistake (INVALID_ARGUMENT), not INTERNAL: src/wire/codec.rs.
    tonic_prost_build::configure()
        .codec_path("crate::wire::codec::ApiCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds_with_config(compiler.file_descriptor_set(), config)?;

    println!(
        "cargo:rustc-env=MIGRATIONS_FINGERPRINT={}",
        fingerprint(&manifest_dir.join("migrations"))?
    );
    println!(
        "cargo:rustc-env=SUPPORTDESK_GIT_REVISION={}",
        git_revision(&manifest_dir)
    );
    Ok(())
}

/// The commit this build's sources come from: `git rev-parse HEAD` when `manifest_dir` is the top
/// of a git checkout (not merely somewhere inside another repository, as an unpacked tarball may
/// be), else `SUPPORTDESK_GIT_REVISION`, else `unknown`. Prints the `rerun-if-changed` lines
/// that make Cargo run this script again when HEAD moves: the HEAD file (a checkout of another
/// branch), HEAD's reflog (every commit, reset or checkout in this work tree), the branch's
/// ref and packed-refs. Only files that exist are named: Cargo reruns on every build for a
/// missing one.
fn git_revision(manifest_dir: &Path) -> String {
    println!("cargo:rerun-if-env-changed=SUPPORTDESK_GIT_REVISION");
    let from_git = || -> Option<String> {
        let toplevel = PathBuf::from(git(manifest_dir, &["rev-parse", "--show-toplevel"])?);
        if toplevel.canonicalize().ok()? != manifest_dir.canonicalize().ok()? {
            return None;
        }
        let revision = git(manifest_dir, &["rev-parse", "--verify", "HEAD^{commit}"])?;
        let mut watched = vec![
            "HEAD".to_owned(),
            "logs/HEAD".to_owned(),
            "packed-refs".to_owned(),
        ];
        if let Some(branch) = git(manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
            watched.push(branch);
        }
        for name in watched {
            if let Some(path) = git(
                manifest_dir,
                &["rev-parse", "--path-format=absolute", "--git-path", &name],
            ) && Path::new(&path).is_file()
            {
                println!("cargo:rerun-if-changed={path}");
            }
        }
        Some(revision)
    };
    from_git()
        .or_else(|| {
            env::var("SUPPORTDESK_GIT_REVISION")
                .ok()
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// One line git prints, or `None` when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let line = text.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

/// The `.proto` files of our own package, relative to `proto/`.
fn service_protos(proto_root: &Path) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let package_dir = proto_root.join("supportdesk/v1");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&package_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path.strip_prefix(proto_root)?.to_path_buf());
        }
    }
    files.sort();
    Ok(files)
}

/// A stable hash of every migration file, so test databases cloned from a template are rebuilt
/// whenever a migration changes.
fn fingerprint(dir: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.sort();
    // FNV-1a: std-only, stable across Rust versions (unlike DefaultHasher).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for file in files {
        let bytes = std::fs::read(&file)?;
        let name = file.strip_prefix(dir)?.to_string_lossy().into_owned();
        for byte in name.bytes().chain(bytes) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(format!("{hash:016x}"))
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}
