//! The OpenAPI 3.1 document of the REST API, generated from the service's own descriptor set:
//! every `google.api.http` rule (and its `additional_bindings`) of every RPC, with the proto3 JSON
//! mapping exactly as Envoy's transcoder applies it, the success status and idempotency of the
//! method table ([`crate::wire::methods`]), the error statuses of docs/http-contract.md's
//! contract table (and, for a public RPC, why it needs no credentials, from its "Public RPCs"
//! table), the headers each answer carries (Envoy's CORS policy read from
//! deploy/envoy/envoy.yaml), and what answers hold beyond their types ([`emitted`]).
//! `supportdesk openapi` writes it; `docs/openapi.json` is its output, checked in, served by Envoy
//! at `GET /v1/openapi.json` and linted as governance teams do (.spectral.yaml; docs/openapi.md).
//! Nothing here names an RPC: a new RPC appears in the document when it has its
//! `google.api.http` rule, its `(supportdesk.v1.method)` declaration and its row in the contract
//! table.
//!
//! How the transcoder's JSON is described (docs/http-contract.md, "JSON"):
//! - field names are the lowerCamelCase `json_name`s; 64-bit integers are strings; enums are
//!   their value names; `Timestamp` is an RFC 3339 string, `Duration` a decimal of seconds ending
//!   in `s`, `FieldMask` one comma-separated string of lowerCamelCase paths; wrappers are their
//!   value (or `null`), `Struct` any object, `Value` any JSON, `Any` an object with `@type`;
//! - a `google.api.HttpBody` request body is the raw request bytes of any content type;
//! - on a rule without `body: "*"`, every request field that is neither in the path nor the body
//!   is a query parameter (fields of nested messages as dotted names: `filter.status`).

mod constraints;
mod emitted;
mod errors;
mod paths;
mod schemas;

use constraints::Declared;
use emitted::sent_by_clients;
use errors::*;
use paths::*;
use schemas::*;

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
const CONTRACT: &str = include_str!("../../../docs/http-contract.md");

/// Envoy's configuration, whose CORS policy decides the CORS headers of every answer.
const ENVOY: &str = include_str!("../../../deploy/envoy/envoy.yaml");

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
    let document = document(proto::FILE_DESCRIPTOR_SET, table, CONTRACT, ENVOY)?;
    let mut text = serde_json::to_string_pretty(&document)
        .map_err(|error| OpenApiError(format!("cannot print the document: {error}")))?;
    text.push('\n');
    Ok(text)
}

/// The document of the API in the descriptor set `api`, whose RPCs `table` declares and
/// `contract` (docs/http-contract.md) lists, served by Envoy configured as `envoy`
/// (deploy/envoy/envoy.yaml).
pub fn document(
    api: &[u8],
    table: &MethodTable,
    contract: &str,
    envoy: &str,
) -> Result<Json, OpenApiError> {
    let pool = DescriptorPool::decode(api)
        .map_err(|error| OpenApiError(format!("the descriptor set does not decode: {error}")))?;
    let http = pool
        .get_extension_by_name("google.api.http")
        .ok_or_else(|| OpenApiError("the descriptor set lacks google.api.http".to_owned()))?;
    let rows = contract_rows(contract);
    let mut generator = Generator {
        behavior: pool.get_extension_by_name("google.api.field_behavior"),
        rules: pool.get_extension_by_name("buf.validate.field"),
        schemas: BTreeMap::new(),
        responses: BTreeMap::new(),
        cors: Cors::of(envoy)?,
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
    schemas.insert("google.protobuf.Any".to_owned(), any_schema(&pool));
    for (name, schema) in std::mem::take(&mut generator.schemas) {
        schemas.insert(name, schema);
    }
    let sent = sent_by_clients(&paths, &schemas);
    generator.state_what_answers_hold(&pool, &mut schemas, &sent)?;
    let responses: Map<String, Json> = std::mem::take(&mut generator.responses)
        .into_iter()
        .collect();
    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "supportdesk REST API",
            "version": "v1",
            "description": "The REST/JSON face of supportdesk's gRPC API, as Envoy's gRPC-JSON \
                transcoder serves it. Generated from the protobuf descriptors by `supportdesk \
                openapi` (never edit it by hand); the conventions behind it (statuses, errors, \
                headers, CORS) are in docs/http-contract.md.",
            "contact": { "name": "The supportdesk maintainers (docs/http-contract.md)" },
        },
        "servers": [
            {
                "url": "http://127.0.0.1:8080",
                "description": "local: deploy/local/run's Envoy, plain HTTP on loopback",
                "x-internal": true,
            },
            {
                "url": "https://{host}",
                "description": "production: a deployment's Envoy behind its TLS-terminating \
                    Ingress, Gateway or LoadBalancer (docs/deployment.md)",
                "variables": {
                    "host": {
                        "default": "desk.example.com",
                        "description": "The deployment's public host, as in its \
                            PUBLIC_BASE_URL (desk.example.com is the example overlay's).",
                    },
                },
                "x-internal": false,
            },
        ],
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {
                "accessToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "`authorization: Bearer <access token>`: the access token of \
                        AuthService.Login or AuthService.RefreshToken (docs/identity.md). Issued \
                        and checked as RFC8725 (JSON Web Token Best Current Practices) asks: the \
                        server fixes the algorithm (HS256, with a key of at least 32 bytes) and \
                        refuses a token naming any other, `none` included; `iss`, `sub`, `iat` \
                        and `exp` are required and checked (5 s of clock leeway); tokens live \
                        15 minutes by default (ACCESS_TOKEN_TTL_SECS) and end with their \
                        session (logout, a password reset).",
                },
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "sd_live_...",
                    "description": "`authorization: Bearer sd_live_...`: an API key of \
                        ApiKeyService.CreateApiKey, acting with its roles (docs/identity.md).",
                },
            },
            "headers": headers(&generator.cors),
        },
    }))
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
    /// `buf.validate.field`: the rules the protos declare.
    rules: Option<ExtensionDescriptor>,
    /// Component schemas by full proto name, filled as messages and enums are met.
    schemas: BTreeMap<String, Json>,
    /// Component responses: the error answers every operation gives alike.
    responses: BTreeMap<String, Json>,
    /// Envoy's CORS policy, which every answer to an allowed origin shows.
    cors: Cors,
    comments: Comments,
}

