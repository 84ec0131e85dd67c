//! The OpenAPI document: the checked-in file is what `supportdesk openapi` generates, it passes
//! openapi-spec-validator, it describes every RPC, and Envoy serves it at `GET /v1/openapi.json`.

use std::collections::BTreeSet;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;
use supportdesk::wire::methods::MethodTable;
use supportdesk::wire::openapi;

use super::checked_in_document;
use crate::support::binary::BINARY;
use crate::support::envoy::Envoy;
use crate::support::{TestApp, repository_root, tool};

fn generated() -> String {
    openapi::render().expect("the document renders")
}

#[test]
fn the_checked_in_document_is_what_the_generator_writes() {
    let checked_in = std::fs::read_to_string(checked_in_document()).unwrap_or_default();
    assert!(
        checked_in == generated(),
        "docs/openapi.json is stale (the protos, the method declarations or docs/http-contract.md's \
         contract table changed since it was written). Regenerate it, never edit it by hand:\n    \
         {}",
        openapi::REGENERATE
    );
}

#[test]
fn the_openapi_subcommand_prints_the_document() {
    let output = Command::new(BINARY)
        .arg("openapi")
        .env_clear()
        .output()
        .expect("run supportdesk openapi");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).expect("UTF-8"),
        generated()
    );
}

#[test]
fn the_document_passes_openapi_spec_validator() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, generated()).expect("write the document");
    let output = Command::new(tool("OPENAPI_SPEC_VALIDATOR_BIN"))
        .arg(&path)
        .output()
        .expect("run openapi-spec-validator");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && said.contains(": OK"),
        "openapi-spec-validator:\n{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_rpc_of_the_api_is_an_operation_of_the_document() {
    let document: Value = serde_json::from_str(&generated()).expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    let described: BTreeSet<String> = document["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("a path item").values())
        .map(|operation| {
            operation["x-grpc-method"]
                .as_str()
                .expect("x-grpc-method")
                .to_owned()
        })
        .collect();
    // RPCs whose contract row says `gRPC` have no REST path to describe (WaitOperation).
    let contract = std::fs::read_to_string(repository_root().join("docs/http-contract.md"))
        .expect("read docs/http-contract.md");
    let grpc_only: BTreeSet<String> = contract
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells.get(2) == Some(&"gRPC")).then(|| cells[1].to_owned())
        })
        .filter_map(|name| {
            name.rsplit_once('.')
                .map(|(service, method)| format!("/{service}/{method}"))
        })
        .collect();
    assert!(!grpc_only.is_empty(), "WaitOperation's row says gRPC");
    let api: BTreeSet<String> = MethodTable::get()
        .expect("the method table")
        .api_methods()
        .map(|method| method.path.clone())
        .filter(|path| !grpc_only.contains(path))
        .collect();
    assert_eq!(described, api);
}

#[tokio::test]
async fn envoy_serves_the_checked_in_document_at_v1_openapi_json() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();

    let response = http
        .get(envoy.url("/v1/openapi.json"))
        .send()
        .await
        .expect("GET /v1/openapi.json");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert!(response.headers().contains_key("x-request-id"));
    let served = response.text().await.expect("the body");
    let checked_in = std::fs::read_to_string(checked_in_document()).expect("docs/openapi.json");
    assert!(served == checked_in, "Envoy serves another document");

    // Only GET: anything else at that path is no RPC either.
    let response = http
        .post(envoy.url("/v1/openapi.json"))
        .send()
        .await
        .expect("POST /v1/openapi.json");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
