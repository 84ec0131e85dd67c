//! Turns the `authorization` metadata into a [`Caller`], in two steps:
//! 1. [`Authenticator::verify`]: the credential itself, CPU only (a JWT's signature and expiry,
//!    an API key's form and hash), before any pool or network is touched;
//! 2. [`Authenticator::resolve`]: whether the principal is still allowed in and with which role,
//!    from the state the admission round trip read from Redis ([`super::principals`]), or from
//!    PostgreSQL when Redis had none (then stored for the next call). A deactivated user, a
//!    changed role or a revoked key therefore takes effect on the very next call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::principals::{KnownState, PrincipalKey, PrincipalState, PrincipalStates};
use super::{AccessClaims, ApiKeySecret, Caller, Principal, TokenIssuer};
use crate::db::models::{ApiKeyRow, UserRow};
use crate::db::{self, PgPool};
use crate::domain::ApiKeyId;
use crate::errors::{AppError, AppResult, Reason};

/// How often an API key's `last_used_at` is written, at most, per instance.
const LAST_USE_PRECISION: Duration = Duration::from_secs(60);

/// A credential whose form (and, for tokens, signature and expiry) has been checked.
#[derive(Debug)]
pub enum Credential {
    AccessToken(AccessClaims),
    ApiKey(ApiKeySecret),
}

impl Credential {
    /// Whose state decides whether this credential still lets its holder in.
    pub fn principal(&self) -> PrincipalKey {
        match self {
            Self::AccessToken(claims) => PrincipalKey::User(claims.user_id),
            Self::ApiKey(secret) => PrincipalKey::ApiKey {
                secret_hash: secret.hash(),
            },
        }
    }
}

#[derive(Clone)]
pub struct Authenticator {
    tokens: TokenIssuer,
    pool: PgPool,
    states: PrincipalStates,
    /// When each API key's use was last written to PostgreSQL by this instance.
    last_use_written: Arc<Mutex<HashMap<ApiKeyId, Instant>>>,
}

impl Authenticator {
    pub fn new(tokens: TokenIssuer, pool: PgPool, states: PrincipalStates) -> Self {
        Self {
            tokens,
            pool,
            states,
            last_use_written: Arc::default(),
        }
    }

    pub fn states(&self) -> &PrincipalStates {
        &self.states
    }

    /// The credential of `authorization` (`Bearer <access token or API key>`), checked without
    /// any I/O.
    pub fn verify(&self, authorization: Option<&str>) -> AppResult<Credential> {
        let Some(authorization) = authorization else {
            return Err(AppError::Unauthenticated {
                reason: Reason::MissingCredentials,
                message: "this RPC needs `authorization: Bearer <access token or API key>`"
                    .to_owned(),
            });
        };
        let credential =
            bearer_credential(authorization).ok_or_else(|| AppError::Unauthenticated {
                reason: Reason::InvalidCredentials,
                message: "authorization must be `Bearer <access token or API key>`".to_owned(),
            })?;
        match ApiKeySecret::from_presented(credential) {
            Some(secret) => Ok(Credential::ApiKey(secret)),
            None => Ok(Credential::AccessToken(self.tokens.verify(credential)?)),
        }
    }

    /// The caller `credential` stands for, as `known` (the admission round trip's read) or, when
    /// that knew nothing, PostgreSQL says.
    pub async fn resolve(&self, credential: &Credential, known: KnownState) -> AppResult<Caller> {
        let state = match known {
            KnownState::Stored(state) => state,
            KnownState::Unknown { lease } => {
                let state = self.read_state(credential).await?;
                if let Some(lease) = lease {
                    self.states
                        .store(&credential.principal(), &lease, &state)
                        .await;
                }
                state
            }
        };
        let caller = caller_from(credential, state)?;
        if let Principal::ApiKey { key_id, .. } = caller.principal {
            self.note_use(key_id);
        }
        Ok(caller)
    }

