//! Access tokens: HS256 JWTs with `sub`, `acct`, `role`, `sid`, `iat`, `exp` and `jti`. The
//! algorithm is fixed by the server: a token naming any other (`none` included) is refused.
//!
//! A token that verified is remembered with its claims ([`MAX_REMEMBERED`] at most): a client
//! sends the same token on every call until it expires, and its HMAC, base64 and JSON cost a
//! fifth of a cached GetTicket. Only the exact bytes of a token that passed every check are
//! remembered, so a lookup gives what verifying it again would, as long as it has not expired,
//! which is checked on every call (an expired one is verified again, and refused as such).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{AccountId, Role, SessionId, UserId};
use crate::errors::{AppError, AppResult, Reason};

const ISSUER: &str = "supportdesk";

/// How far the clocks of two instances may disagree: the leeway on `exp` and on `iat`.
const CLOCK_SKEW_SECS: i64 = 5;

/// How many verified tokens are remembered: a few hundred bytes each. Past it, the memory starts
/// again empty (a client whose token is forgotten pays one verification).
const MAX_REMEMBERED: usize = 4096;

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
    /// The token's `exp` (Unix seconds): a stream it opened ends then (docs/identity.md).
    pub expires_at: i64,
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
    verified: Arc<Mutex<HashMap<Box<str>, Verified>>>,
}

/// A token that passed every check: its claims and its `exp`.
struct Verified {
    claims: AccessClaims,
    expires_at: i64,
}

impl TokenIssuer {
    pub fn new(secret: &SecretString, lifetime: Duration) -> Self {
        let key = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
        validation.leeway = CLOCK_SKEW_SECS.unsigned_abs();
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            lifetime,
            verified: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn issue(
        &self,
        user_id: UserId,
        account_id: AccountId,
        role: Role,
        session_id: SessionId,
    ) -> AppResult<AccessToken> {
        self.issue_as(
            user_id,
            account_id,
            role,
            session_id,
            Utc::now(),
            Uuid::new_v4(),
        )
    }

    /// A token issued at `issued_at` with the id `token_id`: the same arguments sign the same
    /// token, which is how two refreshes within the grace window get the same pair.
    pub fn issue_as(
        &self,
        user_id: UserId,
        account_id: AccountId,
        role: Role,
        session_id: SessionId,
        issued_at: DateTime<Utc>,
        token_id: Uuid,
    ) -> AppResult<AccessToken> {
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
            jti: token_id.to_string(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
                .map_err(|error| AppError::internal(anyhow::anyhow!("signing a JWT: {error}")))?;
        Ok(AccessToken { token, expires_at })
    }

    /// The claims of a token this service signed and that has not expired.
    pub fn verify(&self, token: &str) -> AppResult<AccessClaims> {
        if let Some(claims) = self.remembered(token) {
            return Ok(claims);
        }
        let (claims, expires_at) = self.verify_signed(token)?;
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= MAX_REMEMBERED {
            verified.clear();
        }
        verified.insert(
            token.into(),
            Verified {
                claims: claims.clone(),
                expires_at,
            },
        );
        Ok(claims)
    }

    /// The claims of `token` when it verified before and has not expired since (with the same
    /// leeway jsonwebtoken gives `exp`).
    fn remembered(&self, token: &str) -> Option<AccessClaims> {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        let known = verified.get(token)?;
        (known.expires_at >= Utc::now().timestamp() - CLOCK_SKEW_SECS).then(|| known.claims.clone())
    }

    /// Verifies `token` from scratch: signature, algorithm, issuer, expiry, issue time, claims.
    /// Returns its claims and its `exp`.
    fn verify_signed(&self, token: &str) -> AppResult<(AccessClaims, i64)> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| {
                if matches!(error.kind(), ErrorKind::ExpiredSignature) {
                    AppError::Unauthenticated {
                        reason: Reason::TokenExpired,
                        message: "the access token has expired; refresh it".to_owned(),
                    }
                } else {
                    invalid_token()
                }
            })?
            .claims;
        // jsonwebtoken checks `exp` but not `iat`: a token "issued" later than now (beyond the
        // clock skew between instances) was not issued by this service as it claims.
        if claims.iat > Utc::now().timestamp() + CLOCK_SKEW_SECS {
            return Err(AppError::Unauthenticated {
                reason: Reason::InvalidCredentials,
                message: "the access token claims to be issued in the future".to_owned(),
            });
        }
        let verified = AccessClaims {
            user_id: UserId::parse(&claims.sub).map_err(|_| invalid_token())?,
            account_id: AccountId::parse(&claims.acct).map_err(|_| invalid_token())?,
            role: Role::parse(&claims.role).map_err(|_| invalid_token())?,
            session_id: SessionId::parse(&claims.sid).map_err(|_| invalid_token())?,
            expires_at: claims.exp,
        };
        Ok((verified, claims.exp))
    }
}