/// `google.api.field_behavior` values.
const REQUIRED: i32 = 2;
const OUTPUT_ONLY: i32 = 3;
const INPUT_ONLY: i32 = 4;

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
            create["responses"]["201"]["headers"]["Location"]["$ref"],
            "#/components/headers/Location"
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
    fn public_rpcs_need_no_credentials_say_why_and_deletes_answer_no_content() {
        let document = generated();
        let login = &document["paths"]["/v1/auth:login"]["post"];
        assert_eq!(login["security"], json!([{}]));
        assert!(login["responses"]["401"].is_object());
        let description = |path: &str| {
            document["paths"][path]["post"]["description"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        assert!(description("/v1/auth:login").contains("Public (no `authorization`): "));
        for webhook in ["/v1/webhooks/payments", "/v1/webhooks/email"] {
            assert!(description(webhook).contains("HMAC-SHA256"), "{webhook}");
        }
        let delete = &document["paths"]["/v1/tickets/{id}"]["delete"];
        assert!(delete["responses"]["204"].is_object());
        assert!(delete["responses"]["204"].get("content").is_none());
    }

    #[test]
    fn answers_carry_the_rate_limit_fields_only_where_the_service_counted_the_request() {
        let document = generated();
        let get_ticket = &document["paths"]["/v1/tickets/{id}"]["get"]["responses"];
        let headers = |response: &Json| -> Vec<String> {
            let response = match response["$ref"].as_str() {
                Some(target) => {
                    let name = target.trim_start_matches("#/components/responses/");
                    &document["components"]["responses"][name]
                }
                None => response,
            };
            response["headers"]
                .as_object()
                .map(|headers| headers.keys().cloned().collect())
                .unwrap_or_default()
        };
        let counted = |response: &Json| headers(response).contains(&"RateLimit".to_owned());
        assert!(counted(&get_ticket["200"]));
        assert!(
            counted(&get_ticket["404"]),
            "TICKET_NOT_FOUND is the service's"
        );
        assert!(
            !counted(&get_ticket["401"]),
            "admission refuses before counting"
        );
        assert!(headers(&get_ticket["401"]).contains(&"WWW-Authenticate".to_owned()));
        assert!(!counted(&get_ticket["408"]), "Envoy's");
        assert!(headers(&get_ticket["429"]).contains(&"Retry-After".to_owned()));
        assert!(
            headers(&get_ticket["431"]).is_empty(),
            "refused before Envoy read them"
        );
        assert_eq!(
            get_ticket["504"]["$ref"],
            "#/components/responses/GatewayTimeout"
        );
        let login = &document["paths"]["/v1/auth:login"]["post"]["responses"];
        assert!(counted(&login["401"]), "Login's 401 is its handler's");
        let revoke = &document["paths"]["/v1/tickets/{id}:resolve"]["post"]["responses"];
        assert!(headers(&revoke["200"]).contains(&"Access-Control-Allow-Origin".to_owned()));
    }

    #[test]
    fn the_headers_a_page_may_read_include_every_response_header_the_document_declares() {
        let document = generated();
        let headers = document["components"]["headers"]
            .as_object()
            .expect("headers");
        let exposed = headers["Access-Control-Expose-Headers"]["schema"]["enum"][0]
            .as_str()
            .expect("one value")
            .to_owned();
        let exposed: BTreeSet<&str> = exposed.split(',').map(str::trim).collect();
        for name in headers.keys() {
            if !name.starts_with("Access-Control-") && name != "WWW-Authenticate" {
                assert!(
                    exposed.contains(name.to_ascii_lowercase().as_str()),
                    "{name} is not in deploy/envoy/envoy.yaml's expose_headers"
                );
            }
        }
    }

    #[test]
    fn output_ids_are_stated_as_uuids_and_writable_fields_keep_only_their_declared_rules() {
        let document = generated();
        let schemas = &document["components"]["schemas"];
        let ticket = &schemas["supportdesk.v1.Ticket"]["properties"];
        assert_eq!(ticket["id"]["readOnly"], true);
        assert_eq!(ticket["id"]["maxLength"], 36);
        assert!(
            ticket["id"]["pattern"]
                .as_str()
                .is_some_and(|pattern| pattern.ends_with(")?$")),
            "an export's read mask may leave it empty: {}",
            ticket["id"]
        );
        assert_eq!(ticket["createTime"]["maxLength"], 30);
        assert!(
            ticket["assigneeId"].get("pattern").is_none(),
            "clients write assigneeId: only its buf.validate rules apply"
        );
        let user = &schemas["supportdesk.v1.User"]["properties"];
        assert_eq!(user["id"]["format"], "uuid");
        let page = &schemas["supportdesk.v1.ListTicketsResponse"]["properties"];
        assert_eq!(page["tickets"]["maxItems"], crate::domain::PageSize::MAX);
        assert_eq!(
            page["nextPageToken"]["maxLength"],
            emitted::PAGE_TOKEN_MAX_LENGTH
        );
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
