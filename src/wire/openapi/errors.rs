//! The answers of each operation: its success, and the error statuses docs/http-contract.md's
//! contract table documents for its RPC beside the ones every RPC can answer, each with the error
//! schema and what it means; and the response headers, with which answers carry which (the
//! rate-limit fields only where the service counted the request, `Retry-After` on 429 and 503,
//! the CORS headers wherever Envoy's CORS filter answers an allowed origin). Every RPC that reads
//! an idempotency key can also answer 409 `IDEMPOTENCY_KEY_IN_USE`, with `Retry-After`. An error status an
//! operation's row says nothing more about is one shared response (`components/responses`).

use super::*;

/// One row of the contract table: what it documents beside the descriptors.
#[derive(Debug, Clone, Default)]
pub(super) struct ContractRow {
    /// The error statuses and when, as written.
    pub(super) errors: String,
    /// The request headers the RPC reads, as written (`authorization, idempotency-key`).
    pub(super) headers_read: String,
    /// Why the RPC needs no credentials, for a public one (docs/http-contract.md, "Public RPCs").
    pub(super) public_because: Option<String>,
}

/// The rows between `begin` and `end` of `contract`, as their cells (the header rows skipped).
fn table_rows<'a>(contract: &'a str, begin: &str, end: &str) -> Vec<Vec<&'a str>> {
    let table = contract
        .split(begin)
        .nth(1)
        .and_then(|rest| rest.split(end).next())
        .unwrap_or_default();
    table
        .lines()
        .filter(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| line.split('|').map(str::trim).collect())
        .collect()
}

pub(super) fn contract_rows(contract: &str) -> BTreeMap<String, ContractRow> {
    let public: BTreeMap<&str, &str> =
        table_rows(contract, "<!-- public:begin -->", "<!-- public:end -->")
            .into_iter()
            .filter_map(|cells| Some((*cells.get(1)?, *cells.get(2)?)))
            .collect();
    table_rows(contract, "<!-- contract:begin -->", "<!-- contract:end -->")
        .into_iter()
        .filter_map(|cells| {
            let name = *cells.get(1)?;
            Some((
                name.to_owned(),
                ContractRow {
                    errors: (*cells.get(5)?).to_owned(),
                    headers_read: cells
                        .get(6)
                        .map(|cell| (*cell).to_owned())
                        .unwrap_or_default(),
                    public_because: public.get(name).map(|reason| (*reason).to_owned()),
                },
            ))
        })
        .collect()
}

/// The statuses a contract cell documents, each with the text that follows it up to the next
/// status: `401 MISSING_CREDENTIALS ...; 404 TICKET_NOT_FOUND` gives 401 and 404.
pub(super) fn documented_statuses(errors: &str) -> BTreeMap<u16, Vec<String>> {
    let bytes = errors.as_bytes();
    let mut starts = Vec::new();
    for index in 0..bytes.len().saturating_sub(4) {
        let at_boundary = index == 0
            || (index >= 2
                && bytes[index - 1] == b' '
                && matches!(bytes[index - 2], b';' | b'.' | b','));
        if at_boundary
            && matches!(bytes[index], b'4' | b'5')
            && bytes[index + 1].is_ascii_digit()
            && bytes[index + 2].is_ascii_digit()
            && bytes[index + 3] == b' '
            && bytes[index + 4].is_ascii_uppercase()
        {
            starts.push(index);
        }
    }
    let mut statuses: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for (position, start) in starts.iter().enumerate() {
        let end = starts.get(position + 1).copied().unwrap_or(errors.len());
        let text = errors[*start..end]
            .trim()
            .trim_end_matches([';', ',', '.'])
            .trim();
        if let Ok(status) = errors[*start..start + 3].parse() {
            statuses.entry(status).or_default().push(text.to_owned());
        }
    }
    statuses
}

