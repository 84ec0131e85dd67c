//! The `api_keys` table: credentials of internal services.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::db::schema::api_keys;
use crate::domain::{self, AccountId, ApiKeyId, ApiKeyName, PageCursor, Role};
use crate::errors::AppResult;

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub struct ApiKey {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub prefix: String,
    /// `text[]` allows NULL elements in PostgreSQL's eyes; the CHECK constraint does not.
    pub roles: Vec<Option<String>>,
    pub created_by: Uuid,
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
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<ApiKey> {
        diesel::insert_into(api_keys::table)
            .values(self)
            .returning(ApiKey::as_returning())
            .get_result(conn)
            .await
    }
}

impl ApiKey {
    pub async fn find_by_secret_hash(
        conn: &mut AsyncPgConnection,
        secret_hash: &[u8],
    ) -> QueryResult<Option<Self>> {
        api_keys::table
            .filter(api_keys::secret_hash.eq(secret_hash))
            .select(Self::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// Notes that the key was used, at most once a minute: a write on every call would cost
    /// more than the information is worth.
    pub async fn record_use(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
        let a_minute_ago = Utc::now() - chrono::Duration::minutes(1);
        diesel::update(api_keys::table)
            .filter(api_keys::id.eq(id))
            .filter(
                api_keys::last_used_at
                    .is_null()
                    .or(api_keys::last_used_at.lt(a_minute_ago)),
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
    ) -> QueryResult<Vec<Self>> {
        let mut query = api_keys::table
            .filter(api_keys::account_id.eq(account_id))
            .select(Self::as_select())
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
        query.load(conn).await
    }

    pub async fn find_in_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> QueryResult<Option<Self>> {
        api_keys::table
            .filter(api_keys::account_id.eq(account_id))
            .filter(api_keys::id.eq(id))
            .select(Self::as_select())
            .first(conn)
            .await
            .optional()
    }

    /// Revokes the key `id` of `account_id`. Revoking a revoked key keeps its first revocation
    /// time; `None` when the account has no such key.
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

    pub async fn revoke(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> QueryResult<Option<Self>> {
        let revoked = diesel::update(api_keys::table)
            .filter(api_keys::account_id.eq(account_id))
            .filter(api_keys::id.eq(id))
            .filter(api_keys::revoked_at.is_null())
            .set(api_keys::revoked_at.eq(diesel::dsl::now))
            .returning(Self::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        match revoked {
            Some(key) => Ok(Some(key)),
            None => Self::find_in_account(conn, account_id, id).await,
        }
    }
}

impl ApiKey {
    /// The domain view of this row.
    pub fn into_domain(self) -> AppResult<domain::ApiKey> {
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
