//! The OpenAPI 3.1 document of the REST API, generated from the service's own descriptor set:
//! every `google.api.http` rule (and its `additional_bindings`) of every RPC, with the proto3 JSON
//! mapping exactly as Envoy's transcoder applies it, the success status and idempotency of the
//! method table ([`crate::wire::methods`]), and the error statuses of docs/http-contract.md's
//! contract table. `supportdesk openapi` writes it; `docs/openapi.json` is its output, checked in
//! and served by Envoy at `GET /v1/openapi.json` (docs/openapi.md). Nothing here names an RPC: a
//! new RPC appears in the document when it has its `google.api.http` rule, its
//! `(supportdesk.v1.method)` declaration and its row in the contract table.
//!
//! How the transcoder's JSON is described (docs/http-contract.md, "JSON"):
//! - field names are the lowerCamelCase `json_name`s; 64-bit integers are strings; enums are
//!   their value names; `Timestamp` is an RFC 3339 string, `Duration` a decimal of seconds ending
//!   in `s`, `FieldMask` one comma-separated string of lowerCamelCase paths; wrappers are their
//!   value (or `null`), `Struct` any object, `Value` any JSON, `Any` an object with `@type`;
//! - a `google.api.HttpBody` request body is the raw request bytes of any content type;
//! - on a rule without `body: "*"`, every request field that is neither in the path nor the body
//!   is a query parameter (fields of nested messages as dotted names: `filter.status`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, ExtensionDescriptor, FieldDescriptor, Kind,
    MessageDescriptor, MethodDescriptor, Value,
};
use serde_json::{Map, Value as Json, json};

use crate::wire::methods::{API_PACKAGE, Access, Idempotency, Method, MethodTable};
use crate::wire::proto;

/// The contract table the error statuses and extra headers of each RPC are read from.
const CONTRACT: &str = include_str!("../../docs/http-contract.md");

/// The command that writes the checked-in document (named by the test that finds it stale).
pub const REGENERATE: &str = "cargo run --quiet -- openapi --out docs/openapi.json";

/// Why the document cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenApiError(String);

impl fmt::Display for OpenApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenApiError {}

/// The document of this build, as `docs/openapi.json` holds it: pretty JSON and a final newline.
pub fn render() -> Result<String, OpenApiError> {
    let table = MethodTable::get().map_err(|error| OpenApiError(error.to_string()))?;
    let document = document(proto::FILE_DESCRIPTOR_SET, table, CONTRACT)?;
    let mut text = serde_json::to_string_pretty(&document)
        .map_err(|error| OpenApiError(format!("cannot print the document: {error}")))?;
    text.push('\n');
    Ok(text)
}

/// The document of the API in the descriptor set `api`, whose RPCs `table` declares and
/// `contract` (docs/http-contract.md) lists.
pub fn document(api: &[u8], table: &MethodTable, contract: &str) -> Result<Json, OpenApiError> {
    let pool = DescriptorPool::decode(api)
        .map_err(|error| OpenApiError(format!("the descriptor set does not decode: {error}")))?;
    let http = pool
        .get_extension_by_name("google.api.http")
        .ok_or_else(|| OpenApiError("the descriptor set lacks google.api.http".to_owned()))?;
    let rows = contract_rows(contract);
    let mut generator = Generator {
        behavior: pool.get_extension_by_name("google.api.field_behavior"),
        schemas: BTreeMap::new(),
        comments: Comments::default(),
    };
    let mut paths: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    let mut tags = Vec::new();
    let mut problems = Vec::new();
    // The API's services, and the vendored ones it serves (google.longrunning.Operations).
    let served = table.api_services();
    let mut services: Vec<_> = pool
        .services()
        .filter(|service| served.contains(&service.full_name()))
        .collect();
    services.sort_by(|a, b| a.full_name().cmp(b.full_name()));
    for service in services {
        tags.push(json!({
            "name": service.name(),
            "description": generator.comments.of(service.parent_file().file_descriptor_proto(), service.path()),
        }));
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            let Some(declared) = table.lookup(&path) else {
                problems.push(format!("{path}: not in the method table"));
                continue;
            };
            // The contract table names the API's RPCs by service and a vendored one in full.
            let key = if service.package_name() == API_PACKAGE {
                format!("{}.{}", service.name(), method.name())
            } else {
                method.full_name().to_owned()
            };
            let Some(row) = rows.get(&key) else {
                problems.push(format!(
                    "{key}: no row in docs/http-contract.md's contract table"
                ));
                continue;
            };
            let options = method.options();
            if !options.has_extension(&http) {
                continue;
            }
            let Value::Message(rule) = options.get_extension(&http).into_owned() else {
                problems.push(format!("{key}: google.api.http is not a message"));
                continue;
            };
            for (number, binding) in bindings(rule).into_iter().enumerate() {
                let operation_id = if number == 0 {
                    format!("{}_{}", service.name(), method.name())
                } else {
                    format!("{}_{}_{}", service.name(), method.name(), number + 1)
                };
                match generator.operation(&method, declared, row, &binding, operation_id) {
                    Ok((openapi_path, operation)) => {
                        let entry = paths.entry(openapi_path.clone()).or_default();
                        let verb = binding.http_method.to_ascii_lowercase();
                        if entry.insert(verb, operation).is_some() {
                            problems.push(format!(
                                "{key}: {} {openapi_path} is bound twice",
                                binding.http_method
                            ));
                        }
                    }
                    Err(problem) => problems.push(format!("{key}: {problem}")),
                }
            }
        }
    }
    let paths = merge_equivalent_paths(paths, &mut problems);
    if !problems.is_empty() {
        return Err(OpenApiError(format!(
            "cannot describe the REST API: {}",
            problems.join("; ")
        )));
    }
    let mut schemas = Map::new();
    schemas.insert("google.rpc.Status".to_owned(), status_schema());
    schemas.insert("google.protobuf.Any".to_owned(), any_schema());
    for (name, schema) in std::mem::take(&mut generator.schemas) {
        schemas.insert(name, schema);
    }
    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "supportdesk REST API",
            "version": "v1",
            "description": "The REST/JSON face of supportdesk's gRPC API, as Envoy's gRPC-JSON \
                transcoder serves it. Generated from the protobuf descriptors by `supportdesk \
                openapi` (never edit it by hand); the conventions behind it (statuses, errors, \
                headers, CORS) are in docs/http-contract.md.",
        },
        "servers": [{ "url": "http://127.0.0.1:8080", "description": "deploy/local/run's Envoy" }],
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "accessToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "`authorization: Bearer <access token>`: the access token of \
                        AuthService.Login or AuthService.RefreshToken (docs/identity.md).",
                },
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "sd_live_...",
                    "description": "`authorization: Bearer sd_live_...`: an API key of \
                        ApiKeyService.CreateApiKey, acting with its roles (docs/identity.md).",
                },
            },
            "headers": headers(),
        },
    }))
}

