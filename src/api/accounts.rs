//! `supportdesk.v1.AccountService`.

use tonic::{Request, Response, Status};

use super::{KeyedRequest, answer, created, scope, stored_as};
use crate::domain::{self, AccountName, AccountSlug, DisplayName, Email, Password};
use crate::errors::{AppError, FieldViolations};
use crate::idempotency::IdempotencyPolicy;
use crate::service::Accounts;
use crate::service::accounts::NewAccountRequest;
use crate::wire::proto::v1;

pub struct AccountApi {
    accounts: Accounts,
    idempotency: IdempotencyPolicy,
}

impl AccountApi {
    pub fn new(accounts: Accounts, idempotency: IdempotencyPolicy) -> Self {
        Self {
            accounts,
            idempotency,
        }
    }
}

#[tonic::async_trait]
impl v1::account_service_server::AccountService for AccountApi {
    async fn create_account(
        &self,
        mut request: Request<v1::CreateAccountRequest>,
    ) -> Result<Response<v1::CreateAccountResponse>, Status> {
        let keyed = KeyedRequest::of_with_secrets(&mut request, &self.idempotency, |message| {
            message.admin_password.clear();
        })?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let name = violations.check("name", AccountName::parse(&message.name));
        let slug = violations.check("slug", AccountSlug::parse(&message.slug));
        let admin_email = violations.check("admin_email", Email::parse(&message.admin_email));
        let admin_password =
            violations.check("admin_password", Password::parse(&message.admin_password));
        let admin_display_name = violations.check(
            "admin_display_name",
            DisplayName::parse(&message.admin_display_name),
        );
        let (
            Some(name),
            Some(slug),
            Some(admin_email),
            Some(admin_password),
            Some(admin_display_name),
        ) = (name, slug, admin_email, admin_password, admin_display_name)
        else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        // The account is read at /v1/account by its members once they log in.
        let respond = |(account, admin): &(domain::Account, domain::User)| {
            created(
                Response::new(account_response(account.clone(), admin.clone())),
                "/v1/account",
            )
        };
        let outcome = self
            .accounts
            .create(
                &keyed.write(&stored_as(&respond)),
                NewAccountRequest {
                    name,
                    slug,
                    admin_email,
                    admin_password,
                    admin_display_name,
                },
            )
            .await?;
        answer(outcome, &respond)
    }

    async fn get_account(
        &self,
        mut request: Request<v1::GetAccountRequest>,
    ) -> Result<Response<v1::Account>, Status> {
        let scope = scope(&mut request)?;
        let account = self.accounts.get(&scope).await?;
        Ok(Response::new(v1::Account::from(account)))
    }
}

fn account_response(account: domain::Account, admin: domain::User) -> v1::CreateAccountResponse {
    v1::CreateAccountResponse {
        account: Some(v1::Account::from(account)),
        admin: Some(v1::User::from(admin)),
    }
}
