//! docs/errors.md lists every ErrorInfo reason a client can receive, and each one is asserted by
//! some test; plus the tests of the reasons no other test needed.

use std::collections::BTreeSet;
use std::path::Path;

use reqwest::StatusCode;
use serde_json::Value;
use supportdesk::proto::v1;
use tonic::Code;

use super::envoy::Envoy;
use super::helpers::{TestApp, error_reason, free_port, repository_root, with_token};

/// The reasons of the table in docs/errors.md.
fn documented_reasons() -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(repository_root().join("docs/errors.md")).expect("docs/errors.md");
    let start = text.find("<!-- reasons:start -->").expect("reasons:start");
    let end = text.find("<!-- reasons:end -->").expect("reasons:end");
    text[start..end]
        .lines()
        .filter_map(|line| {
            let reason = line.trim().strip_prefix("| `")?.split('`').next()?;
            Some(reason.to_owned())
        })
        .collect()
}

fn rust_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// An UPPER_SNAKE_CASE word.
fn is_reason(word: &str) -> bool {
    word.len() > 3
        && word
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && word.starts_with(|c: char| c.is_ascii_uppercase())
}

/// The reasons the code can answer: every `reason: "X"` in src/ (and `const X: &str = "X"`), the
/// literals of the one
/// mapping in src/errors.rs, the ErrorInfo reasons of deploy/envoy/envoy.yaml (its JSON
/// mappers and its Lua filter).
fn reasons_in_the_source() -> BTreeSet<String> {
    let root = repository_root();
    let mut reasons = BTreeSet::new();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Only the code: unit tests may name reasons they only compare against.
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        let is_errors = file.ends_with("src/errors.rs");
        for (index, _) in code.match_indices('"') {
            let rest = &code[index + 1..];
            let Some(word) = rest.split('"').next() else {
                continue;
            };
            if !is_reason(word) {
                continue;
            }
            let before = code[..index].trim_end();
            let names_a_reason = before.ends_with("reason:")
                || before.ends_with("reason =")
                // `pub const PATH_BODY_MISMATCH: &str = "PATH_BODY_MISMATCH";`
                || before.ends_with(&format!("{word}: &str ="))
                || (before.ends_with(',') && code[..index].contains("invalid_field_reason("))
                || is_errors;
            if names_a_reason {
                reasons.insert(word.to_owned());
            }
        }
    }
    let envoy = std::fs::read_to_string(root.join("deploy/envoy/envoy.yaml")).unwrap();
    for line in envoy.lines() {
        if let Some(reason) = line.trim().strip_prefix("reason: ") {
            reasons.insert(reason.trim().to_owned());
        }
        for piece in line.split("\"reason\":\"").skip(1) {
            let word = piece.split('"').next().unwrap_or("");
            if is_reason(word) {
                reasons.insert(word.to_owned());
            }
        }
    }
    reasons
}

#[test]
fn docs_errors_md_lists_exactly_the_reasons_the_service_and_envoy_can_answer() {
    let documented = documented_reasons();
    let answered = reasons_in_the_source();
    let undocumented: Vec<_> = answered.difference(&documented).collect();
    let unanswerable: Vec<_> = documented.difference(&answered).collect();
    assert!(
        undocumented.is_empty() && unanswerable.is_empty(),
        "answered but not in docs/errors.md: {undocumented:?}; documented but never answered: {unanswerable:?}"
    );
}

#[test]
fn every_documented_reason_is_asserted_by_a_test() {
    let root = repository_root();
    let mut test_text = String::new();
    let mut files = Vec::new();
    rust_files(&root.join("tests"), &mut files);
    rust_files(&root.join("src"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        if file.starts_with(root.join("src")) {
            // Unit tests only.
            if let Some((_, tests)) = text.split_once("#[cfg(test)]") {
                test_text.push_str(tests);
            }
        } else {
            test_text.push_str(&text);
        }
    }
    let untested: Vec<String> = documented_reasons()
        .into_iter()
        .filter(|reason| !test_text.contains(&format!("\"{reason}\"")))
        .collect();
    assert!(untested.is_empty(), "no test asserts: {untested:?}");
}

#[tokio::test]
async fn an_unknown_user_or_api_key_is_not_found_with_its_own_reason() {
    let app = TestApp::spawn().await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let status = app
        .users
        .clone()
        .get_user(app.as_admin(v1::GetUserRequest {
            id: unknown.clone(),
        }))
        .await
        .expect_err("no such user");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(error_reason(&status), "USER_NOT_FOUND");

    let mut request = app.as_admin(v1::RevokeApiKeyRequest { id: unknown });
    request
        .metadata_mut()
        .insert("idempotency-key", "revoke-unknown-key".parse().unwrap());
    let status = app
        .api_keys
        .clone()
        .revoke_api_key(request)
        .await
        .expect_err("no such key");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(error_reason(&status), "API_KEY_NOT_FOUND");
}

#[tokio::test]
async fn an_api_key_may_not_do_what_only_people_do() {
    let app = TestApp::spawn().await;
    let mut request = app.as_admin(v1::CreateApiKeyRequest {
        api_key: Some(v1::ApiKey {
            name: "robot".to_owned(),
            roles: vec![v1::UserRole::Admin.into()],
            ..Default::default()
        }),
    });
    request
        .metadata_mut()
        .insert("idempotency-key", "robot-key".parse().unwrap());
    let created = app
        .api_keys
        .clone()
        .create_api_key(request)
        .await
        .expect("a key")
        .into_inner();
    let status = app
        .auth
        .clone()
        .logout_all(with_token(&created.secret, v1::LogoutAllRequest {}))
        .await
        .expect_err("a key has no sessions");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(error_reason(&status), "USER_REQUIRED");
}

#[tokio::test]
async fn envoy_answers_an_upgrade_and_an_unreachable_service_in_the_json_shape() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();
    // Envoy refuses what it does not proxy, here a WebSocket upgrade, in the same shape.
    let response = http
        .get(envoy.url("/v1/me"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 2);
    assert_eq!(body["details"][0]["reason"], "PROXY_ERROR", "{body}");

    // Nothing listens behind this one.
    let orphan = Envoy::start_in_front_of(free_port()).await;
    let response = http
        .get(orphan.url("/v1/me"))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 14);
    assert_eq!(
        body["details"][0]["reason"], "BACKEND_UNAVAILABLE",
        "{body}"
    );
}
