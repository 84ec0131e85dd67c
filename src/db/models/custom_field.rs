//! The `custom_fields` table: the catalogue of typed fields an account's admins define for its
//! tickets (docs/tickets.md, "Custom fields"). The values live on the ticket
//! (`tickets.custom_fields`); this table says what each key holds.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::db::schema::custom_fields;
use crate::domain::{self, Catalogue, FieldKey, FieldKind, KindProblem};
use crate::errors::AppResult;

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = custom_fields, check_for_backend(diesel::pg::Pg))]
pub struct CustomFieldRow {
    id: Uuid,
    account_id: Uuid,
    key: String,
    title: String,
    kind: String,
    choices: Vec<Option<String>>,
    pattern: Option<String>,
    description: String,
    customer_visible: bool,
    customer_editable: bool,
    required_to_solve: bool,
    position: i32,
    retired_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = custom_fields)]
pub struct NewCustomField<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub key: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub kind: &'a str,
    pub choices: Vec<Option<&'a str>>,
    pub pattern: Option<&'a str>,
    pub customer_visible: bool,
    pub customer_editable: bool,
    pub required_to_solve: bool,
    pub position: i32,
}

/// A field's columns after an update: the whole changeable part, merged by the service from
/// the current field and what the mask named (key and type never change).
#[derive(Debug, AsChangeset)]
#[diesel(table_name = custom_fields)]
pub struct CustomFieldChangeset<'a> {
    pub title: &'a str,
    pub description: &'a str,
    pub choices: Vec<Option<&'a str>>,
    pub pattern: Option<&'a str>,
    pub customer_visible: bool,
    pub customer_editable: bool,
    pub required_to_solve: bool,
    pub position: i32,
    pub updated_at: DateTime<Utc>,
}

impl NewCustomField<'_> {
    /// Inserts the field. The database's error is kept, so the caller can tell a taken key.
    pub async fn insert(
        &self,
        conn: &mut AsyncPgConnection,
    ) -> QueryResult<AppResult<domain::CustomField>> {
        diesel::insert_into(custom_fields::table)
            .values(self)
            .returning(CustomFieldRow::as_returning())
            .get_result(conn)
            .await
            .map(CustomFieldRow::into_domain)
    }
}

impl CustomFieldRow {
    /// How many fields the account has, retired ones included (a retired field keeps its key
    /// and its values).
    pub async fn count_for_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
    ) -> AppResult<i64> {
        Ok(custom_fields::table
            .filter(custom_fields::account_id.eq(account_id))
            .count()
            .get_result(conn)
            .await?)
    }

    pub async fn find_in_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<domain::CustomField>> {
        custom_fields::table
            .filter(custom_fields::account_id.eq(account_id))
            .filter(custom_fields::id.eq(id))
            .select(CustomFieldRow::as_select())
            .first(conn)
            .await
            .optional()?
            .map(CustomFieldRow::into_domain)
            .transpose()
    }

    /// Locks the field for a change in this transaction.
    pub async fn lock_in_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<domain::CustomField>> {
        custom_fields::table
            .filter(custom_fields::account_id.eq(account_id))
            .filter(custom_fields::id.eq(id))
            .select(CustomFieldRow::as_select())
            .for_no_key_update()
            .first(conn)
            .await
            .optional()?
            .map(CustomFieldRow::into_domain)
            .transpose()
    }

    /// Every field of the account, retired ones included, in the order they are shown: the
    /// one query a ticket write that carries values makes, and what the filter compiler reads
    /// to type `custom_fields.<key>`.
    pub async fn catalogue_for_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
    ) -> AppResult<Catalogue> {
        let fields = custom_fields::table
            .filter(custom_fields::account_id.eq(account_id))
            .select(CustomFieldRow::as_select())
            .load::<CustomFieldRow>(conn)
            .await?
            .into_iter()
            .map(CustomFieldRow::into_domain)
            .collect::<AppResult<Vec<_>>>()?;
        Ok(Catalogue::new(fields))
    }

    /// Writes `changes` to the field.
    pub async fn update(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
        changes: &CustomFieldChangeset<'_>,
    ) -> AppResult<domain::CustomField> {
        diesel::update(
            custom_fields::table
                .filter(custom_fields::account_id.eq(account_id))
                .filter(custom_fields::id.eq(id)),
        )
        .set(changes)
        .returning(CustomFieldRow::as_returning())
        .get_result(conn)
        .await?
        .into_domain()
    }

    /// Retires the field (once: a retired field keeps its first retirement time).
    pub async fn retire(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<domain::CustomField> {
        diesel::update(
            custom_fields::table
                .filter(custom_fields::account_id.eq(account_id))
                .filter(custom_fields::id.eq(id)),
        )
        .set((
            custom_fields::retired_at.eq(diesel::dsl::now),
            custom_fields::updated_at.eq(diesel::dsl::now),
        ))
        .returning(CustomFieldRow::as_returning())
        .get_result(conn)
        .await?
        .into_domain()
    }

    fn into_domain(self) -> AppResult<domain::CustomField> {
        let key =
            FieldKey::parse(&self.key).map_err(|problem| corrupt("custom_fields.key", problem))?;
        let choices: Vec<String> = self.choices.into_iter().flatten().collect();
        let kind =
            FieldKind::parse(&self.kind, &choices, self.pattern.as_deref()).map_err(|problem| {
                match problem {
                    KindProblem::Kind(problem) => corrupt("custom_fields.kind", problem),
                    KindProblem::Choices(_, problem) => corrupt("custom_fields.choices", problem),
                    KindProblem::Pattern(problem) => corrupt("custom_fields.pattern", problem),
                }
            })?;
        Ok(domain::CustomField {
            id: self.id,
            account_id: self.account_id,
            key,
            title: self.title,
            description: self.description,
            kind,
            customer_visible: self.customer_visible,
            customer_editable: self.customer_editable,
            required_to_solve: self.required_to_solve,
            position: self.position,
            retired_at: self.retired_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}
