//! The OpenAPI document: the checked-in file is what `supportdesk openapi` generates, it passes
//! openapi-spec-validator and the governance lint (Spectral with the OWASP ruleset, as
//! .spectral.yaml configures it), it describes every RPC, the rate-limit fields the service
//! writes fit the headers it declares, and Envoy serves it at `GET /v1/openapi.json`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use supportdesk::domain::RateQuota;
use supportdesk::rate_limit::{Decision, Policy};
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

/// The findings of Spectral on `document` (a file named `docs/openapi.json` under `root`, so
/// that the overrides of `root`'s .spectral.yaml, which name that path, apply), one line each:
/// severity, rule, where, what. Spectral finds the OWASP ruleset the ruleset extends through
/// NODE_PATH: the node_modules its own command is in (deploy/local/setup's .tools/node).
fn spectral_findings(root: &Path) -> (Vec<String>, Vec<String>) {
    let spectral = tool("SPECTRAL_BIN");
    let node_modules: PathBuf = spectral
        .parent()
        .and_then(Path::parent)
        .expect("SPECTRAL_BIN is node_modules/.bin/spectral")
        .to_owned();
    let output = Command::new(&spectral)
        .args(["lint", "--format", "json", "--quiet", "docs/openapi.json"])
        .current_dir(root)
        .env("NODE_PATH", &node_modules)
        .output()
        .expect("run spectral");
    let said = String::from_utf8_lossy(&output.stdout);
    let findings: Vec<Value> = serde_json::from_str(said.trim()).unwrap_or_else(|_| {
        panic!(
            "spectral printed no JSON findings:\n{said}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let mut errors = Vec::new();
    let mut others = Vec::new();
    for finding in &findings {
        let path: Vec<String> = finding["path"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|segment| {
                segment
                    .as_str()
                    .map_or_else(|| segment.to_string(), str::to_owned)
            })
            .collect();
        let line = format!(
            "{} {}: {}",
            finding["code"].as_str().unwrap_or_default(),
            path.join(" > "),
            finding["message"].as_str().unwrap_or_default()
        );
        if finding["severity"] == 0 {
            errors.push(line);
        } else {
            others.push(line);
        }
    }
    (errors, others)
}

#[test]
fn spectral_with_the_owasp_ruleset_finds_no_error_in_the_document() {
    let (errors, others) = spectral_findings(&repository_root());
    assert!(
        errors.is_empty(),
        "Spectral (.spectral.yaml: spectral:oas and the OWASP API Security ruleset) finds {} \
         errors in docs/openapi.json. Fix them in src/wire/openapi/ and regenerate ({}), or, \
         where the document cannot truthfully say more, accept the finding in .spectral.yaml with \
         its reason (docs/openapi.md, \"The governance lint\"):\n{}\n(warnings: {})",
        errors.len(),
        openapi::REGENERATE,
        errors.join("\n"),
        if others.is_empty() {
            "none".to_owned()
        } else {
            others.join("\n")
        }
    );
}

/// The lint bites: the same ruleset on a copy of the document whose GetTicket answer no longer
/// declares its rate-limit fields reports exactly that answer.
#[test]
fn spectral_reports_an_answer_that_leaves_out_its_rate_limit_fields() {
    let root = tempfile::tempdir().expect("a temporary directory");
    std::fs::copy(
        repository_root().join(".spectral.yaml"),
        root.path().join(".spectral.yaml"),
    )
    .expect("copy .spectral.yaml");
    let mut document: Value = serde_json::from_str(&generated()).expect("JSON");
    let headers = document["paths"]["/v1/tickets/{id}"]["get"]["responses"]["200"]["headers"]
        .as_object_mut()
        .expect("GetTicket's 200 declares headers");
    assert!(
        headers.remove("RateLimit").is_some(),
        "GetTicket declares RateLimit"
    );
    std::fs::create_dir(root.path().join("docs")).expect("docs/");
    std::fs::write(
        root.path().join("docs/openapi.json"),
        serde_json::to_string_pretty(&document).expect("JSON"),
    )
    .expect("write the copy");
    let (errors, _) = spectral_findings(root.path());
    assert_eq!(
        errors,
        [
            "supportdesk:rate-limit paths > /v1/tickets/{id} > get > responses > 200 > headers: \
             A 2xx or 4xx answer the service counted should declare the RateLimit header."
        ]
    );
}

/// Every quota. The match stops compiling when a quota is added, so that it is listed here too.
fn every_policy() -> Vec<Policy> {
    use Policy::*;
    let listed = vec![
        Read,
        Write,
        Public,
        Login,
        LoginAttempt,
        LoginName,
        AuthFailure,
        Webhook,
        PasswordReset,
        PasswordResetAddress,
    ];
    for policy in &listed {
        match policy {
            Read | Write | Public | Login | LoginAttempt | LoginName | AuthFailure | Webhook
            | PasswordReset | PasswordResetAddress => {}
        }
    }
    listed
}

/// Whether `field` is `"<quota>";<first>=<digits>;<second>=<digits>` with a quota name of lower
/// case letters and hyphens: the pattern the document declares for it.
fn is_rate_limit_field(field: &str, first: &str, second: &str) -> bool {
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    let Some((name, numbers)) = field
        .strip_prefix('"')
        .and_then(|rest| rest.split_once("\";"))
    else {
        return false;
    };
    let Some((a, b)) = numbers.split_once(';') else {
        return false;
    };
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte == b'-')
        && a.strip_prefix(first)
            .and_then(|a| a.strip_prefix('='))
            .is_some_and(digits)
        && b.strip_prefix(second)
            .and_then(|b| b.strip_prefix('='))
            .is_some_and(digits)
}

#[test]
fn the_rate_limit_fields_the_service_writes_fit_the_headers_the_document_declares() {
    let document: Value = serde_json::from_str(&generated()).expect("JSON");
    let longest = |name: &str| {
        document["components"]["headers"][name]["schema"]["maxLength"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} declares a maxLength"))
    };
    let widest = Duration::from_secs(u64::MAX);
    for policy in every_policy() {
        let decision = Decision {
            allowed: true,
            policy,
            quota: RateQuota {
                count: u32::MAX,
                window: widest,
            },
            remaining: u32::MAX,
            retry_after: widest,
            reset: widest,
            decided: true,
        };
        for (name, field, first, second) in [
            ("RateLimit", decision.limit_header(), "r", "t"),
            ("RateLimit-Policy", decision.policy_header(), "q", "w"),
        ] {
            assert!(
                is_rate_limit_field(&field, first, second),
                "{name}: {field}"
            );
            assert!(
                field.len() as u64 <= longest(name),
                "{name}: {field} is longer than the document's maxLength"
            );
        }
    }
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
