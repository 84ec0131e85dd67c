//! Logging in and out: passwords against argon2id hashes, sessions in Redis, JWT access tokens.

use chrono::{DateTime, Utc};

use crate::auth::{
    AccessToken, PasswordHasher, Principal, RefreshToken, RefreshTokenOutcome, SessionStore,
    TokenIssuer,
};
use crate::db::models::{AccountRow, UserRow};
use crate::db::{self, PgPool};
use crate::domain::{self, AccountSlug, Email, UserLogin};
use crate::errors::{AppError, AppResult, Reason};
use crate::rate_limit::{LoginAttempt, LoginGate, LoginOutcome, RateLimiter, Subject};
use crate::scope::RequestScope;

/// What a successful login or refresh hands out.
#[derive(Debug)]
pub struct IssuedTokens {
    pub access: AccessToken,
    pub refresh: RefreshToken,
    pub refresh_expires_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Authentication {
    pool: PgPool,
    hasher: PasswordHasher,
    sessions: SessionStore,
    tokens: TokenIssuer,
    limiter: RateLimiter,
}

/// One answer for every failed login, so that none tells which part was wrong.
fn wrong_credentials() -> AppError {
    AppError::Unauthenticated {
        reason: Reason::InvalidCredentials,
        message: "the account, email or password is incorrect".to_owned(),
    }
}

impl Authentication {
    pub fn new(
        pool: PgPool,
        hasher: PasswordHasher,
        sessions: SessionStore,
        tokens: TokenIssuer,
        limiter: RateLimiter,
    ) -> Self {
        Self {
            pool,
            hasher,
            sessions,
            tokens,
            limiter,
        }
    }

    /// Checks the password and starts a session, within the login quotas of `client`
    /// ([`crate::rate_limit::LoginAttempt`]). An unknown account or email, a user without a
    /// password or a deactivated one all verify a decoy hash and fail like a wrong password.
    pub async fn login(
        &self,
        client: &Subject,
        account: &str,
        email: &str,
        password: &str,
    ) -> AppResult<(IssuedTokens, domain::User)> {
        let attempt = LoginAttempt::new(client.clone(), account, email);
        let known_address = match self.limiter.login_gate(&attempt).await {
            LoginGate::Open { known_address } => known_address,
            LoginGate::Refused { subject, decision } => return Err(decision.refusal(&subject)),
        };
        let verdict = async {
            let user = match (AccountSlug::parse(account), Email::lookup(email)) {
                (Ok(slug), Ok(email)) => self.find_user(&slug, &email).await?,
                _ => None,
            };
            let stored_hash = user
                .as_ref()
                .filter(|login| login.user.active)
                .and_then(|login| login.password_hash.clone());
            let verified = self.hasher.verify(password, stored_hash).await?;
            AppResult::Ok((user, verified))
        };
        let (user, verified) = match verdict.await {
            Ok(verdict) => verdict,
            Err(error) => {
                if !known_address {
                    self.limiter
                        .login_settled(&attempt, LoginOutcome::UndecidedFromNewAddress)
                        .await;
                }
                return Err(error);
            }
        };
        if !verified {
            if known_address {
                self.limiter
                    .login_settled(&attempt, LoginOutcome::FailedFromKnownAddress)
                    .await;
            }
            return Err(wrong_credentials());
        }
        let login = user.ok_or_else(wrong_credentials)?;
        let (user, verified_hash) = (login.user, login.password_hash.unwrap_or_default());
        if !known_address {
            self.limiter
                .login_settled(&attempt, LoginOutcome::SucceededFromNewAddress)
                .await;
        }
        let (session_id, refresh, refresh_expires_at) =
            self.sessions.start(user.id, user.account_id).await?;
        // A password reset (or a deactivation) that committed while the password was verified
        // ended the sessions it found, and this one was not among them yet: now that it is on the
        // user's list, where any later reset ends it, look at the password again.
        let still_signs_in = db::with_connection(&self.pool, async |conn| {
            UserRow::still_signs_in_with(conn, user.id.as_uuid(), &verified_hash).await
        })
        .await;
        if !still_signs_in? {
            self.sessions.end(session_id, user.id).await?;
            tracing::info!(user_id = %user.id, "the password changed during the login: refused");
            return Err(wrong_credentials());
        }
        let access = self
            .tokens
            .issue(user.id, user.account_id, user.role, session_id)?;
        tracing::info!(user_id = %user.id, session_id = %session_id, "logged in");
        Ok((
            IssuedTokens {
                access,
                refresh,
                refresh_expires_at,
            },
            user,
        ))
    }

