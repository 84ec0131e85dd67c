//! The `buf.validate` rules of a field as JSON Schema keywords, so that the document states the
//! limits the protos declare (docs/openapi.md, "Constraints"): `required`, string lengths,
//! patterns and formats, integer bounds, enum values allowed, and list sizes. A rule with no JSON
//! Schema equivalent (a CEL expression) is left to the field's description.

use prost_reflect::ReflectMessage;

use super::*;

/// What the `buf.validate.field` option of one field says, as far as JSON Schema can.
pub(super) struct Declared {
    /// `required = true`: the field must be set (a non-empty string, a present message).
    pub(super) required: bool,
    /// Keywords for the field's own schema (or, for a list, for the array).
    keywords: Map<String, Json>,
    /// Keywords for each item of a list.
    items: Map<String, Json>,
    /// `ignore = IGNORE_IF_ZERO_VALUE`: the empty value is allowed whatever the rules say.
    empty_allowed: bool,
}

/// `buf.validate.Ignore.IGNORE_IF_ZERO_VALUE`.
const IGNORE_IF_ZERO_VALUE: i32 = 1;

impl Declared {
    /// The rules of `field` under the `buf.validate.field` extension `rules` (None: no rules).
    pub(super) fn of(field: &FieldDescriptor, rules: Option<&ExtensionDescriptor>) -> Self {
        let mut declared = Self {
            required: false,
            keywords: Map::new(),
            items: Map::new(),
            empty_allowed: false,
        };
        let Some(extension) = rules else {
            return declared;
        };
        let options = field.options();
        if !options.has_extension(extension) {
            return declared;
        }
        let Value::Message(rules) = options.get_extension(extension).into_owned() else {
            return declared;
        };
        declared.required = bool_of(&rules, "required");
        declared.empty_allowed = enum_of(&rules, "ignore") == Some(IGNORE_IF_ZERO_VALUE);
        let target = if field.is_list() {
            if let Some(repeated) = message_of(&rules, "repeated") {
                if let Some(minimum) = u64_of(&repeated, "min_items") {
                    declared
                        .keywords
                        .insert("minItems".to_owned(), json!(minimum));
                }
                if let Some(maximum) = u64_of(&repeated, "max_items") {
                    declared
                        .keywords
                        .insert("maxItems".to_owned(), json!(maximum));
                }
                if bool_of(&repeated, "unique") {
                    declared
                        .keywords
                        .insert("uniqueItems".to_owned(), json!(true));
                }
                message_of(&repeated, "items").map(|items| (items, true))
            } else {
                None
            }
        } else {
            Some((rules, false))
        };
        if let Some((rules, of_items)) = target {
            let keywords = scalar_keywords(&rules, &field.kind());
            if of_items {
                declared.items = keywords;
            } else {
                declared.keywords.extend(keywords);
            }
        }
        if declared.required
            && field.kind() == Kind::String
            && !declared.keywords.contains_key("minLength")
        {
            declared.keywords.insert("minLength".to_owned(), json!(1));
        }
        declared
    }

    /// `schema` (the field's schema without its rules) with the rules written into it.
    pub(super) fn apply(self, schema: Json) -> Json {
        let Json::Object(mut object) = schema else {
            return schema;
        };
        if !self.items.is_empty()
            && let Some(Json::Object(items)) = object.get_mut("items")
        {
            merge(items, self.items);
        }
        if self.keywords.is_empty() {
            return Json::Object(object);
        }
        if self.empty_allowed {
            // The empty string passes; anything else must meet the rules.
            object.insert(
                "anyOf".to_owned(),
                json!([{ "const": "" }, Json::Object(self.keywords)]),
            );
        } else {
            merge(&mut object, self.keywords);
        }
        Json::Object(object)
    }
}

/// Adds `keywords` to `schema`, where a declared bound replaces the type's own.
fn merge(schema: &mut Map<String, Json>, keywords: Map<String, Json>) {
    for (keyword, value) in keywords {
        schema.insert(keyword, value);
    }
}

