//! Custom fields (the account's catalogue) as the API shows them.

use super::{optional_timestamp, timestamp};
use crate::domain::{CustomField, FieldKind};
use crate::wire::proto::v1;

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