/// The gRPC codes behind each HTTP status (Envoy's mapping, docs/http-contract.md).
pub(super) fn generic_description(status: u16) -> &'static str {
    match status {
        400 => {
            "INVALID_ARGUMENT `MALFORMED_REQUEST` (a body that is not JSON, a value of the wrong \
             type in the body, path or query), `UNKNOWN_FIELD` (a member of the JSON body the \
             request does not have), `UNKNOWN_QUERY_PARAMETER`, `PATH_BODY_MISMATCH` (the body or \
             query names another resource than the path)"
        }
        401 => {
            "UNAUTHENTICATED: `MISSING_CREDENTIALS`, `INVALID_CREDENTIALS`, `TOKEN_EXPIRED`, \
             `USER_DEACTIVATED`, `API_KEY_REVOKED`"
        }
        404 => "NOT_FOUND `UNKNOWN_PATH` (Envoy): a path variable that is empty or holds a `/`",
        408 => "DEADLINE_EXCEEDED `REQUEST_TIMEOUT` (Envoy): the request did not arrive in time",
        413 => "RESOURCE_EXHAUSTED `REQUEST_TOO_LARGE` (Envoy): a body over 1 MiB",
        415 => {
            "INVALID_ARGUMENT `UNSUPPORTED_MEDIA_TYPE` (Envoy): a body sent with another \
             content type than `application/json` (or none); `accept-post` / `accept-patch` name \
             the one accepted"
        }
        429 => {
            "RESOURCE_EXHAUSTED `RATE_LIMITED`: over a quota (RetryInfo and `Retry-After` say \
             when to retry; docs/rate-limits.md)"
        }
        431 => "RESOURCE_EXHAUSTED `HEADERS_TOO_LARGE` (Envoy): headers over 32 KiB",
        499 => "CANCELLED: the client's own `grpc-timeout` ran out at the service",
        500 => "INTERNAL (logged with the request id, answered generically)",
        503 => {
            "UNAVAILABLE: `DATABASE_UNAVAILABLE`, `REDIS_UNAVAILABLE` (service, with RetryInfo \
             and `Retry-After`), `BACKEND_UNAVAILABLE` (Envoy)"
        }
        504 => "DEADLINE_EXCEEDED `DEADLINE_EXCEEDED`: no answer within the deadline",
        _ => "an error",
    }
}

/// Whether an answer of `status` can come from the service after admission counted the request,
/// and so carry the rate-limit fields ([`crate::middleware`]'s order: admission adds them to the
/// answers of everything below it). Envoy answers 408, 413, 415 and 431 itself; 499 and the
/// generic 504 come from layers above admission (or Envoy); admission refuses a credential of an
/// RPC that needs one before counting anything, so that RPC's 401 never carries them; the generic
/// 404 is Envoy's `UNKNOWN_PATH`, and a documented one the service's.
pub(super) fn counted(status: u16, access: Access, documented: bool) -> bool {
    match status {
        408 | 413 | 415 | 431 | 499 => false,
        401 => access == Access::Public,
        404 | 504 => documented,
        _ => true,
    }
}

/// Whether an error of `status` may be the stored outcome of an idempotency key, answered again
/// with `Idempotent-Replayed` (docs/idempotency.md: NOT_FOUND, FAILED_PRECONDITION, ABORTED,
/// ALREADY_EXISTS, INVALID_ARGUMENT and PERMISSION_DENIED are stored; a declined card is 402).
fn replayable(status: u16) -> bool {
    matches!(status, 400 | 402 | 403 | 404 | 409)
}

/// The component name of the answer every operation gives with `status` when its contract row
/// says nothing more about it: one shared response instead of a copy in every operation.
fn shared_response_name(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        404 => "UnknownPath",
        408 => "RequestTimeout",
        413 => "ContentTooLarge",
        415 => "UnsupportedMediaType",
        429 => "TooManyRequests",
        431 => "RequestHeaderFieldsTooLarge",
        499 => "ClientClosedRequest",
        500 => "InternalServerError",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => return None,
    })
}