/// One row of the contract table: what it documents beside the descriptors.
#[derive(Debug, Clone, Default)]
struct ContractRow {
    /// The error statuses and when, as written.
    errors: String,
    /// The request headers the RPC reads, as written (`authorization, idempotency-key`).
    headers_read: String,
}

fn contract_rows(contract: &str) -> BTreeMap<String, ContractRow> {
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
fn documented_statuses(errors: &str) -> BTreeMap<u16, Vec<String>> {
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

/// One `google.api.http` binding.
#[derive(Debug, Clone)]
struct Binding {
    http_method: String,
    template: String,
    body: String,
    response_body: String,
}

/// The rule and its `additional_bindings`, in order.
fn bindings(rule: DynamicMessage) -> Vec<Binding> {
    let text = |message: &DynamicMessage, name: &str| -> Option<String> {
        message
            .get_field_by_name(name)?
            .as_str()
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    let mut found = Vec::new();
    let mut rules = vec![rule];
    let mut index = 0;
    while index < rules.len() {
        let rule = rules[index].clone();
        index += 1;
        let pattern = ["get", "put", "post", "delete", "patch"]
            .into_iter()
            .find_map(|verb| text(&rule, verb).map(|path| (verb.to_ascii_uppercase(), path)))
            .or_else(|| {
                let custom = rule.get_field_by_name("custom")?;
                let custom = custom.as_message()?;
                Some((text(custom, "kind")?, text(custom, "path")?))
            });
        if let Some((http_method, template)) = pattern {
            found.push(Binding {
                http_method,
                template,
                body: text(&rule, "body").unwrap_or_default(),
                response_body: text(&rule, "response_body").unwrap_or_default(),
            });
        }
        if let Some(more) = rule.get_field_by_name("additional_bindings")
            && let Value::List(more) = more.as_ref()
        {
            rules.extend(more.iter().filter_map(|value| value.as_message().cloned()));
        }
    }
    found
}

/// A path variable: its field path, and, unless its pattern is literal only, whether it may span
/// segments and the literal segments its pattern starts with.
type PathVariable = (String, Option<(bool, String)>);

/// A path template as OpenAPI writes it (`/v1/tickets/{ticket_id}` for
/// `/v1/tickets/{ticket.id}`), and its variables (field paths) with
/// whether each may span segments (`{name=shelves/*/books/*}`), or `None` for a variable whose
/// pattern is literal only (`{name=operations}`: the path is `/v1/operations` and the field is
/// set by the path, not a parameter). A pattern's leading literal segments stay in the path
/// (`{name=operations/**}` is `operations/{name}`), and are returned with the variable: the
/// field's value is them, `/`, then the parameter.
fn openapi_path(template: &str) -> (String, Vec<PathVariable>) {
    let mut path = String::new();
    let mut variables = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let inner = &rest[open + 1..open + close];
        let (field, pattern) = inner.split_once('=').unwrap_or((inner, "*"));
        let segments: Vec<&str> = pattern.split('/').collect();
        let literal = segments
            .iter()
            .take_while(|segment| !segment.contains('*'))
            .count();
        path.push_str(&segments[..literal].join("/"));
        let wildcards = &segments[literal..];
        if wildcards.is_empty() {
            variables.push((field.to_owned(), None));
        } else {
            if literal > 0 {
                path.push('/');
            }
            path.push('{');
            path.push_str(&parameter_name(field));
            path.push('}');
            variables.push((
                field.to_owned(),
                Some((wildcards != ["*"], segments[..literal].join("/"))),
            ));
        }
        rest = &rest[open + close + 1..];
    }
    path.push_str(rest);
    (path, variables)
}

/// The OpenAPI name of a path variable: its field path with `_` for `.` (`ticket.id` is
/// `ticket_id`), as tools read `{a.b}` in a path as an attribute of `a`. The name is not on the
/// wire; the parameter's description names the field.
fn parameter_name(field_path: &str) -> String {
    field_path.replace('.', "_")
}

/// A path key's shape (its variables written `{}`) and its variables' names in order:
/// `/v1/tickets/{ticket_id}` is `/v1/tickets/{}` with `ticket_id`.
fn path_shape(path: &str) -> (String, Vec<String>) {
    let mut shape = String::new();
    let mut names = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        shape.push_str(&rest[..=open]);
        shape.push('}');
        names.push(rest[open + 1..open + close].to_owned());
        rest = &rest[open + close + 1..];
    }
    shape.push_str(rest);
    (shape, names)
}

/// The path keys OpenAPI reads as one path merged into one key holding all their operations.
/// Rules of one resource may name its variable differently (`/v1/tickets/{id}` for GetTicket,
/// `/v1/tickets/{ticket.id}` for UpdateTicket, whose id sits in the body's message), which gives
/// two keys OpenAPI calls identical and tools read as two resources (schemathesis's
/// `allow_header_conformance` finds each `Allow` missing the other key's methods). Each
/// variable of a shape takes the shortest of the names its rules give it (then the first in
/// order: `id` over `ticket_id`); a parameter renamed so says in its description which field it
/// fills, as the name no longer does. The name is not on the wire: Envoy binds the field by the
/// rule, whatever the document calls the segment.
fn merge_equivalent_paths(
    paths: BTreeMap<String, Map<String, Json>>,
    problems: &mut Vec<String>,
) -> BTreeMap<String, Map<String, Json>> {
    let mut canonical: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in paths.keys() {
        let (shape, names) = path_shape(path);
        let chosen = canonical.entry(shape).or_insert_with(|| names.clone());
        for (best, name) in chosen.iter_mut().zip(names) {
            if (name.len(), &name) < (best.len(), &*best) {
                *best = name;
            }
        }
    }
    let mut merged: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    for (path, operations) in paths {
        let (shape, names) = path_shape(&path);
        let chosen = &canonical[&shape];
        let mut pieces = shape.split("{}");
        let mut key = pieces.next().unwrap_or_default().to_owned();
        for (name, piece) in chosen.iter().zip(pieces) {
            key.push('{');
            key.push_str(name);
            key.push('}');
            key.push_str(piece);
        }
        let entry = merged.entry(key.clone()).or_default();
        for (verb, mut operation) in operations {
            rename_path_parameters(&mut operation, &names, chosen);
            if let Some(problem) = duplicate_parameter(&operation) {
                problems.push(format!("{} {key}: {problem}", verb.to_ascii_uppercase()));
            }
            if entry.insert(verb.clone(), operation).is_some() {
                problems.push(format!(
                    "{} {key} is bound twice (its rules differ only in variable names)",
                    verb.to_ascii_uppercase()
                ));
            }
        }
    }
    merged
}

/// Renames an operation's path parameters from `from` to `to` (the same positions), saying in
/// the description of a renamed one the field it fills.
fn rename_path_parameters(operation: &mut Json, from: &[String], to: &[String]) {
    let Some(parameters) = operation.get_mut("parameters").and_then(Json::as_array_mut) else {
        return;
    };
    for parameter in parameters {
        if parameter["in"] != "path" {
            continue;
        }
        let Some(position) = from.iter().position(|name| parameter["name"] == **name) else {
            continue;
        };
        if from[position] == to[position] {
            continue;
        }
        // A dotted field's description already starts with its field path (`ticket.id`).
        let description = parameter["description"].as_str().unwrap_or_default();
        if !description.starts_with('`') {
            parameter["description"] = json!(format!("`{}`: {description}", from[position]));
        }
        parameter["name"] = json!(to[position]);
    }
}

/// The first parameter an operation names twice in one place, if any.
fn duplicate_parameter(operation: &Json) -> Option<String> {
    let mut seen = BTreeSet::new();
    operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|parameter| {
            !seen.insert((parameter["in"].to_string(), parameter["name"].to_string()))
        })
        .map(|parameter| format!("two parameters named {}", parameter["name"]))
}

