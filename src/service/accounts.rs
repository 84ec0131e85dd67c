//! Signing up (an account with its first admin) and reading the caller's account.

use super::on_unique_violation;
use crate::auth::PasswordHasher;
use crate::db::models::{AccountRow, NewAccount, NewUser};
use crate::db::{self, PgPool};
use crate::domain::{
    self, AccountId, AccountName, AccountSlug, DisplayName, Email, Password, Role, UserId,
};
use crate::errors::{AppError, AppResult, Reason};
use crate::idempotency::{self, KeyedWrite, Outcome, as_is};
use crate::scope::RequestScope;

/// What CreateAccount asks for, every part valid.
#[derive(Debug)]
pub struct NewAccountRequest {
    pub name: AccountName,
    pub slug: AccountSlug,
    pub admin_email: Email,
    pub admin_password: Password,
    pub admin_display_name: DisplayName,
}

#[derive(Clone)]
pub struct Accounts {
    pool: PgPool,
    hasher: PasswordHasher,
}

impl Accounts {
    pub fn new(pool: PgPool, hasher: PasswordHasher) -> Self {
        Self { pool, hasher }
    }

    /// Creates the account and its first admin together: both or neither.
    pub async fn create(
        &self,
        write: &KeyedWrite<'_, (domain::Account, domain::User)>,
        request: NewAccountRequest,
    ) -> AppResult<Outcome<(domain::Account, domain::User)>> {
        // Hashed before a connection is taken: the pool is not held during argon2.
        let password_hash = self.hasher.hash(&request.admin_password).await?;
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            let account = NewAccount {
                id: AccountId::generate().as_uuid(),
                name: request.name.as_str(),
                slug: request.slug.as_str(),
            }
            .insert(conn)
            .await
            .map_err(|error| {
                on_unique_violation(
                    error,
                    "accounts_slug_key",
                    AppError::AlreadyExists {
                        reason: Reason::AccountSlugTaken,
                        message: format!("the slug {} is taken", request.slug.as_str()),
                    },
                )
            })??;
            let admin = NewUser {
                id: UserId::generate().as_uuid(),
                account_id: account.id.as_uuid(),
                email: request.admin_email.as_str(),
                display_name: request.admin_display_name.as_str(),
                role: Role::Admin.as_str(),
                password_hash: Some(&password_hash),
            }
            .insert(conn)
            .await??;
            Ok::<_, AppError>((account, admin))
        })
        .await
    }

    /// The caller's own account. Accounts are never deleted, and a caller was found in it, so
    /// its absence is a broken invariant, not a NOT_FOUND a client could act on.
    pub async fn get(&self, scope: &RequestScope) -> AppResult<domain::Account> {
        let caller = scope.caller()?;
        db::with_connection(&self.pool, async |conn| {
            AccountRow::find(conn, caller.account_id.as_uuid())
                .await?
                .ok_or_else(|| {
                    AppError::internal(anyhow::anyhow!(
                        "the caller's account {} does not exist",
                        caller.account_id
                    ))
                })
        })
        .await
    }
}