impl Generator {
    pub(super) fn responses(
        &mut self,
        method: &MethodDescriptor,
        declared: &Method,
        row: &ContractRow,
        binding: &Binding,
        has_variables: bool,
        takes_json: bool,
    ) -> Result<Json, String> {
        let mut responses = Map::new();
        let success = declared.http_success.status_code().unwrap_or("200");
        let mut success_headers = answer_headers(&self.cors);
        success_headers.extend(rate_limit_headers());
        if success == "201" {
            success_headers.insert(LOCATION.to_owned(), header_ref(LOCATION));
        }
        if declared.idempotency != Idempotency::Ignored {
            success_headers.insert(
                IDEMPOTENT_REPLAYED.to_owned(),
                header_ref(IDEMPOTENT_REPLAYED),
            );
        }
        let output = method.output();
        let mut success_response = Map::new();
        success_response.insert(
            "description".to_owned(),
            json!(format!(
                "{}: {}",
                reason_phrase(success),
                output.full_name()
            )),
        );
        success_response.insert("headers".to_owned(), Json::Object(success_headers));
        if success != "204" {
            let content = if is_http_body(&output) {
                json!({ "*/*": { "schema": { "type": "string", "format": "binary" } } })
            } else if method.is_server_streaming() {
                // One JSON object a line (Envoy's `stream_newline_delimited`), typed by the
                // service's `x-http-content-type` (deploy/envoy/envoy.yaml).
                json!({ "application/x-ndjson": {
                    "schema": self.message_ref(&output),
                    "x-item-per-line": true,
                } })
            } else if binding.response_body.is_empty() {
                json!({ "application/json": { "schema": self.message_ref(&output) } })
            } else {
                let field = output
                    .get_field_by_name(&binding.response_body)
                    .ok_or_else(|| {
                        format!(
                            "response_body `{}` names no response field",
                            binding.response_body
                        )
                    })?;
                json!({ "application/json": { "schema": self.field_schema(&field) } })
            };
            success_response.insert("content".to_owned(), content);
        }
        responses.insert(success.to_owned(), Json::Object(success_response));

        let mut errors: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        for status in [400, 408, 413, 431, 499, 500, 503, 504] {
            errors.entry(status).or_default();
        }
        if has_variables {
            errors.entry(404).or_default();
        }
        if takes_json {
            errors.entry(415).or_default();
        }
        match declared.access {
            // Every public RPC counts against a quota of the client IP.
            Access::Public => {
                errors.entry(429).or_default();
            }
            Access::Authenticated => {
                errors.entry(401).or_default();
                errors.entry(429).or_default();
            }
        }
        for (status, texts) in documented_statuses(&row.errors) {
            errors.entry(status).or_default().extend(texts);
        }
        if declared.idempotency != Idempotency::Ignored {
            let conflicts = errors.entry(409).or_default();
            if !conflicts.iter().any(|text| text.contains(KEY_IN_USE)) {
                conflicts.push(format!(
                    "409 {KEY_IN_USE} (a retry with the same key while the first request is \
                     still running; RetryInfo and `Retry-After` say when to retry with that key; \
                     docs/idempotency.md)"
                ));
            }
        }
        for (status, texts) in errors {
            let documented = !texts.is_empty();
            if !documented && let Some(name) = shared_response_name(status) {
                // Only the answers of Envoy and of the layers every RPC passes: the same for
                // every operation, whatever it declares.
                let shared = error_response(
                    status,
                    generic_description(status).to_owned(),
                    counted(status, Access::Authenticated, false),
                    false,
                    false,
                    &self.cors,
                );
                self.responses.insert(name.to_owned(), shared);
                responses.insert(
                    status.to_string(),
                    json!({ "$ref": format!("#/components/responses/{name}") }),
                );
                continue;
            }
            let mut description = generic_description(status).to_owned();
            if documented {
                description = texts.join("; ");
                if matches!(status, 400 | 401 | 404 | 429 | 503) {
                    description.push_str("; ");
                    description.push_str(generic_description(status));
                }
            }
            responses.insert(
                status.to_string(),
                error_response(
                    status,
                    description,
                    counted(status, declared.access, documented),
                    documented
                        && declared.idempotency != Idempotency::Ignored
                        && replayable(status),
                    texts.iter().any(|text| text.contains(KEY_IN_USE)),
                    &self.cors,
                ),
            );
        }
        Ok(Json::Object(responses))
    }
}

/// The reason of the conflict every RPC that reads an idempotency key can answer.
const KEY_IN_USE: &str = "IDEMPOTENCY_KEY_IN_USE";

/// An error answer of `status`: its description, the `google.rpc.Status` body, and the headers
/// it can carry (`Retry-After` with every RetryInfo: on 429, 503 and `retry_later` answers).
fn error_response(
    status: u16,
    description: String,
    counted: bool,
    replayed: bool,
    retry_later: bool,
    cors: &Cors,
) -> Json {
    let mut response = Map::new();
    response.insert("description".to_owned(), json!(description));
    // Envoy refuses headers over its limit before it has read them: no request id, no Origin.
    if status != 431 {
        let mut headers = answer_headers(cors);
        if counted {
            headers.extend(rate_limit_headers());
        }
        if retry_later || matches!(status, 429 | 503) {
            headers.insert(RETRY_AFTER.to_owned(), header_ref(RETRY_AFTER));
        }
        if status == 401 {
            headers.insert(WWW_AUTHENTICATE.to_owned(), header_ref(WWW_AUTHENTICATE));
        }
        if replayed {
            headers.insert(
                IDEMPOTENT_REPLAYED.to_owned(),
                header_ref(IDEMPOTENT_REPLAYED),
            );
        }
        response.insert("headers".to_owned(), Json::Object(headers));
    }
    response.insert(
        "content".to_owned(),
        json!({ "application/json": { "schema": { "$ref": "#/components/schemas/google.rpc.Status" } } }),
    );
    Json::Object(response)
}

