//! `supportdesk.v1.UserService`; users and roles on the wire are `wire::convert::user`.

use tonic::{Request, Response, Status};

use super::{KeyedRequest, ListPages, answer, created, required, scope, stored_as};
use crate::domain::{
    self, DisplayName, Email, InvalidValue, PageTokenKeys, Password, Role, UserId,
};
use crate::errors::{AppError, FieldViolations};
use crate::idempotency::IdempotencyPolicy;
use crate::service::{NewUserRequest, UserChanges, Users};
use crate::wire::proto::v1;

/// The name page tokens of ListUsers carry.
const LIST: &str = "users";

pub struct UserApi {
    users: Users,
    idempotency: IdempotencyPolicy,
    pages: PageTokenKeys,
}

impl UserApi {
    pub fn new(users: Users, idempotency: IdempotencyPolicy, pages: PageTokenKeys) -> Self {
        Self {
            users,
            idempotency,
            pages,
        }
    }
}

/// The answer of every RPC that returns the user it changed.
fn user_response(user: &domain::User) -> Response<v1::User> {
    Response::new(v1::User::from(user.clone()))
}

#[tonic::async_trait]
impl v1::user_service_server::UserService for UserApi {
    async fn create_user(
        &self,
        mut request: Request<v1::CreateUserRequest>,
    ) -> Result<Response<v1::User>, Status> {
        let keyed = KeyedRequest::of_with_secrets(&mut request, &self.idempotency, |message| {
            message.password.clear();
        })?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let Some(user) = message.user else {
            // Named as the proto declares it (`required`), not by the fields it would hold.
            violations.add("user", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let email = violations.check("user.email", Email::parse(&user.email));
        let display_name =
            violations.check("user.display_name", DisplayName::parse(&user.display_name));
        let role = violations.check("user.role", Role::try_from(user.role));
        // No password: the user is invited to choose one.
        let password = if message.password.is_empty() {
            Some(None)
        } else {
            violations
                .check("password", Password::parse(&message.password))
                .map(Some)
        };
        let (Some(email), Some(display_name), Some(role), Some(password)) =
            (email, display_name, role, password)
        else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let respond =
            |user: &domain::User| created(user_response(user), &format!("/v1/users/{}", user.id));
        let outcome = self
            .users
            .create(
                &keyed.write(&stored_as(&respond)),
                NewUserRequest {
                    email,
                    display_name,
                    role,
                    password,
                },
            )
            .await?;
        answer(outcome, &respond)
    }

    async fn get_user(
        &self,
        mut request: Request<v1::GetUserRequest>,
    ) -> Result<Response<v1::User>, Status> {
        let scope = scope(&mut request)?;
        let id = UserId::parse(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        let user = self.users.get(&scope, id).await?;
        Ok(Response::new(v1::User::from(user)))
    }

    async fn list_users(
        &self,
        mut request: Request<v1::ListUsersRequest>,
    ) -> Result<Response<v1::ListUsersResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let pages = ListPages::new(&self.pages, caller, LIST);
        let (page_size, after) = pages.request(message.page_size, &message.page_token)?;
        let page = self.users.list(&scope, page_size, after).await?;
        Ok(Response::new(v1::ListUsersResponse {
            users: page.items.into_iter().map(v1::User::from).collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn update_user(
        &self,
        mut request: Request<v1::UpdateUserRequest>,
    ) -> Result<Response<v1::User>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let Some(user) = message.user else {
            violations.add("user", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let id = violations.check("user.id", UserId::parse(&user.id));
        let paths = message
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            violations.add(
                "update_mask",
                &InvalidValue::new("must name at least one of: display_name, role, active"),
            );
        }
        let mut changes = UserChanges::default();
        for (index, path) in paths.iter().enumerate() {
            match path.as_str() {
                "display_name" => {
                    changes.display_name = violations
                        .check("user.display_name", DisplayName::parse(&user.display_name));
                }
                "role" => changes.role = violations.check("user.role", Role::try_from(user.role)),
                "active" => changes.active = Some(user.active),
                other => violations.add(
                    format!("update_mask.paths[{index}]"),
                    &InvalidValue::new(format!(
                        "{other:?} cannot be updated (allowed: display_name, role, active)"
                    )),
                ),
            }
        }
        let Some(id) = id else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        violations.into_result()?;
        let store = stored_as(&user_response);
        let outcome = self.users.update(&keyed.write(&store), id, changes).await?;
        answer(outcome, &user_response)
    }

    async fn get_current_user(
        &self,
        mut request: Request<v1::GetCurrentUserRequest>,
    ) -> Result<Response<v1::User>, Status> {
        let scope = scope(&mut request)?;
        let user = self.users.current(&scope).await?;
        Ok(Response::new(v1::User::from(user)))
    }
}