fn invalid_token() -> AppError {
    AppError::Unauthenticated {
        reason: Reason::InvalidCredentials,
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

    fn reason(error: AppError) -> Reason {
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
                session_id: session,
                expires_at: token.expires_at.timestamp(),
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
            Reason::InvalidCredentials
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
            Reason::InvalidCredentials
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
            Reason::InvalidCredentials
        );
    }

    fn signed(claims: &Claims) -> String {
        let key = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
    }

    fn claims_issued_at(iat: i64) -> Claims {
        Claims {
            sub: UserId::generate().to_string(),
            acct: AccountId::generate().to_string(),
            role: "admin".to_owned(),
            sid: SessionId::generate().to_string(),
            iss: ISSUER.to_owned(),
            iat,
            exp: iat + 600,
            jti: "x".to_owned(),
        }
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused() {
        let in_a_minute = Utc::now().timestamp() + 60;
        let error = issuer()
            .verify(&signed(&claims_issued_at(in_a_minute)))
            .unwrap_err();
        assert!(
            error.to_string().contains("issued in the future"),
            "{error}"
        );
        assert_eq!(reason(error), Reason::InvalidCredentials);
    }

    #[test]
    fn a_token_issued_within_the_clock_skew_is_accepted() {
        let just_ahead = Utc::now().timestamp() + CLOCK_SKEW_SECS - 2;
        issuer()
            .verify(&signed(&claims_issued_at(just_ahead)))
            .expect("within the skew two instances' clocks may have");
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
            Reason::TokenExpired
        );
    }

    #[test]
    fn a_verified_token_is_remembered_and_a_refused_one_is_not() {
        let issuer = issuer();
        let token = issuer
            .issue(
                UserId::generate(),
                AccountId::generate(),
                Role::Agent,
                SessionId::generate(),
            )
            .unwrap();
        let claims = issuer.verify(&token.token).unwrap();
        let forged = format!("{}x", token.token);
        issuer.verify(&forged).unwrap_err();
        let verified = issuer.verified.lock().unwrap();
        assert_eq!(verified.len(), 1);
        assert_eq!(verified.get(token.token.as_str()).unwrap().claims, claims);
    }

    #[test]
    fn a_remembered_token_answers_without_a_new_verification_until_it_expires() {
        let issuer = issuer();
        let claims = AccessClaims {
            user_id: UserId::generate(),
            account_id: AccountId::generate(),
            role: Role::Customer,
            session_id: SessionId::generate(),
            expires_at: 0,
        };
        // Bytes that could never verify: only the memory can answer for them.
        let remember = |token: &str, expires_at: i64| {
            issuer.verified.lock().unwrap().insert(
                token.into(),
                Verified {
                    claims: claims.clone(),
                    expires_at,
                },
            );
        };
        let now = Utc::now().timestamp();
        remember("remembered", now + 60);
        assert_eq!(issuer.verify("remembered").unwrap(), claims);
        remember("expired", now - CLOCK_SKEW_SECS - 1);
        assert_eq!(
            reason(issuer.verify("expired").unwrap_err()),
            Reason::InvalidCredentials,
            "an expired entry is verified again (and these bytes are no token)"
        );
    }
}
