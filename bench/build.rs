//! Compiles `proto/hello.proto` the way the service's build.rs compiles its API: protox parses it
//! (no system `protoc`), with the `google/api` protos vendored in `../proto/vendor`, and
//! tonic-prost-build generates the server and client. The encoded descriptor set, imports and the
//! `google.api.http` option included, is written too, for Envoy's transcoder in front of `hello`.

use std::env;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=proto");
    let proto_root = manifest_dir.join("proto");
    let vendored = manifest_dir.join("../proto/vendor");

    let mut compiler = protox::Compiler::new([proto_root, vendored])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(["hello.proto"])?;

    // protox's own encoding: a round trip through prost_types would drop the `google.api.http`
    // extension, and Envoy would then transcode nothing.
    std::fs::write(
        out_dir.join("hello_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