    async fn find_user(&self, slug: &AccountSlug, email: &Email) -> AppResult<Option<UserLogin>> {
        db::with_connection(&self.pool, async |conn| {
            let Some(account) = AccountRow::find_by_slug(conn, slug.as_str()).await? else {
                return Ok(None);
            };
            UserRow::find_login(conn, account.id.as_uuid(), email.as_str()).await
        })
        .await
    }

    /// Rotates a refresh token. A token presented again within the grace window gets the same
    /// pair; after it, a token presented twice revokes its whole session.
    ///
    /// Everything that can fail for want of PostgreSQL (the user and the session's revocation,
    /// read first) comes before the token is used up: a refresh answered UNAVAILABLE has used
    /// nothing, so its retries, however late, refresh once PostgreSQL is back, instead of
    /// finding the token used and revoking the session as a theft.
    pub async fn refresh(&self, presented: &str) -> AppResult<IssuedTokens> {
        let presented = RefreshToken::from_presented(presented);
        let invalid = || AppError::Unauthenticated {
            reason: Reason::InvalidCredentials,
            message: "the refresh token is unknown, expired or revoked".to_owned(),
        };
        let Some(owner) = self.sessions.owner_of(&presented).await? else {
            return Err(invalid());
        };
        let found = db::with_connection(&self.pool, async |conn| {
            UserRow::find_for_session(
                conn,
                owner.account_id.as_uuid(),
                owner.user_id.as_uuid(),
                owner.session_id.as_uuid(),
            )
            .await
        })
        .await?;
        // A session PostgreSQL says was ended (Redis lost the revocation) is over.
        if found.as_ref().is_some_and(|(_, revoked)| *revoked) {
            self.sessions.end(owner.session_id, owner.user_id).await?;
            return Err(invalid());
        }
        let Some(user) = found.map(|(user, _)| user).filter(|user| user.active) else {
            self.sessions.end(owner.session_id, owner.user_id).await?;
            return Err(AppError::Unauthenticated {
                reason: Reason::UserDeactivated,
                message: "this user can no longer sign in".to_owned(),
            });
        };
        match self.sessions.rotate(&presented).await? {
            RefreshTokenOutcome::Invalid => Err(invalid()),
            RefreshTokenOutcome::Reused { owner } => {
                // The script ended the session in Redis; record it, and refuse its access
                // tokens at once too.
                if let Err(error) = self.sessions.end(owner.session_id, owner.user_id).await {
                    tracing::warn!(%error, "a reused session's revocation was not recorded");
                }
                tracing::warn!(
                    user_id = %owner.user_id,
                    session_id = %owner.session_id,
                    "a used refresh token was presented again: session revoked"
                );
                Err(AppError::Unauthenticated {
                    reason: Reason::RefreshTokenReused,
                    message: "this refresh token was already used; the session has been revoked"
                        .to_owned(),
                })
            }
            RefreshTokenOutcome::Rotated {
                owner,
                next,
                rotated_at,
                expires_at,
            } => {
                let role = user.role;
                // Issued as of the rotation, with an id derived from the successor: a second
                // presenter within the grace window gets the very same access token.
                let access = self.tokens.issue_as(
                    owner.user_id,
                    owner.account_id,
                    role,
                    owner.session_id,
                    rotated_at,
                    next.derived_id(),
                )?;
                Ok(IssuedTokens {
                    access,
                    refresh: next,
                    refresh_expires_at: expires_at,
                })
            }
        }
    }

    /// Ends the session the caller's access token belongs to, at once: its access tokens too.
    pub async fn logout(&self, scope: &RequestScope) -> AppResult<()> {
        let caller = scope.caller()?;
        let Principal::User {
            user_id,
            session_id,
            ..
        } = &caller.principal
        else {
            return Err(AppError::PermissionDenied {
                reason: Reason::UserRequired,
                message: "API keys have no session to end".to_owned(),
            });
        };
        self.sessions.end(*session_id, *user_id).await
    }

    /// Ends every session of the calling user, at once: their access tokens too.
    pub async fn logout_all(&self, scope: &RequestScope) -> AppResult<u32> {
        let caller = scope.caller()?;
        let user_id = caller.require_user()?;
        self.sessions.end_all(user_id).await
    }
}
