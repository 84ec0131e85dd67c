//! `POST /emails`: authentication, a fault, validation, the idempotency key, then the email, in
//! that order.
//!
//! Authentication and a front-door fault (`server_error`, `rate_limit`, `error`) answer first and
//! store nothing. A body that fails validation stores nothing either, so the same key can then be
//! used with a corrected body. Then the key is claimed: a finished request with the same body gets
//! its stored answer, one with another body 409 `invalid_idempotent_request`, one still running
//! 409 `concurrent_idempotent_requests`. The email is accepted in a task of its own (after a
//! `latency` fault's delay), so a client that goes away mid-request leaves neither a key claimed
//! forever nor an email half-accepted; with `accept_then_drop`, the connection then closes without
//! an answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::{Extension, Router, routing};
use rand::Rng;
use serde_json::{Value, json};

use super::{AcceptedEmail, EmailFaultAction, EmailRequest, KeyEntry, KeyState, Shared};
use crate::ids::unix_now_millis;
use crate::server::{Abort, ConnectionControl};

/// The longest `Idempotency-Key` (Resend: 1 to 256 characters).
const MAX_KEY_CHARS: usize = 256;

/// The most recipients one email may have.
const MAX_RECIPIENTS: usize = 50;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route(
        "/emails",
        routing::post(send_email).fallback(method_not_allowed),
    )
}

/// An answer in Resend's error shape.
struct ApiError {
    status: u16,
    name: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: u16, name: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            name,
            message: message.into(),
        }
    }

    fn missing(field: &str) -> Self {
        Self::new(
            422,
            "missing_required_field",
            format!("Missing `{field}` field."),
        )
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(422, "validation_error", message)
    }

    fn body(&self) -> String {
        error_body(self.status, self.name, &self.message)
    }
}

fn error_body(status: u16, name: &str, message: &str) -> String {
    json!({"statusCode": status, "message": message, "name": name}).to_string()
}

fn response(status: u16, body: String, extra: &[(&'static str, String)]) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(*name, value);
        }
    }
    response
}

/// The fallback of every other path.
pub(super) async fn not_found() -> Response {
    response(
        404,
        error_body(404, "not_found", "The requested endpoint does not exist."),
        &[],
    )
}

async fn method_not_allowed() -> Response {
    response(
        405,
        error_body(
            405,
            "method_not_allowed",
            "Method is not allowed for the requested path.",
        ),
        &[],
    )
}

/// The email a valid body describes.
struct NewEmail {
    from: String,
    to: Vec<String>,
    subject: String,
    html: Option<String>,
    text: Option<String>,
    reply_to: Vec<String>,
    headers: HashMap<String, String>,
    tags: HashMap<String, String>,
}

