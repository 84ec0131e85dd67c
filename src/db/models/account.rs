//! The `accounts` table: tenants.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::db::schema::accounts;
use crate::domain::{self, AccountId, AccountName, AccountSlug};
use crate::errors::AppResult;

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = accounts, check_for_backend(diesel::pg::Pg))]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = accounts)]
pub struct NewAccount<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub slug: &'a str,
}

impl Account {
    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Self>> {
        accounts::table
            .find(id)
            .select(Self::as_select())
            .first(conn)
            .await
            .optional()
    }

    pub async fn find_by_slug(
        conn: &mut AsyncPgConnection,
        slug: &str,
    ) -> QueryResult<Option<Self>> {
        accounts::table
            .filter(accounts::slug.eq(slug))
            .select(Self::as_select())
            .first(conn)
            .await
            .optional()
    }
}

impl NewAccount<'_> {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<Account> {
        diesel::insert_into(accounts::table)
            .values(self)
            .returning(Account::as_returning())
            .get_result(conn)
            .await
    }
}

impl Account {
    /// The domain view of this row.
    pub fn into_domain(self) -> AppResult<domain::Account> {
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
