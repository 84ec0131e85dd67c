//! Access tokens: HS256 JWTs with `sub`, `acct`, `role`, `sid`, `iat`, `exp` and `jti`. The
//! algorithm is fixed by the server: a token naming any other (`none` included) is refused.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{AccountId, Role, SessionId, UserId};
use crate::errors::{AppError, AppResult};

const ISSUER: &str = "supportdesk";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    acct: String,
    role: String,
    sid: String,
    iss: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// What a verified access token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessClaims {
    pub user_id: UserId,
    pub account_id: AccountId,
    pub role: Role,
    pub session_id: SessionId,
}

/// A freshly signed access token.
pub struct AccessToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Signs and verifies access tokens with one secret key.
#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime: Duration,
}

impl TokenIssuer {
    pub fn new(secret: &SecretString, lifetime: Duration) -> Self {
        let key = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            lifetime,
        }
    }

    pub fn issue(
        &self,
        user_id: UserId,
        account_id: AccountId,
        role: Role,
        session_id: SessionId,
    ) -> AppResult<AccessToken> {
        let issued_at = Utc::now();
        let expires_at = issued_at
            + chrono::Duration::from_std(self.lifetime)
                .map_err(|error| AppError::internal(anyhow::anyhow!(error)))?;
        let claims = Claims {
            sub: user_id.to_string(),
            acct: account_id.to_string(),
            role: role.as_str().to_owned(),
            sid: session_id.to_string(),
            iss: ISSUER.to_owned(),
            iat: issued_at.timestamp(),
            exp: expires_at.timestamp(),
            jti: Uuid::new_v4().to_string(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
                .map_err(|error| AppError::internal(anyhow::anyhow!("signing a JWT: {error}")))?;
        Ok(AccessToken { token, expires_at })
    }

    /// The claims of a token this service signed and that has not expired.
    pub fn verify(&self, token: &str) -> AppResult<AccessClaims> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| {
                if matches!(error.kind(), ErrorKind::ExpiredSignature) {
                    AppError::Unauthenticated {
                        reason: "TOKEN_EXPIRED",
                        message: "the access token has expired; refresh it".to_owned(),
                    }
                } else {
                    invalid_token()
                }
            })?
            .claims;
        Ok(AccessClaims {
            user_id: UserId::parse(&claims.sub).map_err(|_| invalid_token())?,
            account_id: AccountId::parse(&claims.acct).map_err(|_| invalid_token())?,
            role: Role::parse(&claims.role).map_err(|_| invalid_token())?,
            session_id: SessionId::parse(&claims.sid).map_err(|_| invalid_token())?,
        })
    }
}

fn invalid_token() -> AppError {
    AppError::Unauthenticated {
        reason: "INVALID_CREDENTIALS",
        message: "the access token is not valid".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(
            &SecretString::from("0123456789abcdef0123456789abcdef".to_owned()),
            Duration::from_secs(900),
        )
    }

    fn reason(error: AppError) -> &'static str {
        let AppError::Unauthenticated { reason, .. } = error else {
            panic!("unexpected {error:?}");
        };
        reason
    }

    #[test]
    fn an_issued_token_verifies_to_its_claims() {
        let issuer = issuer();
        let (user, account, session) = (
            UserId::generate(),
            AccountId::generate(),
            SessionId::generate(),
        );
        let token = issuer.issue(user, account, Role::Agent, session).unwrap();
        let claims = issuer.verify(&token.token).unwrap();
        assert_eq!(
            claims,
            AccessClaims {
                user_id: user,
                account_id: account,
                role: Role::Agent,
                session_id: session
            }
        );
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let other = TokenIssuer::new(
            &SecretString::from("another-secret-another-secret-xx".to_owned()),
            Duration::from_secs(900),
        );
        let token = other
            .issue(
                UserId::generate(),
                AccountId::generate(),
                Role::Admin,
                SessionId::generate(),
            )
            .unwrap();
        assert_eq!(
            reason(issuer().verify(&token.token).unwrap_err()),
            "INVALID_CREDENTIALS"
        );
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let issuer = issuer();
        let genuine = issuer
            .issue(
                UserId::generate(),
                AccountId::generate(),
                Role::Customer,
                SessionId::generate(),
            )
            .unwrap();
        let payload = genuine.token.split('.').nth(1).unwrap();
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(
            reason(issuer.verify(&format!("{header}.{payload}.")).unwrap_err()),
            "INVALID_CREDENTIALS"
        );
    }

    #[test]
    fn a_token_with_another_algorithm_is_refused() {
        let key = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let claims = Claims {
            sub: UserId::generate().to_string(),
            acct: AccountId::generate().to_string(),
            role: "admin".to_owned(),
            sid: SessionId::generate().to_string(),
            iss: ISSUER.to_owned(),
            iat: Utc::now().timestamp(),
            exp: Utc::now().timestamp() + 600,
            jti: "x".to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &key).unwrap();
        assert_eq!(
            reason(issuer().verify(&token).unwrap_err()),
            "INVALID_CREDENTIALS"
        );
    }

    #[test]
    fn an_expired_token_says_so() {
        let key = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let claims = Claims {
            sub: UserId::generate().to_string(),
            acct: AccountId::generate().to_string(),
            role: "admin".to_owned(),
            sid: SessionId::generate().to_string(),
            iss: ISSUER.to_owned(),
            iat: Utc::now().timestamp() - 1000,
            exp: Utc::now().timestamp() - 100,
            jti: "x".to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
        assert_eq!(
            reason(issuer().verify(&token).unwrap_err()),
            "TOKEN_EXPIRED"
        );
    }
}