/// Leading comments of descriptors, by file and source path.
#[derive(Default)]
struct Comments {
    by_file: BTreeMap<String, BTreeMap<Vec<i32>, String>>,
}

impl Comments {
    fn of(&mut self, file: &prost_types::FileDescriptorProto, path: &[i32]) -> String {
        let name = file.name().to_owned();
        let comments = self.by_file.entry(name).or_insert_with(|| {
            file.source_code_info
                .iter()
                .flat_map(|info| info.location.iter())
                .filter_map(|location| {
                    let text = location.leading_comments.as_deref()?;
                    Some((location.path.clone(), clean_comment(text)))
                })
                .collect()
        });
        comments.get(path).cloned().unwrap_or_default()
    }
}

/// A proto comment as prose: each line trimmed of one leading space, paragraphs kept.
fn clean_comment(text: &str) -> String {
    text.lines()
        .map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

struct Generator {
    behavior: Option<ExtensionDescriptor>,
    /// Component schemas by full proto name, filled as messages and enums are met.
    schemas: BTreeMap<String, Json>,
    comments: Comments,
}

/// `google.api.field_behavior` values.
const REQUIRED: i32 = 2;
const OUTPUT_ONLY: i32 = 3;
const INPUT_ONLY: i32 = 4;

/// The gRPC codes behind each HTTP status (Envoy's mapping, docs/http-contract.md).
fn generic_description(status: u16) -> &'static str {
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
    fn operation(
        &mut self,
        method: &MethodDescriptor,
        declared: &Method,
        row: &ContractRow,
        binding: &Binding,
        operation_id: String,
    ) -> Result<(String, Json), String> {
        let input = method.input();
        let (path, variables) = openapi_path(&binding.template);
        let mut parameters = Vec::new();
        // Top-level request fields the path or body take, not offered as query parameters.
        let mut taken: BTreeSet<String> = BTreeSet::new();
        let mut path_fields: BTreeSet<String> = BTreeSet::new();
        for (variable, spans_segments) in &variables {
            let field = field_at(&input, variable)
                .ok_or_else(|| format!("path variable {{{variable}}} names no request field"))?;
            path_fields.insert(variable.clone());
            // A literal pattern sets the field from the path: nothing for the client to fill.
            let Some((spans_segments, prefix)) = spans_segments else {
                continue;
            };
            let mut schema = self.field_schema(&field);
            let mut description = self.field_comment(&field);
            if *spans_segments {
                description.push_str("\n\nMay span several path segments.");
            }
            if !prefix.is_empty() {
                description.push_str(&format!(
                    "\n\nThe field `{variable}` is `{prefix}/` followed by this value."
                ));
            }
            if let Some(object) = schema.as_object_mut() {
                object.insert("minLength".to_owned(), json!(1));
            }
            if variable.contains('.') {
                description = format!("`{variable}`: {description}");
            }
            parameters.push(json!({
                "name": parameter_name(variable),
                "in": "path",
                "required": true,
                "description": description,
                "schema": strip_annotations(schema),
            }));
        }
        let request_body = match binding.body.as_str() {
            "" => None,
            "*" => {
                taken.extend(input.fields().map(|field| field.name().to_owned()));
                if is_http_body(&input) {
                    Some(raw_body(true))
                } else {
                    let top_level: BTreeSet<&str> = variables
                        .iter()
                        .filter(|(variable, _)| !variable.contains('.'))
                        .map(|(variable, _)| variable.as_str())
                        .collect();
                    let mut schema = self.inline_message(&input, &top_level);
                    if let Some(object) = schema.as_object_mut() {
                        object.insert(
                            "description".to_owned(),
                            json!(self.message_comment(&input)),
                        );
                    }
                    Some(json_body(schema))
                }
            }
            field_name => {
                let field = input
                    .get_field_by_name(field_name)
                    .ok_or_else(|| format!("body `{field_name}` names no request field"))?;
                taken.insert(field_name.to_owned());
                let required = self.has_behavior(&field, REQUIRED);
                match field.kind() {
                    Kind::Message(message) if is_http_body(&message) => Some(raw_body(required)),
                    Kind::Message(_)
                    | Kind::Double
                    | Kind::Float
                    | Kind::Int32
                    | Kind::Int64
                    | Kind::Uint32
                    | Kind::Uint64
                    | Kind::Sint32
                    | Kind::Sint64
                    | Kind::Fixed32
                    | Kind::Fixed64
                    | Kind::Sfixed32
                    | Kind::Sfixed64
                    | Kind::Bool
                    | Kind::String
                    | Kind::Bytes
                    | Kind::Enum(_) => {
                        let mut body = json_body(self.field_schema(&field));
                        body["required"] = json!(true);
                        // The request field the JSON body fills (`ticket`): Envoy's Lua filter
                        // reads it (deploy/envoy/render) to name a field the transcoder refused
                        // by its path in the body (`ticket.priority` is the body's `priority`).
                        body["x-body-field"] = json!(field_name);
                        Some(body)
                    }
                }
            }
        };
        if binding.body != "*" {
            parameters.extend(self.query_parameters(&input, "", "", &path_fields, &taken, 0));
        }
        match declared.idempotency {
            Idempotency::Ignored => {}
            Idempotency::Optional | Idempotency::Required => parameters.push(json!({
                "name": "Idempotency-Key",
                "in": "header",
                "required": declared.idempotency == Idempotency::Required,
                "description": if declared.idempotency == Idempotency::Required {
                    "Required: a retry with the same key answers the first outcome instead of \
                     acting twice (docs/idempotency.md)."
                } else {
                    "Optional: a retry with the same key answers the first outcome instead of \
                     acting twice (docs/idempotency.md)."
                },
                "schema": { "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$" },
            })),
        }
        for entry in row.headers_read.split(',').map(str::trim) {
            // A cell may follow a header's name with a note (`content-type (the file's)`).
            let header = entry
                .split(|c: char| c.is_whitespace() || c == '(')
                .next()
                .unwrap_or_default();
            // `content-type` is the request body's (its `content`), and OpenAPI ignores a
            // header parameter of that name.
            let reserved = header.is_empty()
                || header.eq_ignore_ascii_case("authorization")
                || header.eq_ignore_ascii_case("idempotency-key")
                || header.eq_ignore_ascii_case("content-type");
            if !reserved {
                parameters.push(json!({
                    "name": header,
                    "in": "header",
                    "required": false,
                    "description": "Read by this operation: see its description and docs/http-contract.md.",
                    "schema": { "type": "string" },
                }));
            }
        }

        let mut seen = BTreeSet::new();
        for parameter in &parameters {
            let key = (parameter["in"].to_string(), parameter["name"].to_string());
            if !seen.insert(key) {
                return Err(format!(
                    "{} {}: two parameters named {}",
                    binding.http_method, binding.template, parameter["name"]
                ));
            }
        }
        let takes_json = request_body
            .as_ref()
            .is_some_and(|body| body["content"].get("application/json").is_some());
        let responses = self.responses(
            method,
            declared,
            row,
            binding,
            !variables.is_empty(),
            takes_json,
        )?;
        let mut operation = Map::new();
        operation.insert("operationId".to_owned(), json!(operation_id));
        operation.insert("tags".to_owned(), json!([method.parent_service().name()]));
        let description = self
            .comments
            .of(method.parent_file().file_descriptor_proto(), method.path());
        operation.insert(
            "summary".to_owned(),
            json!(format!(
                "{}.{}",
                method.parent_service().name(),
                method.name()
            )),
        );
        operation.insert("description".to_owned(), json!(description));
        operation.insert("x-grpc-method".to_owned(), json!(declared.path));
        if !parameters.is_empty() {
            operation.insert("parameters".to_owned(), json!(parameters));
        }
        if let Some(body) = request_body {
            operation.insert("requestBody".to_owned(), body);
        }
        operation.insert("responses".to_owned(), responses);
        operation.insert(
            "security".to_owned(),
            match declared.access {
                Access::Public => json!([]),
                Access::Authenticated => json!([{ "accessToken": [] }, { "apiKey": [] }]),
            },
        );
        Ok((path, Json::Object(operation)))
    }

    fn responses(
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

    /// Query parameters for the fields of `message` (under `prefix`) that the path and body do
    /// not take: scalars, enums, repeated scalars and the well-known types written as strings;
    /// nested messages as dotted names.
    fn query_parameters(
        &mut self,
        message: &MessageDescriptor,
        prefix: &str,
        json_prefix: &str,
        path_fields: &BTreeSet<String>,
        taken: &BTreeSet<String>,
        depth: usize,
    ) -> Vec<Json> {
        let mut out = Vec::new();
        for field in message.fields() {
            let proto_path = if prefix.is_empty() {
                field.name().to_owned()
            } else {
                format!("{prefix}.{}", field.name())
            };
            if (prefix.is_empty() && taken.contains(field.name()))
                || path_fields.contains(&proto_path)
                || field.is_map()
                || self.has_behavior(&field, OUTPUT_ONLY)
            {
                continue;
            }
            let json_path = if json_prefix.is_empty() {
                field.json_name().to_owned()
            } else {
                format!("{json_prefix}.{}", field.json_name())
            };
            match field.kind() {
                Kind::Message(child) if !query_scalar(&child) => {
                    // Nested fields as dotted names; repeated messages cannot be queried.
                    if !field.is_list() && depth < 3 {
                        out.extend(self.query_parameters(
                            &child,
                            &proto_path,
                            &json_path,
                            path_fields,
                            taken,
                            depth + 1,
                        ));
                    }
                }
                Kind::Message(_)
                | Kind::Double
                | Kind::Float
                | Kind::Int32
                | Kind::Int64
                | Kind::Uint32
                | Kind::Uint64
                | Kind::Sint32
                | Kind::Sint64
                | Kind::Fixed32
                | Kind::Fixed64
                | Kind::Sfixed32
                | Kind::Sfixed64
                | Kind::Bool
                | Kind::String
                | Kind::Bytes
                | Kind::Enum(_) => {
                    let schema = strip_annotations(self.field_schema(&field));
                    let mut parameter = json!({
                        "name": json_path,
                        "in": "query",
                        "required": self.has_behavior(&field, REQUIRED),
                        "description": self.field_comment(&field),
                        "schema": schema,
                    });
                    if field.is_list() {
                        parameter["style"] = json!("form");
                        parameter["explode"] = json!(true);
                    }
                    out.push(parameter);
                }
            }
        }
        out
    }

    fn has_behavior(&self, field: &FieldDescriptor, wanted: i32) -> bool {
        let Some(behavior) = &self.behavior else {
            return false;
        };
        let options = field.options();
        if !options.has_extension(behavior) {
            return false;
        }
        match options.get_extension(behavior).as_ref() {
            Value::List(values) => values
                .iter()
                .any(|value| value.as_enum_number() == Some(wanted)),
            Value::EnumNumber(number) => *number == wanted,
            Value::Bool(_)
            | Value::I32(_)
            | Value::I64(_)
            | Value::U32(_)
            | Value::U64(_)
            | Value::F32(_)
            | Value::F64(_)
            | Value::String(_)
            | Value::Bytes(_)
            | Value::Message(_)
            | Value::Map(_) => false,
        }
    }

    fn field_comment(&mut self, field: &FieldDescriptor) -> String {
        self.comments
            .of(field.parent_file().file_descriptor_proto(), field.path())
    }

    fn message_comment(&mut self, message: &MessageDescriptor) -> String {
        self.comments.of(
            message.parent_file().file_descriptor_proto(),
            message.path(),
        )
    }

    /// `$ref` to the component of `message` (or its inline well-known mapping).
    fn message_ref(&mut self, message: &MessageDescriptor) -> Json {
        if let Some(schema) = well_known(message) {
            return schema;
        }
        let name = message.full_name().to_owned();
        if !self.schemas.contains_key(&name) {
            // Reserve first: messages may refer to themselves.
            self.schemas.insert(name.clone(), Json::Null);
            let mut schema = self.inline_message(message, &BTreeSet::new());
            if let Some(object) = schema.as_object_mut() {
                object.insert(
                    "description".to_owned(),
                    json!(self.message_comment(message)),
                );
            }
            self.schemas.insert(name.clone(), schema);
        }
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    fn enum_ref(&mut self, descriptor: &EnumDescriptor) -> Json {
        if descriptor.full_name() == "google.protobuf.NullValue" {
            return json!({ "type": "null" });
        }
        let name = descriptor.full_name().to_owned();
        if !self.schemas.contains_key(&name) {
            let mut lines = vec![self.comments.of(
                descriptor.parent_file().file_descriptor_proto(),
                descriptor.path(),
            )];
            let names: Vec<String> = descriptor
                .values()
                .map(|value| {
                    let comment = self
                        .comments
                        .of(value.parent_file().file_descriptor_proto(), value.path());
                    if !comment.is_empty() {
                        lines.push(format!(
                            "- `{}`: {}",
                            value.name(),
                            comment.replace('\n', " ")
                        ));
                    }
                    value.name().to_owned()
                })
                .collect();
            self.schemas.insert(
                name.clone(),
                json!({
                    "type": "string",
                    "enum": names,
                    "description": lines.join("\n"),
                }),
            );
        }
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    /// The object schema of `message`'s fields, leaving out the top-level fields in `omit`.
    fn inline_message(&mut self, message: &MessageDescriptor, omit: &BTreeSet<&str>) -> Json {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in message.fields() {
            if omit.contains(field.name()) {
                continue;
            }
            let mut schema = self.field_schema(&field);
            let description = self.field_comment(&field);
            if let Some(object) = schema.as_object_mut() {
                if !description.is_empty() {
                    object.insert("description".to_owned(), json!(description));
                }
                if self.has_behavior(&field, OUTPUT_ONLY) {
                    object.insert("readOnly".to_owned(), json!(true));
                }
                if self.has_behavior(&field, INPUT_ONLY) {
                    object.insert("writeOnly".to_owned(), json!(true));
                }
            }
            if self.has_behavior(&field, REQUIRED) {
                required.push(field.json_name().to_owned());
            }
            properties.insert(field.json_name().to_owned(), schema);
        }
        let mut schema = Map::new();
        schema.insert("type".to_owned(), json!("object"));
        schema.insert("properties".to_owned(), Json::Object(properties));
        if !required.is_empty() {
            schema.insert("required".to_owned(), json!(required));
        }
        Json::Object(schema)
    }

    /// The schema of one field's JSON value (arrays and maps included).
    fn field_schema(&mut self, field: &FieldDescriptor) -> Json {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                return json!({ "type": "object" });
            };
            let value = entry.map_entry_value_field();
            return json!({
                "type": "object",
                "additionalProperties": self.single_schema(&value.kind()),
            });
        }
        let single = self.single_schema(&field.kind());
        if field.is_list() {
            json!({ "type": "array", "items": single })
        } else {
            single
        }
    }

    fn single_schema(&mut self, kind: &Kind) -> Json {
        match kind {
            Kind::Double | Kind::Float => json!({
                "anyOf": [
                    { "type": "number" },
                    { "type": "string", "enum": ["NaN", "Infinity", "-Infinity"] },
                ],
            }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({
                "type": "integer", "format": "int32",
                "minimum": i32::MIN, "maximum": i32::MAX,
            }),
            Kind::Uint32 | Kind::Fixed32 => json!({
                "type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX,
            }),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => json!({
                "type": "string", "format": "int64", "pattern": "^-?[0-9]+$",
                "description": "A 64-bit integer, as a decimal string.",
            }),
            Kind::Uint64 | Kind::Fixed64 => json!({
                "type": "string", "pattern": "^[0-9]+$",
                "description": "An unsigned 64-bit integer, as a decimal string.",
            }),
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "contentEncoding": "base64" }),
            Kind::Enum(descriptor) => self.enum_ref(descriptor),
            Kind::Message(message) => self.message_ref(message),
        }
    }
}

