//! Whether a caller let in at the start of a long stream (WatchEvents, ExportTickets) may still
//! read it. Admission decides once per call; a stream outlives that call by up to an hour, so
//! its service re-asks PostgreSQL (the truth, not Redis's copy) every [`RECHECK_EVERY`]: a
//! revoked API key, a deactivated or demoted user or an ended session ends the stream
//! UNAUTHENTICATED (PERMISSION_DENIED for a demotion) within that interval, and an access
//! token's stream ends at the token's `exp` (docs/identity.md, "Long streams").

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::authenticator::{session_revoked, unknown_user, user_deactivated};
use super::{Caller, Credential, Principal};
use crate::db::models::{ApiKeyRow, UserRow};
use crate::db::{self, PgPool};
use crate::errors::{AppError, AppResult, Reason};

/// How often a stream's caller is looked up again: the longest a revocation goes unnoticed by
/// an open stream, at the cost of one short query per stream and interval.
pub const RECHECK_EVERY: Duration = Duration::from_secs(2);

/// Until when the credential a call presented lets its holder in by itself: an access token
/// until its `exp`, an API key until it is revoked. Put on the request by admission.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValidUntil(pub Option<DateTime<Utc>>);

impl ValidUntil {
    pub fn of(credential: &Credential) -> Self {
        match credential {
            Credential::AccessToken(claims) => Self(DateTime::from_timestamp(claims.expires_at, 0)),
            Credential::ApiKey(_) => Self(None),
        }
    }
}

/// One stream's caller, to be re-checked while the stream runs.
#[derive(Clone)]
pub struct Standing {
    pool: PgPool,
    caller: Caller,
    until: ValidUntil,
}

impl Standing {
    pub fn new(pool: PgPool, caller: Caller, until: ValidUntil) -> Self {
        Self {
            pool,
            caller,
            until,
        }
    }

    /// Resolves, with the error that ends the stream, once the caller may no longer read it;
    /// never while they may. A check PostgreSQL cannot answer ends nothing: the next one asks
    /// again (the stream's own reads fail meanwhile if PostgreSQL is away).
    pub async fn lost(self) -> AppError {
        let expiry = async {
            match self.until.0 {
                Some(at) => {
                    let left = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                    tokio::time::sleep(left).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                () = &mut expiry => return token_expired(),
                () = tokio::time::sleep(RECHECK_EVERY) => {}
            }
            match self.check().await {
                Ok(()) => {}
                Err(
                    error @ (AppError::Unauthenticated { .. } | AppError::PermissionDenied { .. }),
                ) => return error,
                Err(error) => tracing::debug!(%error, "a stream's caller could not be re-checked"),
            }
        }
    }

    /// Whether PostgreSQL still lets the caller in with at least the role they started with.
    async fn check(&self) -> AppResult<()> {
        let mut conn = db::connection(&self.pool).await?;
        let account_id = self.caller.account_id.as_uuid();
        let role = match &self.caller.principal {
            Principal::User {
                user_id,
                session_id,
                ..
            } => {
                let (user, revoked) = UserRow::find_for_session(
                    &mut conn,
                    account_id,
                    user_id.as_uuid(),
                    session_id.as_uuid(),
                )
                .await?
                .ok_or_else(unknown_user)?;
                if !user.active {
                    return Err(user_deactivated());
                }
                if revoked {
                    return Err(session_revoked());
                }
                user.role
            }
            Principal::ApiKey { key_id, .. } => {
                let key = ApiKeyRow::find_in_account(&mut conn, account_id, key_id.as_uuid())
                    .await?
                    .ok_or_else(api_key_revoked)?;
                if key.revoked_at.is_some() {
                    return Err(api_key_revoked());
                }
                key.roles
                    .iter()
                    .copied()
                    .max()
                    .unwrap_or(crate::domain::Role::Customer)
            }
        };
        // What the stream sends was chosen for the role it started with (a customer's export
        // holds only their own tickets): a lower one may not go on reading it.
        if role < self.caller.role() {
            return Err(AppError::PermissionDenied {
                reason: Reason::RoleRequired,
                message: format!(
                    "the caller's role is now {role}, lower than the {} this stream started with",
                    self.caller.role()
                ),
            });
        }
        Ok(())
    }
}

fn token_expired() -> AppError {
    AppError::Unauthenticated {
        reason: Reason::TokenExpired,
        message: "the access token that opened this stream has expired; refresh it and resume"
            .to_owned(),
    }
}

fn api_key_revoked() -> AppError {
    AppError::Unauthenticated {
        reason: Reason::ApiKeyRevoked,
        message: "this API key has been revoked".to_owned(),
    }
}
