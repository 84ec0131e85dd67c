//! `supportdesk.v1.CustomFieldService`: the account's catalogue of custom fields, as admins
//! define it and agents read it (docs/tickets.md, "Custom fields").

use tonic::{Request, Response, Status};

use super::{KeyedRequest, answer, created, required, scope, stored_as, uuid_field};
use crate::domain::custom_field::{parse_description, parse_position, parse_title};
use crate::domain::{CustomField, FieldKey, FieldKind, InvalidValue, KindProblem};
use crate::errors::{AppError, FieldViolations};
use crate::idempotency::IdempotencyPolicy;
use crate::service::{CustomFields, FieldUpdate, NewFieldRequest};
use crate::wire::proto::v1;

/// What UpdateCustomField's mask may name.
const UPDATABLE: &str = "title, description, choices, pattern, customer_visible, \
                         customer_editable, required_to_solve, position";

pub struct CustomFieldApi {
    fields: CustomFields,
    idempotency: IdempotencyPolicy,
}

impl CustomFieldApi {
    pub fn new(fields: CustomFields, idempotency: IdempotencyPolicy) -> Self {
        Self {
            fields,
            idempotency,
        }
    }
}

/// The stored name of a kind as the wire numbers it.
fn kind_name(raw: i32) -> Result<&'static str, InvalidValue> {
    Ok(match v1::CustomFieldKind::try_from(raw) {
        Ok(v1::CustomFieldKind::Text) => "text",
        Ok(v1::CustomFieldKind::LongText) => "long_text",
        Ok(v1::CustomFieldKind::Integer) => "integer",
        Ok(v1::CustomFieldKind::Decimal) => "decimal",
        Ok(v1::CustomFieldKind::Checkbox) => "checkbox",
        Ok(v1::CustomFieldKind::Date) => "date",
        Ok(v1::CustomFieldKind::SingleChoice) => "single_choice",
        Ok(v1::CustomFieldKind::MultipleChoice) => "multiple_choice",
        Ok(v1::CustomFieldKind::Pattern) => "pattern",
        Ok(v1::CustomFieldKind::Unspecified) | Err(_) => {
            return Err(InvalidValue::new(
                "required: one of TEXT, LONG_TEXT, INTEGER, DECIMAL, CHECKBOX, DATE, \
                 SINGLE_CHOICE, MULTIPLE_CHOICE, PATTERN",
            ));
        }
    })
}

/// Records a refused part of a kind under the request field it came from.
fn add_kind_problem(violations: &mut FieldViolations, problem: KindProblem) {
    match problem {
        KindProblem::Kind(problem) => violations.add("custom_field.kind", &problem),
        KindProblem::Choices(Some(index), problem) => {
            violations.add(format!("custom_field.choices[{index}]"), &problem);
        }
        KindProblem::Choices(None, problem) => violations.add("custom_field.choices", &problem),
        KindProblem::Pattern(problem) => violations.add("custom_field.pattern", &problem),
    }
}

impl TryFrom<v1::CustomField> for NewFieldRequest {
    type Error = AppError;

    fn try_from(field: v1::CustomField) -> Result<Self, AppError> {
        let mut violations = FieldViolations::new();
        let key = violations.check("custom_field.key", FieldKey::parse(&field.key));
        let title = violations.check("custom_field.title", parse_title(&field.title));
        let description = violations.check(
            "custom_field.description",
            parse_description(&field.description),
        );
        let position = violations.check("custom_field.position", parse_position(field.position));
        let kind = match violations.check("custom_field.kind", kind_name(field.kind)) {
            Some(name) => {
                let pattern = (!field.pattern.is_empty()).then_some(field.pattern.as_str());
                match FieldKind::parse(name, &field.choices, pattern) {
                    Ok(kind) => Some(kind),
                    Err(problem) => {
                        add_kind_problem(&mut violations, problem);
                        None
                    }
                }
            }
            None => None,
        };
        let (Some(key), Some(title), Some(description), Some(position), Some(kind)) =
            (key, title, description, position, kind)
        else {
            return Err(AppError::InvalidArgument(violations));
        };
        Ok(Self {
            key,
            title,
            description,
            kind,
            customer_visible: field.customer_visible,
            customer_editable: field.customer_editable,
            required_to_solve: field.required_to_solve,
            position,
        })
    }
}