pub(super) fn reason_phrase(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted",
        "204" => "No Content",
        _ => "Success",
    }
}

pub(super) fn header_ref(name: &str) -> Json {
    json!({ "$ref": format!("#/components/headers/{name}") })
}

// The response headers, as HTTP/1.1 spells them (HTTP/2 sends them in lower case; names are
// case-insensitive either way). The rate-limit fields are named as the IETF draft does.
const REQUEST_ID: &str = "X-Request-Id";
const RATE_LIMIT: &str = "RateLimit";
const RATE_LIMIT_POLICY: &str = "RateLimit-Policy";
const RETRY_AFTER: &str = "Retry-After";
const LOCATION: &str = "Location";
const WWW_AUTHENTICATE: &str = "WWW-Authenticate";
const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";
const ALLOW_ORIGIN: &str = "Access-Control-Allow-Origin";
const ALLOW_CREDENTIALS: &str = "Access-Control-Allow-Credentials";
const EXPOSE_HEADERS: &str = "Access-Control-Expose-Headers";

/// The headers of every answer that got past Envoy's header limit: the request id, and the CORS
/// headers Envoy adds for an allowed origin.
fn answer_headers(cors: &Cors) -> Map<String, Json> {
    [REQUEST_ID, ALLOW_ORIGIN, EXPOSE_HEADERS]
        .into_iter()
        .chain(cors.allow_credentials.then_some(ALLOW_CREDENTIALS))
        .map(|name| (name.to_owned(), header_ref(name)))
        .collect()
}

/// The IETF rate-limit fields of an answer the service counted.
fn rate_limit_headers() -> Map<String, Json> {
    [RATE_LIMIT, RATE_LIMIT_POLICY]
        .into_iter()
        .map(|name| (name.to_owned(), header_ref(name)))
        .collect()
}

/// The longest `RateLimit` or `RateLimit-Policy` field the service writes: `"<quota>";r=<u32>;
/// t=<u64>` (or `q=`/`w=`), with a quota name of at most 24 characters (the longest,
/// `password-reset-address`, has 22; `rest_contract::document` holds every quota's fields to the
/// document).
const RATE_LIMIT_FIELD_MAX_LENGTH: usize = 2 + 24 + 3 + 10 + 3 + 20;

/// The CORS settings of deploy/envoy/envoy.yaml's `CorsPolicy` the answers show: whether
/// credentials are allowed, and the response headers a page may read.
pub(super) struct Cors {
    pub(super) allow_credentials: bool,
    pub(super) expose_headers: String,
}

impl Cors {
    /// The policy in `envoy` (deploy/envoy/envoy.yaml), read from its one `CorsPolicy`.
    pub(super) fn of(envoy: &str) -> Result<Self, OpenApiError> {
        let setting = |name: &str| {
            let mut found = envoy
                .lines()
                .filter_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
                .map(|value| value.trim().trim_matches('"').to_owned());
            match (found.next(), found.next()) {
                (Some(value), None) => Ok(value),
                _ => Err(OpenApiError(format!(
                    "deploy/envoy/envoy.yaml does not set `{name}` exactly once"
                ))),
            }
        };
        Ok(Self {
            allow_credentials: setting("allow_credentials")? == "true",
            expose_headers: setting("expose_headers")?,
        })
    }
}

