//! Turns the `authorization` metadata into a [`Caller`]: a JWT access token for people, an API
//! key for services. Both are checked against the database on every call, so a deactivated user,
//! a changed role or a revoked key takes effect on the next request.

use diesel_async::AsyncPgConnection;

use super::{ApiKeySecret, Caller, Principal, TokenIssuer};
use crate::db::models::{ApiKey, User};
use crate::db::{self, PgPool};
use crate::domain::{Role, UserId};
use crate::errors::{AppError, AppResult};

#[derive(Clone)]
pub struct Authenticator {
    tokens: TokenIssuer,
    pool: PgPool,
}

impl Authenticator {
    pub fn new(tokens: TokenIssuer, pool: PgPool) -> Self {
        Self { tokens, pool }
    }

    /// The caller named by `authorization` (`Bearer <access token or API key>`).
    pub async fn authenticate(&self, authorization: Option<&str>) -> AppResult<Caller> {
        let Some(authorization) = authorization else {
            return Err(AppError::Unauthenticated {
                reason: "MISSING_CREDENTIALS",
                message: "this RPC needs `authorization: Bearer <access token or API key>`"
                    .to_owned(),
            });
        };
        let credential =
            bearer_credential(authorization).ok_or_else(|| AppError::Unauthenticated {
                reason: "INVALID_CREDENTIALS",
                message: "authorization must be `Bearer <access token or API key>`".to_owned(),
            })?;
        let mut conn = db::connection(&self.pool).await?;
        match ApiKeySecret::from_presented(credential) {
            Some(secret) => authenticate_api_key(&mut conn, &secret).await,
            None => self.authenticate_user(&mut conn, credential).await,
        }
    }

    async fn authenticate_user(
        &self,
        conn: &mut AsyncPgConnection,
        token: &str,
    ) -> AppResult<Caller> {
        let claims = self.tokens.verify(token)?;
        let user =
            User::find_in_account(conn, claims.account_id.as_uuid(), claims.user_id.as_uuid())
                .await?
                .filter(|user| user.active)
                .ok_or_else(|| AppError::Unauthenticated {
                    reason: "USER_DEACTIVATED",
                    message: "this user can no longer sign in".to_owned(),
                })?;
        Ok(Caller {
            account_id: claims.account_id,
            principal: Principal::User {
                user_id: UserId::from_uuid(user.id),
                // The role is read now, not from the token: a demotion applies at once.
                role: Role::parse(&user.role)
                    .map_err(|problem| crate::db::models::corrupt("users.role", problem))?,
                session_id: claims.session_id,
            },
        })
    }
}

async fn authenticate_api_key(
    conn: &mut AsyncPgConnection,
    secret: &ApiKeySecret,
) -> AppResult<Caller> {
    let key = ApiKey::find_by_secret_hash(conn, &secret.hash())
        .await?
        .ok_or_else(|| AppError::Unauthenticated {
            reason: "INVALID_CREDENTIALS",
            message: "this API key is not valid".to_owned(),
        })?;
    if key.revoked_at.is_some() {
        return Err(AppError::Unauthenticated {
            reason: "API_KEY_REVOKED",
            message: "this API key has been revoked".to_owned(),
        });
    }
    ApiKey::record_use(conn, key.id).await?;
    let key = key.into_domain()?;
    Ok(Caller {
        account_id: key.account_id,
        principal: Principal::ApiKey {
            key_id: key.id,
            roles: key.roles,
        },
    })
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
