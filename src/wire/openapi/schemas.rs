//! The schemas of the document: each message and enum with the proto3 JSON mapping Envoy's
//! transcoder applies, the well-known types as their JSON forms, and request bodies.

use super::*;

impl Generator {
    pub(super) fn has_behavior(&self, field: &FieldDescriptor, wanted: i32) -> bool {
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

    pub(super) fn field_comment(&mut self, field: &FieldDescriptor) -> String {
        self.comments
            .of(field.parent_file().file_descriptor_proto(), field.path())
    }

    pub(super) fn message_comment(&mut self, message: &MessageDescriptor) -> String {
        self.comments.of(
            message.parent_file().file_descriptor_proto(),
            message.path(),
        )
    }

    /// `$ref` to the component of `message` (or its inline well-known mapping).
    pub(super) fn message_ref(&mut self, message: &MessageDescriptor) -> Json {
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

    pub(super) fn enum_ref(&mut self, descriptor: &EnumDescriptor) -> Json {
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
    pub(super) fn inline_message(
        &mut self,
        message: &MessageDescriptor,
        omit: &BTreeSet<&str>,
    ) -> Json {
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
            if self.is_required(&field) {
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

    /// Whether `field` is required: by `google.api.field_behavior` or by `buf.validate`.
    pub(super) fn is_required(&self, field: &FieldDescriptor) -> bool {
        self.has_behavior(field, REQUIRED) || Declared::of(field, self.rules.as_ref()).required
    }

    /// The schema of one field's JSON value (arrays and maps included), with the limits its
    /// `buf.validate` rules declare.
    pub(super) fn field_schema(&mut self, field: &FieldDescriptor) -> Json {
        let schema = self.unconstrained_schema(field);
        Declared::of(field, self.rules.as_ref()).apply(schema)
    }

    fn unconstrained_schema(&mut self, field: &FieldDescriptor) -> Json {
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

    pub(super) fn single_schema(&mut self, kind: &Kind) -> Json {
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
pub(super) fn field_at(message: &MessageDescriptor, path: &str) -> Option<FieldDescriptor> {
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
pub(super) fn query_scalar(message: &MessageDescriptor) -> bool {
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

pub(super) fn is_http_body(message: &MessageDescriptor) -> bool {
    message.full_name() == "google.api.HttpBody"
}

/// The JSON mapping of the well-known types, which have no component of their own.
pub(super) fn well_known(message: &MessageDescriptor) -> Option<Json> {
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
pub(super) fn strip_annotations(schema: Json) -> Json {
    let mut schema = schema;
    if let Some(object) = schema.as_object_mut() {
        object.remove("readOnly");
        object.remove("writeOnly");
    }
    schema
}

pub(super) fn json_body(schema: Json) -> Json {
    json!({ "content": { "application/json": { "schema": schema } } })
}

/// A `google.api.HttpBody` request body: the raw bytes, of any content type.
pub(super) fn raw_body(required: bool) -> Json {
    json!({
        "required": required,
        "description": "The raw request body, of any content type (a `google.api.HttpBody`: \
            Envoy passes the bytes and their content type through unchanged).",
        "content": { "*/*": { "schema": { "type": "string", "format": "binary" } } },
    })
}

/// The prefix of every type URL the service and Envoy write (prost's `type_name_domain`).
const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// `google.protobuf.Any` as the transcoder prints it: `@type` names a message of `pool` (one it
/// cannot resolve is refused, never printed), so no type URL is longer than the longest name.
pub(super) fn any_schema(pool: &DescriptorPool) -> Json {
    let longest = pool
        .all_messages()
        .map(|message| message.full_name().len())
        .max()
        .unwrap_or_default();
    json!({
        "type": "object",
        "description": "A message of the type its `@type` names (`type.googleapis.com/google.rpc.ErrorInfo`), with that message's fields beside it.",
        "required": ["@type"],
        "properties": {
            "@type": {
                "type": "string",
                "pattern": "^type\\.googleapis\\.com/[A-Za-z_][A-Za-z0-9_.]*$",
                "maxLength": TYPE_URL_PREFIX.len() + longest,
            },
        },
        "additionalProperties": true,
    })
}