/// The response headers of the contract (docs/http-contract.md, "Headers", "CORS").
pub(super) fn headers(cors: &Cors) -> Json {
    let cors_note = "Present on every answer to a browser request whose `Origin` is one of the \
        deployment's `CORS_ALLOWED_ORIGINS` (Envoy's CORS filter; docs/http-contract.md, \
        \"CORS\"), absent otherwise";
    let mut headers = json!({
        REQUEST_ID: {
            "description": "The request's id, on every log line of the request: the caller's when \
                at most 128 characters of `[A-Za-z0-9._:-]`, else a UUID the service or Envoy \
                made up. On a refusal Envoy answers before its Lua filter has dropped a caller's \
                id that is not plain (413, 408), the caller's id as sent.",
            "schema": { "type": "string", "minLength": 1 },
        },
        LOCATION: {
            "description": "The path of what a create made (`/v1/tickets/<id>`), or of where it \
                is read (docs/http-contract.md, the contract table).",
            "schema": { "type": "string", "pattern": "^/v1/[A-Za-z0-9/_.-]+$", "maxLength": 64 },
        },
        RETRY_AFTER: {
            "description": "Whole seconds to wait before retrying (at least 1): sent with every \
                answer whose body carries a RetryInfo, the same delay rounded up (every 429 of \
                the service, and its 503s that say when to come back). Envoy's own \
                `BACKEND_UNAVAILABLE` has none.",
            "schema": { "type": "string", "pattern": "^[1-9][0-9]*$", "maxLength": 20 },
        },
        RATE_LIMIT: {
            "description": "The quota left (IETF RateLimit fields: `\"read\";r=599;t=1`, `r` \
                requests left, `t` seconds until the quota is whole; docs/rate-limits.md), on \
                every answer the service gives after admission counted the request. Absent when \
                Redis could not decide and the request was let through \
                (`RATE_LIMIT_ON_REDIS_FAILURE=open`), and on the refusals that come before \
                counting: a credential that does not authenticate, a role the RPC does not \
                allow.",
            "schema": {
                "type": "string",
                "pattern": "^\"[a-z][a-z-]*\";r=[0-9]+;t=[0-9]+$",
                "maxLength": RATE_LIMIT_FIELD_MAX_LENGTH,
            },
        },
        RATE_LIMIT_POLICY: {
            "description": "The quota counted against (`\"read\";q=600;w=60`: `q` requests per \
                `w` seconds; docs/rate-limits.md); sent with `RateLimit`.",
            "schema": {
                "type": "string",
                "pattern": "^\"[a-z][a-z-]*\";q=[0-9]+;w=[0-9]+$",
                "maxLength": RATE_LIMIT_FIELD_MAX_LENGTH,
            },
        },
        WWW_AUTHENTICATE: {
            "description": "The challenge of every 401: `Bearer realm=\"supportdesk\"`, with `, \
                error=\"invalid_token\"` when the credentials sent were refused (RFC 6750; \
                docs/http-contract.md).",
            "schema": {
                "type": "string",
                "enum": [
                    "Bearer realm=\"supportdesk\"",
                    "Bearer realm=\"supportdesk\", error=\"invalid_token\"",
                ],
            },
        },
        IDEMPOTENT_REPLAYED: {
            "description": "`true` when the answer is the stored outcome of an earlier request \
                with the same idempotency key (docs/idempotency.md).",
            "schema": { "type": "string", "enum": ["true"] },
        },
        ALLOW_ORIGIN: {
            "description": format!("The request's `Origin`, allowed. {cors_note}."),
            "schema": { "type": "string", "format": "uri", "pattern": "^https?://[^/?#]+$" },
        },
        EXPOSE_HEADERS: {
            "description": format!("The response headers a page may read. {cors_note}."),
            "schema": { "type": "string", "enum": [cors.expose_headers] },
        },
    });
    if cors.allow_credentials {
        headers[ALLOW_CREDENTIALS] = json!({
            "description": format!("Browsers may send credentials. {cors_note}."),
            "schema": { "type": "string", "enum": ["true"] },
        });
    }
    headers
}

/// `google.rpc.Status` as the transcoder and Envoy's own replies print it.
pub(super) fn status_schema() -> Json {
    json!({
        "type": "object",
        "description": "Every error, whoever answers it: the gRPC code as a number, a message \
            for people, and details for programs: always a google.rpc.ErrorInfo (domain \
            `supportdesk`, an UPPER_SNAKE_CASE reason; docs/errors.md), and BadRequest, \
            PreconditionFailure, ResourceInfo or RetryInfo where they apply.",
        "required": ["code", "message", "details"],
        "properties": {
            "code": { "type": "integer", "minimum": 1, "maximum": 16, "description": "The google.rpc.Code." },
            "message": { "type": "string" },
            // At most one of each of google.rpc's ten detail types (tonic's ErrorDetails, and
            // Envoy's replies: ErrorInfo and a BadRequest).
            "details": {
                "type": "array",
                "minItems": 1,
                "maxItems": 10,
                "items": { "$ref": "#/components/schemas/google.protobuf.Any" },
            },
        },
    })
}
