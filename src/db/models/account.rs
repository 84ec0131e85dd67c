//! The `accounts` table: tenants. Queries answer in [`domain::Account`]; the row type stays
//! inside this module.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::db::KeepPrepared;
use crate::db::schema::accounts;
use crate::domain::{self, AccountId, AccountName, AccountSlug};
use crate::errors::AppResult;

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = accounts, check_for_backend(diesel::pg::Pg))]
pub struct AccountRow {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = accounts)]
pub struct NewAccount<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub slug: &'a str,
}

impl AccountRow {
    pub async fn find(
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> AppResult<Option<domain::Account>> {
        accounts::table
            .find(id)
            .select(AccountRow::as_select())
            .first(conn)
            .await
            .optional()?
            .map(AccountRow::into_domain)
            .transpose()
    }

    pub async fn find_by_slug(
        conn: &mut AsyncPgConnection,
        slug: &str,
    ) -> AppResult<Option<domain::Account>> {
        accounts::table
            .filter(accounts::slug.eq(slug))
            .select(AccountRow::as_select())
            .first(conn)
            .await
            .optional()?
            .map(AccountRow::into_domain)
            .transpose()
    }
}

impl NewAccount<'_> {
    /// Inserts the account. The database's error is kept, so a caller can tell a taken slug.
    pub async fn insert(
        &self,
        conn: &mut AsyncPgConnection,
    ) -> QueryResult<AppResult<domain::Account>> {
        KeepPrepared(
            diesel::insert_into(accounts::table)
                .values(self)
                .returning(AccountRow::as_returning()),
        )
        .get_result(conn)
        .await
        .map(AccountRow::into_domain)
    }
}

impl AccountRow {
    /// The domain view of this row.
    fn into_domain(self) -> AppResult<domain::Account> {
        Ok(domain::Account {
            id: AccountId::from_uuid(self.id),
            name: AccountName::parse(&self.name)
                .map_err(|problem| corrupt("accounts.name", problem))?,
            slug: AccountSlug::parse(&self.slug)
                .map_err(|problem| corrupt("accounts.slug", problem))?,
            created_at: self.created_at,
        })
    }
}
