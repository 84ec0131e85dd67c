//! The paths of the document: each `google.api.http` binding as an OpenAPI path with its
//! variables, equivalent templates merged into one path, and each operation with its parameters
//! and request body.

use super::*;

/// One `google.api.http` binding.
#[derive(Debug, Clone)]
pub(super) struct Binding {
    pub(super) http_method: String,
    pub(super) template: String,
    pub(super) body: String,
    pub(super) response_body: String,
}

/// The rule and its `additional_bindings`, in order.
pub(super) fn bindings(rule: DynamicMessage) -> Vec<Binding> {
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
pub(super) type PathVariable = (String, Option<(bool, String)>);

/// A path template as OpenAPI writes it (`/v1/tickets/{ticket_id}` for
/// `/v1/tickets/{ticket.id}`), and its variables (field paths) with
/// whether each may span segments (`{name=shelves/*/books/*}`), or `None` for a variable whose
/// pattern is literal only (`{name=operations}`: the path is `/v1/operations` and the field is
/// set by the path, not a parameter). A pattern's leading literal segments stay in the path
/// (`{name=operations/**}` is `operations/{name}`), and are returned with the variable: the
/// field's value is them, `/`, then the parameter.
pub(super) fn openapi_path(template: &str) -> (String, Vec<PathVariable>) {
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
pub(super) fn parameter_name(field_path: &str) -> String {
    field_path.replace('.', "_")
}

/// A path key's shape (its variables written `{}`) and its variables' names in order:
/// `/v1/tickets/{ticket_id}` is `/v1/tickets/{}` with `ticket_id`.
pub(super) fn path_shape(path: &str) -> (String, Vec<String>) {
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
pub(super) fn merge_equivalent_paths(
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
pub(super) fn rename_path_parameters(operation: &mut Json, from: &[String], to: &[String]) {
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
pub(super) fn duplicate_parameter(operation: &Json) -> Option<String> {
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

impl Generator {
    pub(super) fn operation(
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
                let required = self.is_required(&field);
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
                        // reads it (supportdesk envoy-config) to name a field the transcoder refused
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
        let mut description = self
            .comments
            .of(method.parent_file().file_descriptor_proto(), method.path());
        let security = match (declared.access, &row.public_because) {
            // An empty requirement: the operation is open to callers without credentials.
            (Access::Public, Some(reason)) => {
                description.push_str(&format!("\n\nPublic (no `authorization`): {reason}"));
                json!([{}])
            }
            (Access::Authenticated, None) => json!([{ "accessToken": [] }, { "apiKey": [] }]),
            (Access::Public, None) => {
                return Err(
                    "public, but docs/http-contract.md's \"Public RPCs\" table does not say why"
                        .to_owned(),
                );
            }
            (Access::Authenticated, Some(_)) => {
                return Err(
                    "in docs/http-contract.md's \"Public RPCs\" table, but needs credentials"
                        .to_owned(),
                );
            }
        };
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
        operation.insert("security".to_owned(), security);
        Ok((path, Json::Object(operation)))
    }

    /// Query parameters for the fields of `message` (under `prefix`) that the path and body do
    /// not take: scalars, enums, repeated scalars and the well-known types written as strings;
    /// nested messages as dotted names.
    pub(super) fn query_parameters(
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
                        "required": self.is_required(&field),
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
}
