//! Password resets: `RequestPasswordReset` issues a single-use link by email, `ResetPassword`
//! uses it (docs/identity.md, "Password resets and invitations").
//!
//! **The same answer and the same work whether or not the address is a user's.** A request
//! passes the same two quota checks (per client IP, per address), derives a token and its hash
//! from a fresh seed, and runs one statement of the same shape ([`PasswordTokenRow::request_reset`]):
//! it finds the user and, only for one, inserts the token and its message. The answer is the
//! same empty message either way. What differs is only whether that statement inserts two rows,
//! inside PostgreSQL (tens of microseconds against a round trip); the email itself is sent later
//! by the notification workers, never while the caller waits.
//!
//! **Using a token** sets the password (the same policy as everywhere: 12 to 128 characters,
//! argon2id), uses up every other token of the user, and ends every session of the user at
//! once: their revocation is recorded in the same statement as the new password, then the
//! sessions are ended in Redis and their access tokens refused from the next call on.

use std::time::Duration;

use crate::auth::{PasswordHasher, SessionStore};
use crate::db::models::{NewNotification, NewPasswordToken, PasswordTokenRow};
use crate::db::{self, PgPool};
use crate::domain::{
    AccountSlug, Email, Password, PasswordToken, PasswordTokenKey, PasswordTokenSeed, UserId,
};
use crate::errors::{AppError, AppResult, Reason};
use crate::rate_limit::{Policy, RateLimiter, Subject};

/// How long a reset link works.
pub const RESET_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// How long an invitation link works.
pub const INVITATION_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// A token issued now, with what its message needs.
pub struct IssuedPasswordToken {
    pub id: uuid::Uuid,
    pub seed: PasswordTokenSeed,
    pub hash: Vec<u8>,
    pub lifetime: Duration,
    pub notification_id: uuid::Uuid,
    pub message_id: String,
}

impl IssuedPasswordToken {
    /// A fresh token living `lifetime`, whose message gets a `Message-ID` on `message_domain`.
    pub fn generate(key: &PasswordTokenKey, lifetime: Duration, message_domain: &str) -> Self {
        let seed = PasswordTokenSeed::generate();
        let hash = key.token(&seed).hash();
        let notification_id = uuid::Uuid::now_v7();
        Self {
            id: uuid::Uuid::now_v7(),
            seed,
            hash,
            lifetime,
            notification_id,
            message_id: NewNotification::message_id_for(notification_id, message_domain),
        }
    }

    /// The row to write.
    pub fn row(&self) -> NewPasswordToken<'_> {
        NewPasswordToken {
            id: self.id,
            token_hash: &self.hash,
            lifetime: self.lifetime,
            notification_id: self.notification_id,
            message_id: &self.message_id,
            seed: &self.seed,
        }
    }
}

#[derive(Clone)]
pub struct PasswordResets {
    pool: PgPool,
    hasher: PasswordHasher,
    sessions: SessionStore,
    limiter: RateLimiter,
    token_key: PasswordTokenKey,
    message_domain: std::sync::Arc<str>,
}

impl PasswordResets {
    pub fn new(
        pool: PgPool,
        hasher: PasswordHasher,
        sessions: SessionStore,
        limiter: RateLimiter,
        token_key: PasswordTokenKey,
        message_domain: &str,
    ) -> Self {
        Self {
            pool,
            hasher,
            sessions,
            limiter,
            token_key,
            message_domain: std::sync::Arc::from(message_domain),
        }
    }

    /// Emails a reset link to the user `email` of account `slug`, if there is such a user;
    /// answers the same either way. Throttled per client IP (`password-reset`) and per address
    /// (`password-reset-address`).
    pub async fn request(
        &self,
        client: &Subject,
        slug: &AccountSlug,
        email: &Email,
    ) -> AppResult<()> {
        let per_client = self.limiter.check(Policy::PasswordReset, client).await;
        if !per_client.allowed {
            return Err(per_client.refusal(client));
        }
        let address = Subject::new(
            "address",
            format_args!("{}/{}", slug.as_str(), email.as_str()),
        );
        let per_address = self
            .limiter
            .check(Policy::PasswordResetAddress, &address)
            .await;
        if !per_address.allowed {
            return Err(per_address.refusal(&address));
        }
        let issued = IssuedPasswordToken::generate(
            &self.token_key,
            RESET_TOKEN_LIFETIME,
            &self.message_domain,
        );
        let mut conn = db::connection(&self.pool).await?;
        let written = PasswordTokenRow::request_reset(
            &mut conn,
            slug.as_str(),
            email.as_str(),
            &issued.row(),
        )
        .await?;
        tracing::info!(written, "password reset requested");
        Ok(())
    }

    /// Sets the password of the user whose token `presented` is, for account `slug`, and ends
    /// every session of theirs.
    pub async fn reset(&self, slug: &str, presented: &str, password: &Password) -> AppResult<()> {
        let token = PasswordToken::from_presented(presented);
        let stored = {
            let mut conn = db::connection(&self.pool).await?;
            PasswordTokenRow::find(&mut conn, &token.hash()).await?
        };
        let stored = usable(stored, slug)?;
        let password_hash = self.hasher.hash(password).await?;
        let user_id = UserId::from_uuid(stored.user_id);
        // Recorded with the new password, then ended in Redis: PostgreSQL first.
        let sessions = self.sessions.sessions_of(user_id).await?;
        let session_ids: Vec<uuid::Uuid> = sessions.iter().map(|sid| sid.as_uuid()).collect();
        let changed = {
            let mut conn = db::connection(&self.pool).await?;
            PasswordTokenRow::use_token(
                &mut conn,
                stored.id,
                &password_hash,
                &session_ids,
                self.sessions.revoked_until(),
            )
            .await?
        };
        if !changed {
            // Used or expired between the look and the write (another reset with the same link).
            let mut conn = db::connection(&self.pool).await?;
            let again = PasswordTokenRow::find(&mut conn, &token.hash()).await?;
            drop(conn);
            usable(again, slug)?;
            return Err(token_used());
        }
        let ended = self.sessions.end_recorded(user_id).await?;
        tracing::info!(user_id = %user_id, ended, "password reset; every session ended");
        Ok(())
    }
}

/// The stored token, if it may set a password for account `slug` now; otherwise the error
/// that says why (an unknown token and another account's are the same answer).
fn usable(stored: Option<PasswordTokenRow>, slug: &str) -> AppResult<PasswordTokenRow> {
    let Some(stored) = stored.filter(|stored| stored.account_slug == slug && stored.user_active)
    else {
        return Err(AppError::Unauthenticated {
            reason: Reason::PasswordTokenInvalid,
            message: "this link is not valid: ask for a new one".to_owned(),
        });
    };
    if stored.used_at.is_some() {
        return Err(token_used());
    }
    if stored.expired {
        return Err(AppError::Unauthenticated {
            reason: Reason::PasswordTokenExpired,
            message: "this link has expired: ask for a new one".to_owned(),
        });
    }
    Ok(stored)
}

fn token_used() -> AppError {
    AppError::Unauthenticated {
        reason: Reason::PasswordTokenUsed,
        message: "this link was already used: ask for a new one".to_owned(),
    }
}
