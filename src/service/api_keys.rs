//! API keys for internal services: created by an admin, shown once, revocable.

use super::{Page, paginate, rows_to_fetch};
use crate::auth::ApiKeySecret;
use crate::auth::principals::{PrincipalKey, PrincipalState, PrincipalStates};
use crate::db::models::{ApiKeyRow, NewApiKey};
use crate::db::{self, PgPool};
use crate::domain::{self, ApiKeyId, ApiKeyName, PageCursor, PageSize, Role};
use crate::errors::{AppError, AppResult, Resource};
use crate::idempotency::{self, KeyedWrite, Outcome, as_is};
use crate::scope::RequestScope;

#[derive(Clone)]
pub struct ApiKeys {
    pool: PgPool,
    principals: PrincipalStates,
}

impl ApiKeys {
    pub fn new(pool: PgPool, principals: PrincipalStates) -> Self {
        Self { pool, principals }
    }

    /// Creates a key with `roles` (admin and/or agent; checked by the caller of this). Keys are
    /// created by people, so the creator is on record.
    pub async fn create(
        &self,
        write: &KeyedWrite<'_, domain::ApiKey>,
        name: ApiKeyName,
        roles: Vec<Role>,
    ) -> AppResult<(Outcome<domain::ApiKey>, ApiKeySecret)> {
        let caller = write.caller()?;
        let creator = caller.require_user()?;
        let secret = ApiKeySecret::generate();
        let outcome = idempotency::transaction(&self.pool, write, as_is, async |conn| {
            NewApiKey {
                id: ApiKeyId::generate().as_uuid(),
                account_id: caller.account_id.as_uuid(),
                name: name.as_str(),
                prefix: &secret.shown_prefix(),
                secret_hash: &secret.hash(),
                roles: roles.iter().map(|role| Some(role.as_str())).collect(),
                created_by: creator.as_uuid(),
            }
            .insert(conn)
            .await
        })
        .await?;
        Ok((outcome, secret))
    }

    pub async fn list(
        &self,
        scope: &RequestScope,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<domain::ApiKey>> {
        let caller = scope.caller()?;
        let rows = db::with_connection(&self.pool, async |conn| {
            ApiKeyRow::list_for_account(
                conn,
                caller.account_id.as_uuid(),
                after,
                rows_to_fetch(page_size),
            )
            .await
        })
        .await?;
        Ok(paginate(rows, page_size, |key| {
            PageCursor::at(key.created_at, key.id.as_uuid())
        }))
    }

    /// Revokes a key; the next call made with it is refused.
    pub async fn revoke(
        &self,
        write: &KeyedWrite<'_, domain::ApiKey>,
        id: ApiKeyId,
    ) -> AppResult<Outcome<domain::ApiKey>> {
        let caller = write.caller()?;
        let secret_hash = ApiKeyRow::secret_hash_of(
            &mut *db::connection(&self.pool).await?,
            caller.account_id.as_uuid(),
            id.as_uuid(),
        )
        .await?
        .ok_or_else(|| AppError::not_found(Resource::ApiKey, id))?;
        // Before the commit, so that no instance can go on trusting the key after it.
        let marker = self
            .principals
            .changing(PrincipalKey::ApiKey { secret_hash })
            .await?;
        let outcome = idempotency::transaction(&self.pool, write, as_is, async |conn| {
            ApiKeyRow::revoke(conn, caller.account_id.as_uuid(), id.as_uuid())
                .await?
                .ok_or_else(|| AppError::not_found(Resource::ApiKey, id))
        })
        .await;
        marker
            .settle(match &outcome {
                Ok(Outcome::Done(key)) => Some(PrincipalState::ApiKey {
                    account_id: key.account_id,
                    key_id: key.id,
                    roles: key.roles.clone(),
                    revoked: key.revoked_at.is_some(),
                }),
                Ok(Outcome::Replay(_) | Outcome::Failed(_)) | Err(_) => None,
            })
            .await;
        outcome
    }
}
