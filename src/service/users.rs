//! The people of an account: added and changed by admins, read by agents and admins; a
//! customer sees only themselves.

use std::sync::Arc;

use chrono::Utc;

use super::password_reset::{INVITATION_TOKEN_LIFETIME, IssuedPasswordToken};
use super::{Page, paginate, rows_to_fetch};
use crate::auth::principals::{PrincipalKey, PrincipalState, PrincipalStates};
use crate::auth::{Caller, PasswordHasher, SessionStore};
use crate::db::models::{NewUser, PasswordTokenRow, RevokedSessionRow, UserChangeset, UserRow};
use crate::db::{self, PgPool};
use crate::domain::{
    self, DisplayName, Email, PageCursor, PageSize, Password, PasswordTokenKey, Role, UserId,
};
use crate::errors::{AppError, AppResult, PreconditionViolation, Reason, Resource};
use crate::idempotency::{self, KeyedWrite, Outcome, as_is};
use crate::scope::RequestScope;

/// A user CreateUser asks for, every part valid.
#[derive(Debug)]
pub struct NewUserRequest {
    pub email: Email,
    pub display_name: DisplayName,
    pub role: Role,
    /// `None`: the user is invited to choose their own.
    pub password: Option<Password>,
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
    /// The key invitation tokens are derived with, and the domain of their messages'
    /// `Message-ID`s; `None`: CreateUser sends no invitation.
    invitations: Option<(PasswordTokenKey, Arc<str>)>,
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
            invitations: None,
        }
    }

    /// The same, sending an invitation (a single-use link to choose a password, living
    /// [`INVITATION_TOKEN_LIFETIME`]) to every user CreateUser adds.
    pub fn with_invitations(mut self, key: PasswordTokenKey, message_domain: &str) -> Self {
        self.invitations = Some((key, Arc::from(message_domain)));
        self
    }

    /// Adds a user who can log in (with the password given, or once they follow the invitation
    /// sent when none is). A customer the account already knows from a ticket, who has
    /// never had a password, is given this one (and the role) instead: that is how a requester
    /// is invited; if an admin deactivated them, it is FAILED_PRECONDITION until one reactivates
    /// them. Anyone else with the email makes it ALREADY_EXISTS. The new user's
    /// invitation (a link to choose their own password) is written to the outbox in the same
    /// transaction: one statement more.
    pub async fn create(
        &self,
        write: &KeyedWrite<'_, domain::User>,
        request: NewUserRequest,
    ) -> AppResult<Outcome<domain::User>> {
        let caller = write.caller()?;
        let NewUserRequest {
            email,
            display_name,
            role,
            password,
        } = request;
        let password_hash = match &password {
            Some(password) => Some(self.hasher.hash(password).await?),
            None => None,
        };
        // An admin who sets the password has handed the credentials over: the invitation is
        // for a user added without one.
        let invitation = self
            .invitations
            .as_ref()
            .filter(|_| password.is_none())
            .map(|(key, domain)| {
                IssuedPasswordToken::generate(key, INVITATION_TOKEN_LIFETIME, domain)
            });
        let invitation = invitation.as_ref();
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            let user = NewUser {
                id: UserId::generate().as_uuid(),
                account_id: caller.account_id.as_uuid(),
                email: email.as_str(),
                display_name: display_name.as_str(),
                role: role.as_str(),
                password_hash: password_hash.as_deref(),
            }
            .insert_or_claim(conn)
            .await?;
            let Some(user) = user else {
                return Err(taken(conn, caller, &email).await);
            };
            invite(conn, user, invitation).await
        })
        .await
    }

    /// One user: agents and admins may read anyone in the account, customers only themselves.
    pub async fn get(&self, scope: &RequestScope, id: UserId) -> AppResult<domain::User> {
        let caller = scope.caller()?;
        if caller.user_id() != Some(id) {
            caller.require(Role::Agent)?;
        }
        self.find(caller, id).await
    }

    pub async fn current(&self, scope: &RequestScope) -> AppResult<domain::User> {
        let caller = scope.caller()?;
        let id = caller.require_user()?;
        self.find(caller, id).await
    }

    async fn find(&self, caller: &Caller, id: UserId) -> AppResult<domain::User> {
        db::with_connection(&self.pool, async |conn| {
            UserRow::find_in_account(conn, caller.account_id.as_uuid(), id.as_uuid())
                .await?
                .ok_or_else(|| AppError::not_found(Resource::User, id))
        })
        .await
    }

    pub async fn list(
        &self,
        scope: &RequestScope,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<domain::User>> {
        let caller = scope.caller()?;
        let rows = db::with_connection(&self.pool, async |conn| {
            UserRow::list_for_account(
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
        write: &KeyedWrite<'_, domain::User>,
        id: UserId,
        changes: UserChanges,
    ) -> AppResult<Outcome<domain::User>> {
        let caller = write.caller()?;
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
        // A deactivation records its user's sessions revoked in its own transaction (read here,
        // before it): ending them in Redis comes after the commit and may fail, or be skipped by
        // a replay of the request, and a session left there must not work again if the user is
        // reactivated (the refresh reads these records).
        let ending = if deactivates {
            self.sessions.sessions_of(id).await?
        } else {
            Vec::new()
        };
        let ending: Vec<uuid::Uuid> = ending.iter().map(|session| session.as_uuid()).collect();
        let revoked_until = self.sessions.revoked_until();
        // Before the commit, so that no instance can go on trusting the old state after it.
        let marker = self.principals.changing(PrincipalKey::User(id)).await?;
        let outcome = idempotency::transaction(&self.pool, write, as_is, async |conn| {
            // Two admins demoting or deactivating each other at once would each pass
            // admission and leave the account without an admin: the second to lock both
            // users finds that its caller no longer is one.
            if let Some(caller_id) = caller.user_id().filter(|_| demotes || deactivates) {
                let still_admin = UserRow::lock_and_check_admin(
                    conn,
                    caller.account_id.as_uuid(),
                    &[caller_id.as_uuid(), id.as_uuid()],
                    caller_id.as_uuid(),
                )
                .await?;
                if !still_admin {
                    return Err(AppError::PermissionDenied {
                        reason: Reason::RoleRequired,
                        message: "this needs the admin role; the caller has been demoted or \
                                      deactivated meanwhile"
                            .to_owned(),
                    });
                }
            }
            let changeset = UserChangeset {
                display_name: changes.display_name.as_ref().map(DisplayName::as_str),
                role: changes.role.as_ref().map(Role::as_str),
                active: changes.active,
                updated_at: Some(Utc::now()),
            };
            let user = UserRow::update(conn, caller.account_id.as_uuid(), id.as_uuid(), &changeset)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::User, id))?;
            RevokedSessionRow::record(conn, id.as_uuid(), &ending, revoked_until).await?;
            Ok(user)
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
            // failure here leaves only sessions PostgreSQL has recorded revoked. (Sessions started
            // since the read above end too: this ends every session Redis has for the user.)
            self.sessions.end_recorded(id).await?;
        }
        Ok(outcome)
    }
}

/// Why CreateUser could not add or claim `email`, read in its transaction (the claim left the
/// row locked): a deactivated user without a password is FAILED_PRECONDITION, because a
/// deactivation is undone only on purpose, by UpdateUser (which also tells every instance);
/// anyone else is ALREADY_EXISTS.
async fn taken(
    conn: &mut diesel_async::AsyncPgConnection,
    caller: &Caller,
    email: &Email,
) -> AppError {
    let existing =
        match UserRow::find_login(conn, caller.account_id.as_uuid(), email.as_str()).await {
            Ok(existing) => existing,
            Err(error) => return error,
        };
    match existing {
        Some(login) if login.password_hash.is_none() && !login.user.active => {
            AppError::FailedPrecondition {
                reason: Reason::UserInactive,
                message: format!(
                    "the account's user {email} is deactivated; reactivate them (UpdateUser) \
                     before inviting them"
                ),
                violations: vec![PreconditionViolation {
                    kind: "USER_STATE".to_owned(),
                    subject: format!("users/{}", login.user.id),
                    description: "the user is deactivated".to_owned(),
                }],
            }
        }
        Some(_) | None => AppError::AlreadyExists {
            reason: Reason::UserEmailTaken,
            message: format!("the account already has a user {email}"),
        },
    }
}

/// Writes `user`'s invitation (its token and its message, one statement) when there is one.
async fn invite(
    conn: &mut diesel_async::AsyncPgConnection,
    user: domain::User,
    invitation: Option<&IssuedPasswordToken>,
) -> AppResult<domain::User> {
    if let Some(invitation) = invitation {
        PasswordTokenRow::invite(
            conn,
            user.account_id.as_uuid(),
            user.id.as_uuid(),
            user.email.as_str(),
            user.display_name.as_str(),
            &invitation.row(),
        )
        .await?;
    }
    Ok(user)
}