async fn send_email(
    State(shared): State<Arc<Shared>>,
    Extension(control): Extension<ConnectionControl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received_at_unix_ms = u64::try_from(unix_now_millis()).unwrap_or(u64::MAX);
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let mut log = EmailRequest {
        received_at_unix_ms,
        idempotency_key: idempotency_key.clone(),
        traceparent: headers
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        status: None,
        replayed: false,
        fault: None,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    // Every early answer is logged with its status.
    let answer =
        |log: EmailRequest, status: u16, body: String, extra: &[(&'static str, String)]| {
            shared.book().requests.push(EmailRequest {
                status: Some(status),
                ..log
            });
            response(status, body, extra)
        };
    let refuse = |log: EmailRequest, error: ApiError| {
        let body = error.body();
        answer(log, error.status, body, &[])
    };

    let api_key = match bearer(&headers) {
        None => {
            return refuse(
                log,
                ApiError::new(
                    401,
                    "missing_api_key",
                    "Missing API key in the authorization header. Include the following header \
                     in the request: Authorization: Bearer YOUR_API_KEY",
                ),
            );
        }
        Some(key) if !shared.config.api_keys.iter().any(|known| *known == key) => {
            return refuse(
                log,
                ApiError::new(403, "invalid_api_key", "API key is invalid"),
            );
        }
        Some(key) => key.to_owned(),
    };

    let fault = shared.book().take_fault();
    log.fault = fault.as_ref().map(|action| action.kind().to_owned());
    let mut latency = Duration::ZERO;
    let mut drop_answer = false;
    match fault {
        None => {}
        Some(EmailFaultAction::ServerError { status }) => {
            return refuse(
                log,
                ApiError::new(status, "application_error", "An unexpected error occurred."),
            );
        }
        Some(EmailFaultAction::RateLimit { retry_after_secs }) => {
            let seconds = retry_after_secs.to_string();
            let body = error_body(
                429,
                "rate_limit_exceeded",
                "Too many requests. You can only make 2 requests per second.",
            );
            return answer(
                log,
                429,
                body,
                &[
                    ("retry-after", seconds.clone()),
                    ("ratelimit-limit", "2".to_owned()),
                    ("ratelimit-remaining", "0".to_owned()),
                    ("ratelimit-reset", seconds),
                ],
            );
        }
        Some(EmailFaultAction::Error {
            status,
            name,
            message,
        }) => {
            let body = error_body(status, &name, &message);
            return answer(log, status, body, &[]);
        }
        Some(EmailFaultAction::Latency { millis }) => latency = Duration::from_millis(millis),
        Some(EmailFaultAction::AcceptThenDrop) => drop_answer = true,
    }

    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        return refuse(
            log,
            ApiError::new(400, "validation_error", "The body is not valid JSON."),
        );
    };
    let email = match validate(&parsed) {
        Ok(email) => email,
        Err(error) => return refuse(log, error),
    };
    if let Some(key) = &idempotency_key
        && !(1..=MAX_KEY_CHARS).contains(&key.chars().count())
    {
        return refuse(
            log,
            ApiError::new(
                400,
                "invalid_idempotency_key",
                "The key must be between 1-256 chars.",
            ),
        );
    }

    // The claim.
    let scope = idempotency_key.clone().map(|key| (api_key, key));
    if let Some(scope) = &scope {
        let claim = shared
            .book()
            .claim(scope, &parsed, shared.config.idempotency_key_max_age);
        match claim {
            Claim::Fresh => {}
            Claim::Conflict(conflict) => return refuse(log, conflict),
            Claim::Replay { status, body } => {
                shared.book().requests.push(EmailRequest {
                    status: Some(status),
                    replayed: true,
                    ..log
                });
                return response(status, body, &[]);
            }
        }
    }

    // The acceptance, finished even if the client goes away.
    let accepting = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let id = new_email_id();
            let answer = json!({ "id": id }).to_string();
            let mut book = shared.book();
            book.emails.push(AcceptedEmail {
                id,
                from: email.from,
                to: email.to,
                subject: email.subject,
                html: email.html,
                text: email.text,
                reply_to: email.reply_to,
                headers: email.headers,
                tags: email.tags,
                idempotency_key: log.idempotency_key.clone(),
                created_at_unix_ms: u64::try_from(unix_now_millis()).unwrap_or(u64::MAX),
            });
            if let Some(entry) = scope.as_ref().and_then(|scope| book.keys.get_mut(scope)) {
                entry.state = KeyState::Saved {
                    status: 200,
                    body: answer.clone(),
                };
            }
            book.requests.push(EmailRequest {
                status: (!drop_answer).then_some(200),
                ..log
            });
            answer
        })
    };
    let Ok(answer) = accepting.await else {
        return response(
            500,
            error_body(500, "internal_server_error", "panicked"),
            &[],
        );
    };
    if drop_answer {
        return control.abort(Abort::Close).await;
    }
    response(200, answer, &[])
}

/// What an idempotency key allows a request.
enum Claim {
    /// A new key (or one kept past its age): the request runs, the key held meanwhile.
    Fresh,
    /// The key's finished request had the same body: its answer.
    Replay { status: u16, body: String },
    /// Another body under the key, or its first request still running.
    Conflict(ApiError),
}

impl super::Book {
    fn claim(&mut self, scope: &(String, String), body: &Value, max_age: Duration) -> Claim {
        match self.keys.get(scope) {
            Some(entry) if entry.created.elapsed() < max_age => {
                if entry.fingerprint != *body {
                    return Claim::Conflict(ApiError::new(
                        409,
                        "invalid_idempotent_request",
                        "Same idempotency key used with a different request payload.",
                    ));
                }
                match &entry.state {
                    KeyState::Running => Claim::Conflict(ApiError::new(
                        409,
                        "concurrent_idempotent_requests",
                        "Same idempotency key used while original request is still in progress.",
                    )),
                    KeyState::Saved { status, body } => Claim::Replay {
                        status: *status,
                        body: body.clone(),
                    },
                }
            }
            // None, or kept longer than a key lives: pruned, a fresh start.
            Some(_) | None => {
                self.keys.insert(
                    scope.clone(),
                    KeyEntry {
                        fingerprint: body.clone(),
                        state: KeyState::Running,
                        created: std::time::Instant::now(),
                    },
                );
                Claim::Fresh
            }
        }
    }
}

/// The key of `Authorization: Bearer <key>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let key = value.strip_prefix("Bearer ")?.trim();
    (!key.is_empty()).then_some(key)
}