/// The field at a dotted proto path (`ticket.id`) of `message`.
fn field_at(message: &MessageDescriptor, path: &str) -> Option<FieldDescriptor> {
    let mut current = message.clone();
    let mut names = path.split('.').peekable();
    while let Some(name) = names.next() {
        let field = current.get_field_by_name(name)?;
        if names.peek().is_none() {
            return Some(field);
        }
        current = field.kind().as_message()?.clone();
    }
    None
}

/// Whether a message is written as one JSON string, number or bool (and so may be a query
/// parameter): timestamps, durations, field masks and the wrappers.
fn query_scalar(message: &MessageDescriptor) -> bool {
    matches!(
        message.full_name(),
        "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
    )
}

fn is_http_body(message: &MessageDescriptor) -> bool {
    message.full_name() == "google.api.HttpBody"
}

/// The JSON mapping of the well-known types, which have no component of their own.
fn well_known(message: &MessageDescriptor) -> Option<Json> {
    let nullable = |schema: Json| -> Json {
        let mut schema = schema;
        if let Some(kind) = schema.get("type").cloned() {
            schema["type"] = json!([kind, "null"]);
        }
        schema
    };
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({
            "type": "string", "format": "date-time",
            "description": "RFC 3339, in UTC when printed (`2026-11-22T03:49:48.143Z`).",
        }),
        "google.protobuf.Duration" => json!({
            "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$",
            "description": "Seconds with up to nine decimals and a final `s` (`1.5s`).",
        }),
        "google.protobuf.FieldMask" => json!({
            "type": "string",
            "description": "Field paths in lowerCamelCase, separated by commas (`displayName,role`).",
        }),
        "google.protobuf.Struct" => json!({ "type": "object", "additionalProperties": true }),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({ "type": "array", "items": {} }),
        "google.protobuf.Empty" => json!({ "type": "object" }),
        "google.protobuf.Any" => json!({ "$ref": "#/components/schemas/google.protobuf.Any" }),
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => json!({
            "anyOf": [
                { "type": "number" },
                { "type": "string", "enum": ["NaN", "Infinity", "-Infinity"] },
                { "type": "null" },
            ],
        }),
        "google.protobuf.Int64Value" => {
            nullable(json!({ "type": "string", "format": "int64", "pattern": "^-?[0-9]+$" }))
        }
        "google.protobuf.UInt64Value" => {
            nullable(json!({ "type": "string", "pattern": "^[0-9]+$" }))
        }
        "google.protobuf.Int32Value" => nullable(json!({
            "type": "integer", "format": "int32", "minimum": i32::MIN, "maximum": i32::MAX,
        })),
        "google.protobuf.UInt32Value" => nullable(json!({
            "type": "integer", "minimum": 0, "maximum": u32::MAX,
        })),
        "google.protobuf.BoolValue" => nullable(json!({ "type": "boolean" })),
        "google.protobuf.StringValue" => nullable(json!({ "type": "string" })),
        "google.protobuf.BytesValue" => {
            nullable(json!({ "type": "string", "contentEncoding": "base64" }))
        }
        _ => return None,
    })
}

