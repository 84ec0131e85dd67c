//! Compiles `proto/` without a system `protoc`: protox parses the files, tonic-prost-build
//! generates the Rust code, and the encoded descriptor set (imports, source info and the
//! `google.api.http` options intact) is written for reflection and Envoy. The `google/api`,
//! `google/rpc` and `google/longrunning` files the API imports are vendored in `proto/vendor/`: a
//! clone builds with nothing but cargo.

use std::env;
use std::path::{Path, PathBuf};

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
    Ok(())
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
