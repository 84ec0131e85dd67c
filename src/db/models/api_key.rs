//! The `api_keys` table: credentials of internal services. Queries answer in
//! [`domain::ApiKey`]; the row type stays inside this module.

use chrono::{DateTime, Utc};
use diesel::dsl::IntervalDsl;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::db::KeepPrepared;
use crate::db::schema::api_keys;
use crate::domain::{self, AccountId, ApiKeyId, ApiKeyName, PageCursor, Role};
use crate::errors::AppResult;

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub prefix: String,
    /// `text[]` allows NULL elements in PostgreSQL's eyes; the CHECK constraint does not.
    pub roles: Vec<Option<String>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: &'a str,
    pub prefix: &'a str,
    pub secret_hash: &'a [u8],
    pub roles: Vec<Option<&'a str>>,
    pub created_by: Uuid,
}

impl NewApiKey<'_> {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> AppResult<domain::ApiKey> {
        KeepPrepared(
            diesel::insert_into(api_keys::table)
                .values(self)
                .returning(ApiKeyRow::as_returning()),
        )
        .get_result(conn)
        .await?
        .into_domain()
    }
}

impl ApiKeyRow {
    pub async fn find_by_secret_hash(
        conn: &mut AsyncPgConnection,
        secret_hash: &[u8],
    ) -> AppResult<Option<domain::ApiKey>> {
        api_keys::table
            .filter(api_keys::secret_hash.eq(secret_hash))
            .select(ApiKeyRow::as_select())
            .first(conn)
            .await
            .optional()?
            .map(ApiKeyRow::into_domain)
            .transpose()
    }

    /// Notes that the key was used, at most once a minute: a write on every call would cost
    /// more than the information is worth.
    pub async fn record_use(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
        // A minute by PostgreSQL's clock, which wrote `last_used_at`.
        diesel::update(api_keys::table)
            .filter(api_keys::id.eq(id))
            .filter(
                api_keys::last_used_at
                    .is_null()
                    .or(api_keys::last_used_at.lt((diesel::dsl::now
                        .into_sql::<diesel::sql_types::Timestamptz>()
                        - 1.minute())
                    .nullable())),
            )
            .set(api_keys::last_used_at.eq(diesel::dsl::now))
            .execute(conn)
            .await
    }

    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        after: Option<PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<domain::ApiKey>> {
        let mut query = api_keys::table
            .filter(api_keys::account_id.eq(account_id))
            .select(ApiKeyRow::as_select())
            .order((api_keys::created_at.desc(), api_keys::id.desc()))
            .limit(limit)
            .into_boxed();
        if let Some(cursor) = after {
            query = query.filter(api_keys::created_at.le(cursor.at)).filter(
                api_keys::created_at
                    .lt(cursor.at)
                    .or(api_keys::id.lt(cursor.id)),
            );
        }
        query
            .load::<ApiKeyRow>(conn)
            .await?
            .into_iter()
            .map(ApiKeyRow::into_domain)
            .collect()
    }

    pub async fn find_in_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<domain::ApiKey>> {
        api_keys::table
            .filter(api_keys::account_id.eq(account_id))
            .filter(api_keys::id.eq(id))
            .select(ApiKeyRow::as_select())
            .first(conn)
            .await
            .optional()?
            .map(ApiKeyRow::into_domain)
            .transpose()
    }

    /// The stored hash of a key's secret, which names its state in Redis.
    pub async fn secret_hash_of(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> QueryResult<Option<Vec<u8>>> {
        api_keys::table
            .filter(api_keys::account_id.eq(account_id))
            .filter(api_keys::id.eq(id))
            .select(api_keys::secret_hash)
            .first(conn)
            .await
            .optional()
    }

    /// Revokes the key `id` of `account_id`. Revoking a revoked key keeps its first revocation
    /// time; `None` when the account has no such key.
    pub async fn revoke(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<domain::ApiKey>> {
        let revoked = diesel::update(api_keys::table)
            .filter(api_keys::account_id.eq(account_id))
            .filter(api_keys::id.eq(id))
            .filter(api_keys::revoked_at.is_null())
            .set(api_keys::revoked_at.eq(diesel::dsl::now))
            .returning(ApiKeyRow::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        match revoked {
            Some(key) => key.into_domain().map(Some),
            None => Self::find_in_account(conn, account_id, id).await,
        }
    }
}

impl ApiKeyRow {
    /// The domain view of this row.
    fn into_domain(self) -> AppResult<domain::ApiKey> {
        Ok(domain::ApiKey {
            id: ApiKeyId::from_uuid(self.id),
            account_id: AccountId::from_uuid(self.account_id),
            name: ApiKeyName::parse(&self.name)
                .map_err(|problem| corrupt("api_keys.name", problem))?,
            prefix: self.prefix,
            roles: self
                .roles
                .iter()
                .map(|role| Role::parse(role.as_deref().unwrap_or_default()))
                .collect::<Result<_, _>>()
                .map_err(|problem| corrupt("api_keys.roles", problem))?,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
        })
    }
}