/// A parameter's schema without what describes a property (its description moves to the
/// parameter; readOnly and writeOnly mean nothing there).
fn strip_annotations(schema: Json) -> Json {
    let mut schema = schema;
    if let Some(object) = schema.as_object_mut() {
        object.remove("readOnly");
        object.remove("writeOnly");
    }
    schema
}

fn json_body(schema: Json) -> Json {
    json!({ "content": { "application/json": { "schema": schema } } })
}

/// A `google.api.HttpBody` request body: the raw bytes, of any content type.
fn raw_body(required: bool) -> Json {
    json!({
        "required": required,
        "description": "The raw request body, of any content type (a `google.api.HttpBody`: \
            Envoy passes the bytes and their content type through unchanged).",
        "content": { "*/*": { "schema": { "type": "string", "format": "binary" } } },
    })
}

fn reason_phrase(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted",
        "204" => "No Content",
        _ => "Success",
    }
}

fn header_ref(name: &str) -> Json {
    json!({ "$ref": format!("#/components/headers/{name}") })
}

/// The response headers of the contract (docs/http-contract.md, "Headers").
fn headers() -> Json {
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
fn status_schema() -> Json {
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

fn any_schema() -> Json {
    json!({
        "type": "object",
        "description": "A message of the type its `@type` names (`type.googleapis.com/google.rpc.ErrorInfo`), with that message's fields beside it.",
        "required": ["@type"],
        "properties": { "@type": { "type": "string" } },
        "additionalProperties": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated() -> Json {
        serde_json::from_str(&render().expect("the document renders")).expect("JSON")
    }

    #[test]
    fn statuses_are_read_from_a_contract_cell_with_their_text() {
        let statuses = documented_statuses(
            "401 MISSING_CREDENTIALS, TOKEN_EXPIRED (no or bad credentials); 400 INVALID_ARGUMENT \
             (id); 400 FAILED_PRECONDITION TICKET_CLOSED; 404 TICKET_NOT_FOUND",
        );
        assert_eq!(
            statuses.keys().copied().collect::<Vec<_>>(),
            [400, 401, 404]
        );
        assert_eq!(
            statuses[&400],
            [
                "400 INVALID_ARGUMENT (id)",
                "400 FAILED_PRECONDITION TICKET_CLOSED"
            ]
        );
        let webhook = documented_statuses(
            "The body is raw: 200 for the first delivery. 400 WEBHOOK_SIGNATURE_MISSING; 413 \
             REQUEST_TOO_LARGE",
        );
        assert_eq!(webhook.keys().copied().collect::<Vec<_>>(), [400, 413]);
    }

    #[test]
    fn path_templates_become_openapi_paths_with_their_variables() {
        assert_eq!(
            openapi_path("/v1/tickets/{ticket.id}"),
            (
                "/v1/tickets/{ticket_id}".to_owned(),
                vec![("ticket.id".to_owned(), Some((false, String::new())))]
            )
        );
        assert_eq!(
            openapi_path("/v1/{name=shelves/*}:read"),
            (
                "/v1/shelves/{name}:read".to_owned(),
                vec![("name".to_owned(), Some((false, "shelves".to_owned())))]
            )
        );
        assert_eq!(
            openapi_path("/v1/{name=operations/**}:cancel"),
            (
                "/v1/operations/{name}:cancel".to_owned(),
                vec![("name".to_owned(), Some((true, "operations".to_owned())))]
            )
        );
        assert_eq!(
            openapi_path("/v1/{name=operations}"),
            ("/v1/operations".to_owned(), vec![("name".to_owned(), None)])
        );
    }

    #[test]
    fn one_resource_is_one_path_key_whatever_its_rules_call_the_variable() {
        let document = generated();
        let paths = document["paths"].as_object().expect("paths");
        let mut shapes = BTreeMap::new();
        for path in paths.keys() {
            if let Some(other) = shapes.insert(path_shape(path).0, path) {
                panic!("{path} and {other} are one path to OpenAPI");
            }
        }
        let ticket = &document["paths"]["/v1/tickets/{id}"];
        assert_eq!(ticket["get"]["operationId"], "TicketService_GetTicket");
        assert_eq!(
            ticket["delete"]["operationId"],
            "TicketService_DeleteTicket"
        );
        let update = &ticket["patch"];
        assert_eq!(update["operationId"], "TicketService_UpdateTicket");
        let id = &update["parameters"][0];
        assert_eq!((&id["name"], &id["in"]), (&json!("id"), &json!("path")));
        assert!(
            id["description"]
                .as_str()
                .is_some_and(|text| text.starts_with("`ticket.id`: ")),
            "{id}"
        );
        assert_eq!(
            document["paths"]["/v1/users/{id}"]["patch"]["operationId"],
            "UserService_UpdateUser"
        );
    }

    #[test]
    fn a_create_is_201_with_location_and_its_idempotency_key_and_the_body_as_the_rule_says() {
        let document = generated();
        let create = &document["paths"]["/v1/tickets"]["post"];
        assert_eq!(create["operationId"], "TicketService_CreateTicket");
        assert_eq!(
            create["responses"]["201"]["headers"]["location"]["$ref"],
            "#/components/headers/location"
        );
        assert_eq!(
            create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/supportdesk.v1.Ticket"
        );
        let parameters = create["parameters"].as_array().expect("parameters");
        assert!(
            parameters
                .iter()
                .any(|parameter| parameter["name"] == "Idempotency-Key"
                    && parameter["in"] == "header"
                    && parameter["required"] == false)
        );
        assert_eq!(
            create["security"],
            json!([{ "accessToken": [] }, { "apiKey": [] }])
        );
        assert_eq!(
            create["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/google.rpc.Status"
        );
    }

    #[test]
    fn the_json_mapping_is_the_transcoders() {
        let document = generated();
        let schemas = &document["components"]["schemas"];
        let ticket = &schemas["supportdesk.v1.Ticket"]["properties"];
        assert_eq!(ticket["requesterEmail"]["type"], "string");
        assert_eq!(ticket["createTime"]["format"], "date-time");
        assert_eq!(
            ticket["priority"]["$ref"],
            "#/components/schemas/supportdesk.v1.TicketPriority"
        );
        let priorities = schemas["supportdesk.v1.TicketPriority"]["enum"]
            .as_array()
            .expect("enum names");
        assert!(priorities.contains(&json!("TICKET_PRIORITY_URGENT")));
    }

    #[test]
    fn public_rpcs_need_no_credentials_and_deletes_answer_no_content() {
        let document = generated();
        let login = &document["paths"]["/v1/auth:login"]["post"];
        assert_eq!(login["security"], json!([]));
        assert!(login["responses"]["401"].is_object());
        let delete = &document["paths"]["/v1/tickets/{id}"]["delete"];
        assert!(delete["responses"]["204"].is_object());
        assert!(delete["responses"]["204"].get("content").is_none());
    }

    #[test]
    fn get_requests_take_the_fields_outside_the_path_as_query_parameters() {
        let document = generated();
        let list = &document["paths"]["/v1/tickets"]["get"];
        let names: Vec<&str> = list["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter(|parameter| parameter["in"] == "query")
            .filter_map(|parameter| parameter["name"].as_str())
            .collect();
        assert!(names.contains(&"pageSize"), "{names:?}");
        assert!(names.contains(&"pageToken"), "{names:?}");
    }

    #[test]
    fn header_parameters_are_named_without_the_contract_tables_notes() {
        let document = generated();
        let upload = &document["paths"]["/v1/attachments:upload"]["post"];
        let headers: Vec<&Json> = upload["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter(|parameter| parameter["in"] == "header")
            .map(|parameter| &parameter["name"])
            .collect();
        assert_eq!(headers, [&json!("Idempotency-Key")]);
    }

    #[test]
    fn http_body_requests_take_the_raw_bytes() {
        let document = generated();
        let webhook = &document["paths"]["/v1/webhooks/payments"]["post"];
        assert_eq!(
            webhook["requestBody"]["content"]["*/*"]["schema"]["format"],
            "binary"
        );
    }
}
