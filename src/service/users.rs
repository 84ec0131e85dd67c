//! The people of an account: added and changed by admins, read by agents and admins; a
//! customer sees only themselves.

use std::time::Duration;

use chrono::Utc;

use super::{Page, on_unique_violation, paginate, rows_to_fetch};
use crate::auth::principals::{PrincipalKey, PrincipalState, PrincipalStates};
use crate::auth::{Caller, PasswordHasher, SessionStore};
use crate::db::models::{NewUser, User, UserChangeset};
use crate::db::{self, PgPool};
use crate::domain::{self, DisplayName, Email, PageCursor, PageSize, Password, Role, UserId};
use crate::errors::{AppError, AppResult, PreconditionViolation, Reason, Resource};
use crate::idempotency::{self, Idempotent, Outcome, as_is};

/// A user CreateUser asks for, every part valid.
#[derive(Debug)]
pub struct NewUserRequest {
    pub email: Email,
    pub display_name: DisplayName,
    pub role: Role,
    pub password: Password,
}

/// The changes UpdateUser asks for: only the fields named in its mask.
#[derive(Debug, Default)]
pub struct UserChanges {
    pub display_name: Option<DisplayName>,
    pub role: Option<Role>,
    pub active: Option<bool>,
}

#[derive(Clone)]
pub struct Users {
    pool: PgPool,
    hasher: PasswordHasher,
    sessions: SessionStore,
    principals: PrincipalStates,
}

impl Users {
    pub fn new(
        pool: PgPool,
        hasher: PasswordHasher,
        sessions: SessionStore,
        principals: PrincipalStates,
    ) -> Self {
        Self {
            pool,
            hasher,
            sessions,
            principals,
        }
    }

    /// Adds a user who can log in. A customer the account already knows from a ticket, who has
    /// never had a password, is given this one (and the role) instead: that is how a requester
    /// is invited. Anyone else with the email makes it ALREADY_EXISTS.
    pub async fn create(
        &self,
        caller: &Caller,
        request: NewUserRequest,
        budget: Duration,
        idempotent: Option<&Idempotent<'_, domain::User>>,
    ) -> AppResult<Outcome<domain::User>> {
        let NewUserRequest {
            email,
            display_name,
            role,
            password,
        } = request;
        let password_hash = self.hasher.hash(&password).await?;
        idempotency::transaction(&self.pool, budget, idempotent, as_is, async |conn| {
            let account_id = caller.account_id.as_uuid();
            if let Some(existing) = User::find_login(conn, account_id, email.as_str()).await? {
                if existing.password_hash.is_some() {
                    return Err(AppError::AlreadyExists {
                        reason: Reason::UserEmailTaken,
                        message: format!("the account already has a user {email}"),
                    });
                }
                return User::claim_without_password(
                    conn,
                    account_id,
                    existing.user.id.as_uuid(),
                    display_name.as_str(),
                    role.as_str(),
                    &password_hash,
                )
                .await;
            }
            NewUser {
                id: UserId::generate().as_uuid(),
                account_id,
                email: email.as_str(),
                display_name: display_name.as_str(),
                role: role.as_str(),
                password_hash: Some(&password_hash),
            }
            .insert(conn)
            .await
            .map_err(|error| {
                on_unique_violation(
                    error,
                    "users_account_email_key",
                    AppError::AlreadyExists {
                        reason: Reason::UserEmailTaken,
                        message: format!("the account already has a user {email}"),
                    },
                )
            })?
        })
        .await
    }

    /// One user: agents and admins may read anyone in the account, customers only themselves.
    pub async fn get(&self, caller: &Caller, id: UserId) -> AppResult<domain::User> {
        if caller.user_id() != Some(id) {
            caller.require(Role::Agent)?;
        }
        self.find(caller, id).await
    }

    pub async fn current(&self, caller: &Caller) -> AppResult<domain::User> {
        let id = caller.require_user()?;
        self.find(caller, id).await
    }

    async fn find(&self, caller: &Caller, id: UserId) -> AppResult<domain::User> {
        db::with_connection(&self.pool, async |conn| {
            User::find_in_account(conn, caller.account_id.as_uuid(), id.as_uuid())
                .await?
                .ok_or_else(|| AppError::not_found(Resource::User, id))
        })
        .await
    }

    pub async fn list(
        &self,
        caller: &Caller,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<domain::User>> {
        let rows = db::with_connection(&self.pool, async |conn| {
            User::list_for_account(
                conn,
                caller.account_id.as_uuid(),
                after,
                rows_to_fetch(page_size),
            )
            .await
        })
        .await?;
        Ok(paginate(rows, page_size, |user| {
            PageCursor::at(user.created_at, user.id.as_uuid())
        }))
    }

    /// Changes a user. Admins cannot demote or deactivate themselves, so an account can never
    /// lose its last admin by accident. A deactivated user's sessions all end.
    pub async fn update(
        &self,
        caller: &Caller,
        id: UserId,
        changes: UserChanges,
        budget: Duration,
        idempotent: Option<&Idempotent<'_, domain::User>>,
    ) -> AppResult<Outcome<domain::User>> {
        let demotes = changes.role.is_some_and(|role| role != Role::Admin);
        let deactivates = changes.active == Some(false);
        if caller.user_id() == Some(id) && (demotes || deactivates) {
            return Err(AppError::FailedPrecondition {
                reason: Reason::SelfLockout,
                message: "admins cannot demote or deactivate themselves; ask another admin"
                    .to_owned(),
                violations: vec![PreconditionViolation {
                    kind: "USER_ROLE".to_owned(),
                    subject: format!("users/{id}"),
                    description: "the caller is this admin".to_owned(),
                }],
            });
        }
        // Before the commit, so that no instance can go on trusting the old state after it.
        let marker = self.principals.changing(PrincipalKey::User(id)).await?;
        let outcome =
            idempotency::transaction(&self.pool, budget, idempotent, as_is, async |conn| {
                let changeset = UserChangeset {
                    display_name: changes.display_name.as_ref().map(DisplayName::as_str),
                    role: changes.role.as_ref().map(Role::as_str),
                    active: changes.active,
                    updated_at: Some(Utc::now()),
                };
                User::update(conn, caller.account_id.as_uuid(), id.as_uuid(), &changeset)
                    .await?
                    .ok_or_else(|| AppError::not_found(Resource::User, id))
            })
            .await;
        marker
            .settle(match &outcome {
                Ok(Outcome::Done(user)) => Some(PrincipalState::User {
                    account_id: user.account_id,
                    role: user.role,
                    active: user.active,
                }),
                Ok(Outcome::Replay(_) | Outcome::Failed(_)) | Err(_) => None,
            })
            .await;
        let outcome = outcome?;
        if deactivates && matches!(outcome, Outcome::Done(_)) {
            // After the commit: the authenticator already refuses the user's tokens, and a
            // failure here leaves only refresh tokens that the deactivated user cannot use.
            self.sessions.end_all(id).await?;
        }
        Ok(outcome)
    }
}