/// The keywords of one value's rules (`string`, `int32`, `enum`, ...) for a value of `kind`.
fn scalar_keywords(rules: &DynamicMessage, kind: &Kind) -> Map<String, Json> {
    let mut keywords = Map::new();
    if let Some(string) = message_of(rules, "string") {
        if let Some(length) = u64_of(&string, "len") {
            keywords.insert("minLength".to_owned(), json!(length));
            keywords.insert("maxLength".to_owned(), json!(length));
        }
        if let Some(minimum) = u64_of(&string, "min_len") {
            keywords.insert("minLength".to_owned(), json!(minimum));
        }
        if let Some(maximum) = u64_of(&string, "max_len") {
            keywords.insert("maxLength".to_owned(), json!(maximum));
        }
        if let Some(pattern) = string_of(&string, "pattern") {
            keywords.insert("pattern".to_owned(), json!(ecma_pattern(&pattern)));
        }
        let allowed = strings_of(&string, "in");
        if !allowed.is_empty() {
            keywords.insert("enum".to_owned(), json!(allowed));
        }
        for (rule, format) in [
            ("email", "email"),
            ("uuid", "uuid"),
            ("uri", "uri"),
            ("hostname", "hostname"),
            ("ipv4", "ipv4"),
            ("ipv6", "ipv6"),
        ] {
            if bool_of(&string, rule) {
                keywords.insert("format".to_owned(), json!(format));
            }
        }
    }
    for numeric in ["int32", "int64", "uint32", "uint64"] {
        let Some(bounds) = message_of(rules, numeric) else {
            continue;
        };
        // 64-bit integers are JSON strings: their bounds stay in the description.
        if matches!(kind, Kind::Int32 | Kind::Sint32 | Kind::Sfixed32) {
            for (rule, keyword) in [
                ("gte", "minimum"),
                ("lte", "maximum"),
                ("gt", "exclusiveMinimum"),
                ("lt", "exclusiveMaximum"),
            ] {
                if let Some(bound) = i64_of(&bounds, rule) {
                    keywords.insert(keyword.to_owned(), json!(bound));
                }
            }
        }
    }
    if let (Some(rules), Kind::Enum(descriptor)) = (message_of(rules, "enum"), kind) {
        let name_of = |number: i32| {
            descriptor
                .get_value(number)
                .map(|value| value.name().to_owned())
        };
        let allowed: Vec<String> = numbers_of(&rules, "in")
            .into_iter()
            .filter_map(name_of)
            .collect();
        let refused: Vec<String> = numbers_of(&rules, "not_in")
            .into_iter()
            .filter_map(name_of)
            .collect();
        if !allowed.is_empty() {
            keywords.insert("enum".to_owned(), json!(allowed));
        }
        if !refused.is_empty() {
            keywords.insert("not".to_owned(), json!({ "enum": refused }));
        }
    }
    keywords
}

fn set_field(message: &DynamicMessage, name: &str) -> Option<Value> {
    let field = message.descriptor().get_field_by_name(name)?;
    message
        .has_field(&field)
        .then(|| message.get_field(&field).into_owned())
}

fn message_of(message: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    if let Value::Message(inner) = set_field(message, name)? {
        Some(inner)
    } else {
        None
    }
}

fn bool_of(message: &DynamicMessage, name: &str) -> bool {
    matches!(set_field(message, name), Some(Value::Bool(true)))
}

fn enum_of(message: &DynamicMessage, name: &str) -> Option<i32> {
    set_field(message, name)?.as_enum_number()
}

fn u64_of(message: &DynamicMessage, name: &str) -> Option<u64> {
    set_field(message, name)?.as_u64()
}

fn i64_of(message: &DynamicMessage, name: &str) -> Option<i64> {
    let value = set_field(message, name)?;
    value
        .as_i64()
        .or_else(|| value.as_i32().map(i64::from))
        .or_else(|| value.as_u32().map(i64::from))
        .or_else(|| value.as_u64().and_then(|value| i64::try_from(value).ok()))
}

fn string_of(message: &DynamicMessage, name: &str) -> Option<String> {
    set_field(message, name)?.as_str().map(str::to_owned)
}

fn strings_of(message: &DynamicMessage, name: &str) -> Vec<String> {
    match set_field(message, name) {
        Some(Value::List(values)) => values
            .iter()
            .filter_map(|value| value.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn numbers_of(message: &DynamicMessage, name: &str) -> Vec<i32> {
    match set_field(message, name) {
        Some(Value::List(values)) => values.iter().filter_map(Value::as_i32).collect(),
        _ => Vec::new(),
    }
}

/// The characters of Unicode's `Z` category (space, line and paragraph separators), for a
/// character class.
const SEPARATORS: &str = "\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// A `buf.validate` pattern (RE2) as JSON Schema writes one (ECMA-262, which Python's `re` also
/// reads): `\x{HHHH}` becomes `\uHHHH` and `\p{Z}` (only ever used inside a class here) its
/// characters; everything else the protos use is the same in both.
fn ecma_pattern(re2: &str) -> String {
    let mut out = String::with_capacity(re2.len());
    let mut rest = re2;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escape = &rest[at..];
        if let Some(tail) = escape.strip_prefix("\\p{Z}") {
            out.push_str(SEPARATORS);
            rest = tail;
        } else if let Some(hex) = escape
            .strip_prefix("\\x{")
            .and_then(|tail| tail.split_once('}'))
            .filter(|(digits, _)| {
                (1..=4).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_hexdigit())
            })
        {
            out.push_str(&format!("\\u{:0>4}", hex.0.to_ascii_lowercase()));
            rest = hex.1;
        } else {
            // Any other escape, two characters, as it is.
            let length = escape.chars().take(2).map(char::len_utf8).sum();
            out.push_str(&escape[..length]);
            rest = &escape[length..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re2_escapes_become_the_ecma_ones_with_the_same_meaning() {
        assert_eq!(
            ecma_pattern("[^\\x{09}-\\x{0D}\\x{85}\\p{Z}]"),
            format!("[^\\u0009-\\u000d\\u0085{SEPARATORS}]")
        );
        assert_eq!(ecma_pattern("^[!-~]{1,255}$"), "^[!-~]{1,255}$");
        assert_eq!(ecma_pattern("a\\.b\\\\"), "a\\.b\\\\");
    }
}
