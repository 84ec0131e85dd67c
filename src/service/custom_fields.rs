//! The custom field catalogue, as admins manage it and agents read it (docs/tickets.md, "Custom
//! fields"): define a field, read, list, change what may change (never its key or type), retire
//! it. [`CustomFields::catalogue`] is the account's whole catalogue, for the writes that check
//! values against it and for the filter that types `custom_fields.<key>`.

use diesel_async::RunQueryDsl;

use crate::db::models::custom_field::{CustomFieldChangeset, CustomFieldRow, NewCustomField};
use crate::db::{self, PgPool};
use crate::domain::custom_field::MAX_FIELDS_PER_ACCOUNT;
use crate::domain::{Catalogue, CustomField, FieldKey, FieldKind};
use crate::errors::{AppError, AppResult, PreconditionViolation, Reason, Resource};
use crate::idempotency::{self, KeyedWrite, Outcome, as_is};
use crate::scope::RequestScope;
use crate::service::on_unique_violation;

/// A field as CreateCustomField declares it, parsed.
#[derive(Clone, Debug)]
pub struct NewFieldRequest {
    pub key: FieldKey,
    pub title: String,
    pub description: String,
    pub kind: FieldKind,
    pub customer_visible: bool,
    pub customer_editable: bool,
    pub required_to_solve: bool,
    pub position: i32,
}

/// An update, as the mask named its fields; `None` leaves a part as it is.
#[derive(Clone, Debug, Default)]
pub struct FieldUpdate {
    pub title: Option<String>,
    pub description: Option<String>,
    /// New options of a choice field (the service checks the field is one).
    pub choices: Option<Vec<String>>,
    /// A new pattern of a pattern field.
    pub pattern: Option<String>,
    pub customer_visible: Option<bool>,
    pub customer_editable: Option<bool>,
    pub required_to_solve: Option<bool>,
    pub position: Option<i32>,
}

#[derive(Clone)]
pub struct CustomFields {
    pool: PgPool,
}

