//! Custom fields (the account's catalogue) as the API shows them, and their values on tickets
//! between `google.protobuf.Value` and the domain (a value as sent, [`RawValue`]; a value as
//! stored, JSON).

use prost_types::value::Kind;

use super::{optional_timestamp, timestamp};
use crate::domain::{CustomField, FieldKind, RawValue, StoredValues};
use crate::wire::proto::v1;

/// A value as a request carries it. No field takes a struct: it is read as a list holding a
/// null, which every field's type refuses.
impl From<&prost_types::Value> for RawValue {
    fn from(value: &prost_types::Value) -> Self {
        match &value.kind {
            None | Some(Kind::NullValue(_)) => RawValue::Null,
            Some(Kind::BoolValue(checked)) => RawValue::Bool(*checked),
            Some(Kind::NumberValue(number)) => RawValue::Number(*number),
            Some(Kind::StringValue(text)) => RawValue::Text(text.clone()),
            Some(Kind::ListValue(list)) => {
                RawValue::List(list.values.iter().map(RawValue::from).collect())
            }
            Some(Kind::StructValue(_)) => RawValue::List(vec![RawValue::Null]),
        }
    }
}

/// A stored value as the API returns it.
pub fn json_value(json: serde_json::Value) -> prost_types::Value {
    use serde_json::Value as Json;
    let kind = match json {
        Json::Null => Kind::NullValue(prost_types::NullValue::NullValue.into()),
        Json::Bool(checked) => Kind::BoolValue(checked),
        Json::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or_default()),
        Json::String(text) => Kind::StringValue(text),
        Json::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(json_value).collect(),
        }),
        Json::Object(fields) => Kind::StructValue(prost_types::Struct {
            fields: fields
                .into_iter()
                .map(|(key, value)| (key, json_value(value)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A ticket's stored values as the API returns them.
pub fn json_values(values: StoredValues) -> std::collections::HashMap<String, prost_types::Value> {
    values
        .into_iter()
        .map(|(key, value)| (key, json_value(value)))
        .collect()
}

impl From<&FieldKind> for v1::CustomFieldKind {
    fn from(kind: &FieldKind) -> Self {
        match kind {
            FieldKind::Text => v1::CustomFieldKind::Text,
            FieldKind::LongText => v1::CustomFieldKind::LongText,
            FieldKind::Integer => v1::CustomFieldKind::Integer,
            FieldKind::Decimal => v1::CustomFieldKind::Decimal,
            FieldKind::Checkbox => v1::CustomFieldKind::Checkbox,
            FieldKind::Date => v1::CustomFieldKind::Date,
            FieldKind::SingleChoice(_) => v1::CustomFieldKind::SingleChoice,
            FieldKind::MultipleChoice(_) => v1::CustomFieldKind::MultipleChoice,
            FieldKind::Pattern(_) => v1::CustomFieldKind::Pattern,
        }
    }
}

impl From<&CustomField> for v1::CustomField {
    fn from(field: &CustomField) -> Self {
        v1::CustomField {
            id: field.id.to_string(),
            key: field.key.as_str().to_owned(),
            title: field.title.clone(),
            description: field.description.clone(),
            kind: v1::CustomFieldKind::from(&field.kind).into(),
            choices: field.kind.choices().to_vec(),
            pattern: field.kind.pattern().unwrap_or_default().to_owned(),
            customer_visible: field.customer_visible,
            customer_editable: field.customer_editable,
            required_to_solve: field.required_to_solve,
            position: field.position,
            retired: field.is_retired(),
            retire_time: optional_timestamp(field.retired_at),
            create_time: Some(timestamp(field.created_at)),
            update_time: Some(timestamp(field.updated_at)),
        }
    }
}
