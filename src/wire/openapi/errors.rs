//! The error side of each operation: the statuses docs/http-contract.md's contract table
//! documents for its RPC, each with the error schema, the headers answers carry, and what each
//! status means.

use super::*;

/// One row of the contract table: what it documents beside the descriptors.
#[derive(Debug, Clone, Default)]
pub(super) struct ContractRow {
    /// The error statuses and when, as written.
    pub(super) errors: String,
    /// The request headers the RPC reads, as written (`authorization, idempotency-key`).
    pub(super) headers_read: String,
}

pub(super) fn contract_rows(contract: &str) -> BTreeMap<String, ContractRow> {
    let table = contract
        .split("<!-- contract:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- contract:end -->").next())
        .unwrap_or_default();
    table
        .lines()
        .filter(|line| line.starts_with('|'))
        .skip(2)
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            Some((
                (*cells.get(1)?).to_owned(),
                ContractRow {
                    errors: (*cells.get(5)?).to_owned(),
                    headers_read: cells
                        .get(6)
                        .map(|cell| (*cell).to_owned())
                        .unwrap_or_default(),
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
            "RESOURCE_EXHAUSTED `RATE_LIMITED`: over a quota (`retry-after` says when to retry; \
             docs/rate-limits.md)"
        }
        431 => "RESOURCE_EXHAUSTED `HEADERS_TOO_LARGE` (Envoy): headers over 32 KiB",
        499 => "CANCELLED: the client's own `grpc-timeout` ran out at the service",
        500 => "INTERNAL (logged with the request id, answered generically)",
        503 => {
            "UNAVAILABLE: `DATABASE_UNAVAILABLE`, `REDIS_UNAVAILABLE` (service, with RetryInfo \
             and `retry-after`), `BACKEND_UNAVAILABLE` (Envoy)"
        }
        504 => "DEADLINE_EXCEEDED `DEADLINE_EXCEEDED`: no answer within the deadline",
        _ => "an error",
    }
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
        let mut success_headers = Map::new();
        success_headers.insert("x-request-id".to_owned(), header_ref("x-request-id"));
        success_headers.insert("ratelimit".to_owned(), header_ref("ratelimit"));
        success_headers.insert(
            "ratelimit-policy".to_owned(),
            header_ref("ratelimit-policy"),
        );
        if success == "201" {
            success_headers.insert("location".to_owned(), header_ref("location"));
        }
        if declared.idempotency != Idempotency::Ignored {
            success_headers.insert(
                "idempotent-replayed".to_owned(),
                header_ref("idempotent-replayed"),
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
        for (status, texts) in errors {
            let mut description = generic_description(status).to_owned();
            if !texts.is_empty() {
                description = texts.join("; ");
                if matches!(status, 400 | 401 | 404 | 429 | 503) {
                    description.push_str("; ");
                    description.push_str(generic_description(status));
                }
            }
            let mut headers = Map::new();
            headers.insert("x-request-id".to_owned(), header_ref("x-request-id"));
            if matches!(status, 429 | 503) {
                headers.insert("retry-after".to_owned(), header_ref("retry-after"));
            }
            if status == 401 {
                headers.insert(
                    "www-authenticate".to_owned(),
                    header_ref("www-authenticate"),
                );
            }
            if status == 429 {
                headers.insert("ratelimit".to_owned(), header_ref("ratelimit"));
                headers.insert(
                    "ratelimit-policy".to_owned(),
                    header_ref("ratelimit-policy"),
                );
            }
            responses.insert(
                status.to_string(),
                json!({
                    "description": description,
                    "headers": headers,
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/google.rpc.Status" } } },
                }),
            );
        }
        Ok(Json::Object(responses))
    }
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

/// The response headers of the contract (docs/http-contract.md, "Headers").
pub(super) fn headers() -> Json {
    json!({
        "x-request-id": {
            "description": "The request's id, on every log line of the request (the caller's when short and plain, else one made up).",
            "schema": { "type": "string" },
        },
        "location": {
            "description": "The path of what a create made.",
            "schema": { "type": "string" },
        },
        "retry-after": {
            "description": "Seconds to wait before retrying.",
            "schema": { "type": "string", "pattern": "^[0-9]+$" },
        },
        "ratelimit": {
            "description": "The remaining quota (IETF RateLimit fields: `\"read\";r=599;t=1`; docs/rate-limits.md).",
            "schema": { "type": "string" },
        },
        "ratelimit-policy": {
            "description": "The quota counted against (`\"read\";q=600;w=60`; docs/rate-limits.md).",
            "schema": { "type": "string" },
        },
        "www-authenticate": {
            "description": "The challenge of every 401: `Bearer realm=\"supportdesk\"`, with `, error=\"invalid_token\"` when the credentials sent were refused (RFC 6750; docs/http-contract.md).",
            "schema": { "type": "string", "pattern": "^Bearer realm=\"supportdesk\"" },
        },
        "idempotent-replayed": {
            "description": "`true` when the answer is the first outcome of the same idempotency key.",
            "schema": { "type": "string", "enum": ["true"] },
        },
    })
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
            "details": {
                "type": "array",
                "minItems": 1,
                "items": { "$ref": "#/components/schemas/google.protobuf.Any" },
            },
        },
    })
}