    /// What PostgreSQL says of the credential's principal; refuses one it does not know.
    async fn read_state(&self, credential: &Credential) -> AppResult<PrincipalState> {
        let mut conn = db::connection(&self.pool).await?;
        match credential {
            Credential::AccessToken(claims) => {
                // The session's revocation in the same statement: Redis knew nothing of the
                // caller, so it may have lost the session's marker too.
                let (user, revoked) = UserRow::find_for_session(
                    &mut conn,
                    claims.account_id.as_uuid(),
                    claims.user_id.as_uuid(),
                    claims.session_id.as_uuid(),
                )
                .await?
                .ok_or_else(unknown_user)?;
                drop(conn);
                if revoked {
                    self.states.remark_revoked(claims.session_id).await;
                    return Err(session_revoked());
                }
                Ok(PrincipalState::User {
                    account_id: claims.account_id,
                    role: user.role,
                    active: user.active,
                })
            }
            Credential::ApiKey(secret) => {
                let key = ApiKeyRow::find_by_secret_hash(&mut conn, &secret.hash())
                    .await?
                    .ok_or_else(|| AppError::Unauthenticated {
                        reason: Reason::InvalidCredentials,
                        message: "this API key is not valid".to_owned(),
                    })?;
                Ok(PrincipalState::ApiKey {
                    account_id: key.account_id,
                    key_id: key.id,
                    roles: key.roles,
                    revoked: key.revoked_at.is_some(),
                })
            }
        }
    }

    /// Writes the key's `last_used_at` in the background, at most once a minute per instance:
    /// a use is not worth a database round trip on every call.
    fn note_use(&self, key_id: ApiKeyId) {
        let now = Instant::now();
        {
            let mut written = self
                .last_use_written
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if written
                .get(&key_id)
                .is_some_and(|at| now.duration_since(*at) < LAST_USE_PRECISION)
            {
                return;
            }
            written.insert(key_id, now);
        }
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let written = async {
                let mut conn = db::connection(&pool).await?;
                ApiKeyRow::record_use(&mut conn, key_id.as_uuid()).await?;
                Ok::<_, AppError>(())
            };
            if let Err(error) = written.await {
                tracing::debug!(%error, "an API key's last use was not recorded");
            }
        });
    }
}

/// A validly signed token naming a user its account does not have: never issued as such, so
/// the credentials are wrong rather than the user deactivated.
pub(super) fn unknown_user() -> AppError {
    AppError::Unauthenticated {
        reason: Reason::InvalidCredentials,
        message: "the access token names no user of its account".to_owned(),
    }
}

/// An access token of a session that has ended (Logout, LogoutAll, a password reset, a reused
/// refresh token): refused at once, not when it expires.
pub fn session_revoked() -> AppError {
    AppError::Unauthenticated {
        reason: Reason::SessionRevoked,
        message: "this session has ended (logged out, or the password was reset): log in again"
            .to_owned(),
    }
}

pub(super) fn user_deactivated() -> AppError {
    AppError::Unauthenticated {
        reason: Reason::UserDeactivated,
        message: "this user can no longer sign in".to_owned(),
    }
}

/// The caller, if `state` still lets the credential's holder in.
fn caller_from(credential: &Credential, state: PrincipalState) -> AppResult<Caller> {
    match (credential, state) {
        (
            Credential::AccessToken(claims),
            PrincipalState::User {
                account_id,
                role,
                active,
            },
        ) => {
            if account_id != claims.account_id {
                return Err(unknown_user());
            }
            if !active {
                return Err(user_deactivated());
            }
            Ok(Caller {
                account_id,
                principal: Principal::User {
                    user_id: claims.user_id,
                    // The role is the stored one, not the token's: a demotion applies at once.
                    role,
                    session_id: claims.session_id,
                },
            })
        }
        (
            Credential::ApiKey(_),
            PrincipalState::ApiKey {
                account_id,
                key_id,
                roles,
                revoked,
            },
        ) => {
            if revoked {
                return Err(AppError::Unauthenticated {
                    reason: Reason::ApiKeyRevoked,
                    message: "this API key has been revoked".to_owned(),
                });
            }
            Ok(Caller {
                account_id,
                principal: Principal::ApiKey { key_id, roles },
            })
        }
        (Credential::AccessToken(_), PrincipalState::ApiKey { .. })
        | (Credential::ApiKey(_), PrincipalState::User { .. }) => Err(AppError::internal(
            anyhow::anyhow!("a principal's stored state is of the other kind"),
        )),
    }
}

/// The credential of `Bearer <credential>` (scheme case-insensitive, as RFC 7235 says).
fn bearer_credential(authorization: &str) -> Option<&str> {
    let (scheme, credential) = authorization.trim().split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

#[cfg(test)]
mod tests {
    use super::bearer_credential;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_required() {
        assert_eq!(bearer_credential("Bearer abc"), Some("abc"));
        assert_eq!(bearer_credential("bearer  abc "), Some("abc"));
        assert_eq!(bearer_credential("Basic abc"), None);
        assert_eq!(bearer_credential("Bearer"), None);
        assert_eq!(bearer_credential("abc"), None);
    }
}