impl CustomFields {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Defines a field. At most [`MAX_FIELDS_PER_ACCOUNT`] per account, retired ones included
    /// (FAILED_PRECONDITION `CUSTOM_FIELD_LIMIT`); a key the account has already, live or
    /// retired, is ALREADY_EXISTS `CUSTOM_FIELD_KEY_TAKEN`.
    pub async fn create(
        &self,
        write: &KeyedWrite<'_, CustomField>,
        request: NewFieldRequest,
    ) -> AppResult<Outcome<CustomField>> {
        let caller = write.caller()?;
        let account_id = caller.account_id.as_uuid();
        check_customer_flags(request.customer_visible, request.customer_editable)?;
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            // Fields of one account are counted one at a time.
            diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 39))")
                .bind::<diesel::sql_types::Uuid, _>(account_id)
                .execute(conn)
                .await?;
            let count = CustomFieldRow::count_for_account(conn, account_id).await?;
            if count >= MAX_FIELDS_PER_ACCOUNT as i64 {
                return Err(AppError::FailedPrecondition {
                    reason: Reason::CustomFieldLimit,
                    message: format!(
                        "the account has {count} custom fields, the most it may have (retired \
                         fields count: their values stay on tickets)"
                    ),
                    violations: vec![PreconditionViolation {
                        kind: "CUSTOM_FIELD_LIMIT".to_owned(),
                        subject: format!("accounts/{account_id}"),
                        description: format!(
                            "at most {MAX_FIELDS_PER_ACCOUNT} custom fields per account"
                        ),
                    }],
                });
            }
            NewCustomField {
                id: uuid::Uuid::now_v7(),
                account_id,
                key: request.key.as_str(),
                title: &request.title,
                description: &request.description,
                kind: request.kind.type_name(),
                choices: request
                    .kind
                    .choices()
                    .iter()
                    .map(|option| Some(option.as_str()))
                    .collect(),
                pattern: request.kind.pattern(),
                customer_visible: request.customer_visible,
                customer_editable: request.customer_editable,
                required_to_solve: request.required_to_solve,
                position: request.position,
            }
            .insert(conn)
            .await
            .map_err(|error| {
                on_unique_violation(
                    error,
                    "custom_fields_account_key_idx",
                    AppError::AlreadyExists {
                        reason: Reason::CustomFieldKeyTaken,
                        message: format!(
                            "key: the account has a field with the key {} already (retired \
                             fields keep their keys)",
                            request.key
                        ),
                    },
                )
            })?
        })
        .await
    }

    pub async fn get(&self, scope: &RequestScope, id: uuid::Uuid) -> AppResult<CustomField> {
        let caller = scope.caller()?;
        db::with_connection(&self.pool, async |conn| {
            CustomFieldRow::find_in_account(conn, caller.account_id.as_uuid(), id).await
        })
        .await?
        .ok_or_else(|| AppError::not_found(Resource::CustomField, id))
    }

    /// The account's fields in the order they are shown; retired ones only when asked for.
    pub async fn list(
        &self,
        scope: &RequestScope,
        show_retired: bool,
    ) -> AppResult<Vec<CustomField>> {
        let catalogue = self.catalogue(scope).await?;
        Ok(catalogue
            .fields()
            .iter()
            .filter(|field| show_retired || !field.is_retired())
            .cloned()
            .collect())
    }

    /// The caller's account's whole catalogue, retired fields included, in one query.
    pub async fn catalogue(&self, scope: &RequestScope) -> AppResult<Catalogue> {
        let caller = scope.caller()?;
        db::with_connection(&self.pool, async |conn| {
            CustomFieldRow::catalogue_for_account(conn, caller.account_id.as_uuid()).await
        })
        .await
    }

    /// Changes what `update` names. The key and the type never change; the options of a choice
    /// field and the pattern of a pattern field may, and values already on tickets stay as they
    /// are (readable) while new writes meet the new definition.
    pub async fn update(
        &self,
        write: &KeyedWrite<'_, CustomField>,
        id: uuid::Uuid,
        update: FieldUpdate,
    ) -> AppResult<Outcome<CustomField>> {
        let caller = write.caller()?;
        let account_id = caller.account_id.as_uuid();
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            let current = CustomFieldRow::lock_in_account(conn, account_id, id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::CustomField, id))?;
            let mut kind = current.kind.clone();
            if let Some(choices) = &update.choices {
                kind = kind
                    .with_choices(choices)
                    .map_err(|problem| kind_refusal("custom_field.choices", problem))?;
            }
            if let Some(pattern) = &update.pattern {
                kind = kind
                    .with_pattern(pattern)
                    .map_err(|problem| kind_refusal("custom_field.pattern", problem))?;
            }
            let customer_visible = update.customer_visible.unwrap_or(current.customer_visible);
            let customer_editable = update
                .customer_editable
                .unwrap_or(current.customer_editable);
            check_customer_flags(customer_visible, customer_editable)?;
            CustomFieldRow::update(
                conn,
                account_id,
                id,
                &CustomFieldChangeset {
                    title: update.title.as_deref().unwrap_or(&current.title),
                    description: update
                        .description
                        .as_deref()
                        .unwrap_or(&current.description),
                    choices: kind
                        .choices()
                        .iter()
                        .map(|option| Some(option.as_str()))
                        .collect(),
                    pattern: kind.pattern(),
                    customer_visible,
                    customer_editable,
                    required_to_solve: update
                        .required_to_solve
                        .unwrap_or(current.required_to_solve),
                    position: update.position.unwrap_or(current.position),
                    updated_at: chrono::Utc::now(),
                },
            )
            .await
        })
        .await
    }

    /// Retires the field: its values stay on tickets, readable, and it takes no new writes. A
    /// retired field stays retired (its key is not freed), and retiring it again answers it as
    /// it is.
    pub async fn retire(
        &self,
        write: &KeyedWrite<'_, CustomField>,
        id: uuid::Uuid,
    ) -> AppResult<Outcome<CustomField>> {
        let caller = write.caller()?;
        let account_id = caller.account_id.as_uuid();
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            let current = CustomFieldRow::lock_in_account(conn, account_id, id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::CustomField, id))?;
            if current.is_retired() {
                return Ok(current);
            }
            CustomFieldRow::retire(conn, account_id, id).await
        })
        .await
    }
}

/// A customer sets only what a customer sees.
fn check_customer_flags(customer_visible: bool, customer_editable: bool) -> AppResult<()> {
    if customer_editable && !customer_visible {
        return Err(AppError::invalid_field(
            "custom_field.customer_editable",
            &crate::domain::InvalidValue::new(
                "a field customers edit is one they see: set customer_visible too",
            ),
        ));
    }
    Ok(())
}

fn kind_refusal(field: &str, problem: crate::domain::KindProblem) -> AppError {
    use crate::domain::KindProblem;
    match problem {
        KindProblem::Kind(problem) => AppError::invalid_field("custom_field.kind", &problem),
        KindProblem::Choices(Some(index), problem) => {
            AppError::invalid_field(format!("custom_field.choices[{index}]"), &problem)
        }
        KindProblem::Choices(None, problem) | KindProblem::Pattern(problem) => {
            AppError::invalid_field(field, &problem)
        }
    }
}