#[tonic::async_trait]
impl v1::custom_field_service_server::CustomFieldService for CustomFieldApi {
    async fn create_custom_field(
        &self,
        mut request: Request<v1::CreateCustomFieldRequest>,
    ) -> Result<Response<v1::CustomField>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let Some(field) = request.into_inner().custom_field else {
            return Err(AppError::invalid_field("custom_field", &required()).into());
        };
        let declared = NewFieldRequest::try_from(field)?;
        let respond = |field: &CustomField| {
            created(
                Response::new(v1::CustomField::from(field)),
                &format!("/v1/customFields/{}", field.id),
            )
        };
        let store = stored_as(&respond);
        let outcome = self.fields.create(&keyed.write(&store), declared).await?;
        answer(outcome, &respond)
    }

    async fn get_custom_field(
        &self,
        mut request: Request<v1::GetCustomFieldRequest>,
    ) -> Result<Response<v1::CustomField>, Status> {
        let scope = scope(&mut request)?;
        let id = uuid_field(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        let field = self.fields.get(&scope, id).await?;
        Ok(Response::new(v1::CustomField::from(&field)))
    }

    async fn list_custom_fields(
        &self,
        mut request: Request<v1::ListCustomFieldsRequest>,
    ) -> Result<Response<v1::ListCustomFieldsResponse>, Status> {
        let scope = scope(&mut request)?;
        let fields = self
            .fields
            .list(&scope, request.get_ref().show_retired)
            .await?;
        Ok(Response::new(v1::ListCustomFieldsResponse {
            custom_fields: fields.iter().map(v1::CustomField::from).collect(),
        }))
    }

    async fn update_custom_field(
        &self,
        mut request: Request<v1::UpdateCustomFieldRequest>,
    ) -> Result<Response<v1::CustomField>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let Some(field) = message.custom_field else {
            return Err(AppError::invalid_field("custom_field", &required()).into());
        };
        let id = violations.check("custom_field.id", uuid_field(&field.id));
        let paths = message
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            violations.add(
                "update_mask",
                &InvalidValue::new(format!("must name one or more of: {UPDATABLE}")),
            );
        }
        let mut update = FieldUpdate::default();
        for path in &paths {
            match path.as_str() {
                "title" => {
                    update.title =
                        violations.check("custom_field.title", parse_title(&field.title));
                }
                "description" => {
                    update.description = violations.check(
                        "custom_field.description",
                        parse_description(&field.description),
                    );
                }
                "choices" => update.choices = Some(field.choices.clone()),
                "pattern" => update.pattern = Some(field.pattern.clone()),
                "customer_visible" => update.customer_visible = Some(field.customer_visible),
                "customer_editable" => update.customer_editable = Some(field.customer_editable),
                "required_to_solve" => update.required_to_solve = Some(field.required_to_solve),
                "position" => {
                    update.position =
                        violations.check("custom_field.position", parse_position(field.position));
                }
                "key" | "kind" => violations.add(
                    "update_mask",
                    &InvalidValue::new(format!(
                        "a field's {path} never changes: values on tickets are read by it; \
                         define another field instead"
                    )),
                ),
                other => violations.add(
                    "update_mask",
                    &InvalidValue::new(format!(
                        "{other:?} cannot be changed; the fields are {UPDATABLE}"
                    )),
                ),
            }
        }
        let Some(id) = id else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        if !violations.is_empty() {
            return Err(AppError::InvalidArgument(violations).into());
        }
        let respond = |field: &CustomField| Response::new(v1::CustomField::from(field));
        let store = stored_as(&respond);
        let outcome = self.fields.update(&keyed.write(&store), id, update).await?;
        answer(outcome, &respond)
    }

    async fn retire_custom_field(
        &self,
        mut request: Request<v1::RetireCustomFieldRequest>,
    ) -> Result<Response<v1::CustomField>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let id = uuid_field(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        let respond = |field: &CustomField| Response::new(v1::CustomField::from(field));
        let store = stored_as(&respond);
        let outcome = self.fields.retire(&keyed.write(&store), id).await?;
        answer(outcome, &respond)
    }
}
