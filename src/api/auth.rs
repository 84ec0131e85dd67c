//! `supportdesk.v1.AuthService`.

use tonic::{Request, Response, Status};

use super::{required, scope, timestamp};
use crate::domain::{AccountSlug, Email, Password};
use crate::errors::{AppError, FieldViolations};
use crate::rate_limit::Subject;
use crate::scope::{ClientAddress, RequestScope};
use crate::service::{Authentication, IssuedTokens, PasswordResets};
use crate::wire::proto::v1;

pub struct AuthApi {
    authentication: Authentication,
    resets: PasswordResets,
}

impl AuthApi {
    pub fn new(authentication: Authentication, resets: PasswordResets) -> Self {
        Self {
            authentication,
            resets,
        }
    }
}

/// The client address admission found, which public RPCs' own quotas count against.
fn client_of(scope: &RequestScope) -> Result<&Subject, AppError> {
    scope.client().map(ClientAddress::subject).ok_or_else(|| {
        AppError::internal(anyhow::anyhow!(
            "no ClientAddress: is the admission layer in the stack?"
        ))
    })
}

#[tonic::async_trait]
impl v1::auth_service_server::AuthService for AuthApi {
    async fn login(
        &self,
        mut request: Request<v1::LoginRequest>,
    ) -> Result<Response<v1::LoginResponse>, Status> {
        let scope = scope(&mut request)?;
        let client = client_of(&scope)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        for (field, value) in [
            ("account", &message.account),
            ("email", &message.email),
            ("password", &message.password),
        ] {
            if value.is_empty() {
                violations.add(field, &required());
            }
        }
        violations.into_result()?;
        let (tokens, user) = self
            .authentication
            .login(client, &message.account, &message.email, &message.password)
            .await?;
        Ok(Response::new(v1::LoginResponse {
            tokens: Some(v1::Tokens::from(tokens)),
            user: Some(v1::User::from(user)),
        }))
    }

    async fn refresh_token(
        &self,
        mut request: Request<v1::RefreshTokenRequest>,
    ) -> Result<Response<v1::RefreshTokenResponse>, Status> {
        scope(&mut request)?;
        let presented = &request.get_ref().refresh_token;
        if presented.trim().is_empty() {
            return Err(AppError::invalid_field("refresh_token", &required()).into());
        }
        let tokens = self.authentication.refresh(presented).await?;
        Ok(Response::new(v1::RefreshTokenResponse {
            tokens: Some(v1::Tokens::from(tokens)),
        }))
    }

    async fn request_password_reset(
        &self,
        mut request: Request<v1::RequestPasswordResetRequest>,
    ) -> Result<Response<v1::RequestPasswordResetResponse>, Status> {
        let scope = scope(&mut request)?;
        let client = client_of(&scope)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let slug = violations.check("account", AccountSlug::parse(&message.account));
        let email = violations.check("email", Email::lookup(&message.email));
        violations.into_result()?;
        let (Some(slug), Some(email)) = (slug, email) else {
            return Err(AppError::internal(anyhow::anyhow!("checked fields missing")).into());
        };
        self.resets.request(client, &slug, &email).await?;
        Ok(Response::new(v1::RequestPasswordResetResponse {}))
    }

    async fn reset_password(
        &self,
        mut request: Request<v1::ResetPasswordRequest>,
    ) -> Result<Response<v1::ResetPasswordResponse>, Status> {
        scope(&mut request)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        for (field, value) in [("account", &message.account), ("token", &message.token)] {
            if value.trim().is_empty() {
                violations.add(field, &required());
            }
        }
        let password = violations.check("new_password", Password::parse(&message.new_password));
        violations.into_result()?;
        let Some(password) = password else {
            return Err(AppError::internal(anyhow::anyhow!("checked fields missing")).into());
        };
        self.resets
            .reset(message.account.trim(), &message.token, &password)
            .await?;
        Ok(Response::new(v1::ResetPasswordResponse {}))
    }

    async fn logout(
        &self,
        mut request: Request<v1::LogoutRequest>,
    ) -> Result<Response<v1::LogoutResponse>, Status> {
        let scope = scope(&mut request)?;
        self.authentication.logout(&scope).await?;
        Ok(Response::new(v1::LogoutResponse {}))
    }

    async fn logout_all(
        &self,
        mut request: Request<v1::LogoutAllRequest>,
    ) -> Result<Response<v1::LogoutAllResponse>, Status> {
        let scope = scope(&mut request)?;
        let ended = self.authentication.logout_all(&scope).await?;
        Ok(Response::new(v1::LogoutAllResponse {
            ended_sessions: i32::try_from(ended).unwrap_or(i32::MAX),
        }))
    }
}

impl From<IssuedTokens> for v1::Tokens {
    fn from(tokens: IssuedTokens) -> Self {
        v1::Tokens {
            access_token_expire_time: Some(timestamp(tokens.access.expires_at)),
            access_token: tokens.access.token,
            refresh_token: tokens.refresh.reveal().to_owned(),
            refresh_token_expire_time: Some(timestamp(tokens.refresh_expires_at)),
        }
    }
}