/// The email `body` describes, or the first thing wrong with it, as Resend words it.
fn validate(body: &Value) -> Result<NewEmail, ApiError> {
    let Some(fields) = body.as_object() else {
        return Err(ApiError::new(
            400,
            "validation_error",
            "The body must be a JSON object.",
        ));
    };
    let required = |name: &str| match fields.get(name) {
        None | Some(Value::Null) => Err(ApiError::missing(name)),
        Some(Value::String(text)) if text.trim().is_empty() => Err(ApiError::missing(name)),
        Some(value) => Ok(value),
    };
    let Some(from) = required("from")?.as_str().filter(|from| is_mailbox(from)) else {
        return Err(ApiError::new(
            422,
            "invalid_from_address",
            "Invalid `from` field. The email address needs to follow the \
             `email@example.com` or `Name <email@example.com>` format.",
        ));
    };
    let from = from.to_owned();
    let to = addresses(required("to")?, "to")?;
    if to.is_empty() {
        return Err(ApiError::missing("to"));
    }
    if to.len() > MAX_RECIPIENTS {
        return Err(ApiError::invalid(format!(
            "Too many recipients in `to`: at most {MAX_RECIPIENTS}."
        )));
    }
    let Some(subject) = required("subject")?.as_str().map(str::to_owned) else {
        return Err(ApiError::invalid("The `subject` field must be a string."));
    };
    let optional_text = |name: &str| match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ApiError::invalid(format!(
            "The `{name}` field must be a string."
        ))),
    };
    let html = optional_text("html")?;
    let text = optional_text("text")?;
    if html.is_none() && text.is_none() {
        return Err(ApiError::missing("html` or `text"));
    }
    let reply_to = match fields.get("reply_to") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => addresses(value, "reply_to")?,
    };
    let headers = match fields.get("headers") {
        None | Some(Value::Null) => HashMap::new(),
        Some(Value::Object(headers)) => headers
            .iter()
            .map(|(name, value)| {
                value
                    .as_str()
                    .map(|value| (name.clone(), value.to_owned()))
                    .ok_or_else(|| {
                        ApiError::invalid(format!("The `headers.{name}` field must be a string."))
                    })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::invalid("The `headers` field must be an object.")),
    };
    // Resend's tags: `[{"name": ..., "value": ...}]`, given back in the events about the email.
    let tags = match fields.get("tags") {
        None | Some(Value::Null) => HashMap::new(),
        Some(Value::Array(tags)) => tags
            .iter()
            .map(|tag| match (tag.get("name"), tag.get("value")) {
                (Some(Value::String(name)), Some(Value::String(value))) => {
                    Ok((name.clone(), value.clone()))
                }
                _ => Err(ApiError::invalid(
                    "Each of `tags` must be an object with a string `name` and `value`.",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::invalid("The `tags` field must be an array.")),
    };
    Ok(NewEmail {
        from,
        to,
        subject,
        html,
        text,
        reply_to,
        headers,
        tags,
    })
}

/// A string or a list of strings, each `email@example.com` or `Name <email@example.com>`.
fn addresses(value: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    let invalid = || {
        ApiError::invalid(format!(
            "Invalid `{field}` field. The email address needs to follow the \
             `email@example.com` or `Name <email@example.com>` format."
        ))
    };
    let list: Vec<String> = if let Some(one) = value.as_str() {
        vec![one.to_owned()]
    } else if let Some(many) = value.as_array() {
        many.iter()
            .map(|one| one.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect::<Result<_, _>>()?
    } else {
        return Err(invalid());
    };
    if list.iter().all(|one| is_mailbox(one)) {
        Ok(list)
    } else {
        Err(invalid())
    }
}

/// `local@domain`, alone or inside `Name <...>`: one `@`, something either side, no space.
fn is_mailbox(text: &str) -> bool {
    let text = text.trim();
    let address = match (text.rfind('<'), text.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => text,
    };
    match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !address.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// A random UUID (version 4), the shape of Resend's email ids.
fn new_email_id() -> String {
    let mut bytes: [u8; 16] = rand::thread_rng().r#gen();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Value {
        json!({
            "from": "Support <support@example.com>",
            "to": ["\"Ann\" <ann@example.com>"],
            "subject": "Hello",
            "text": "hi",
        })
    }

    fn refusal(body: Value) -> (u16, &'static str, String) {
        let error = validate(&body).err().expect("refused");
        (error.status, error.name, error.message)
    }

    #[test]
    fn every_required_field_is_named_when_missing() {
        for field in ["from", "to", "subject"] {
            let mut body = valid();
            body.as_object_mut().unwrap().remove(field);
            assert_eq!(
                refusal(body),
                (
                    422,
                    "missing_required_field",
                    format!("Missing `{field}` field.")
                )
            );
        }
        let mut body = valid();
        body.as_object_mut().unwrap().remove("text");
        assert_eq!(refusal(body).1, "missing_required_field");
    }

    #[test]
    fn addresses_are_checked_and_a_single_recipient_may_be_a_string() {
        let mut body = valid();
        body["to"] = json!("ann@example.com");
        assert_eq!(validate(&body).ok().unwrap().to, ["ann@example.com"]);
        body["to"] = json!(["not an address"]);
        assert_eq!(refusal(body.clone()).1, "validation_error");
        body["to"] = json!(vec!["a@example.com"; 51]);
        assert_eq!(refusal(body.clone()).1, "validation_error");
        let mut body = valid();
        body["from"] = json!("nobody");
        assert_eq!(refusal(body).1, "invalid_from_address");
    }

    #[test]
    fn ids_look_like_uuids_and_differ() {
        let (a, b) = (new_email_id(), new_email_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
