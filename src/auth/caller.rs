//! The authenticated caller and what it may do.

use crate::domain::{AccountId, Actor, ApiKeyId, Role, SessionId, UserId};
use crate::errors::{AppError, AppResult, Reason};

/// Who is calling: always within one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub account_id: AccountId,
    pub principal: Principal,
}

/// A person logged in, or a service with an API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    User {
        user_id: UserId,
        role: Role,
        session_id: SessionId,
    },
    ApiKey {
        key_id: ApiKeyId,
        roles: Vec<Role>,
    },
}

impl Caller {
    /// The most powerful role the caller holds.
    pub fn role(&self) -> Role {
        match &self.principal {
            Principal::User { role, .. } => *role,
            Principal::ApiKey { roles, .. } => {
                roles.iter().copied().max().unwrap_or(Role::Customer)
            }
        }
    }

    /// Who the audit trail names for what this caller does.
    pub fn actor(&self) -> Actor {
        match &self.principal {
            Principal::User { user_id, .. } => Actor::User(*user_id),
            Principal::ApiKey { key_id, .. } => Actor::ApiKey(*key_id),
        }
    }

    /// The calling user, when a person calls.
    pub fn user_id(&self) -> Option<UserId> {
        match &self.principal {
            Principal::User { user_id, .. } => Some(*user_id),
            Principal::ApiKey { .. } => None,
        }
    }

    /// The user a customer is: their reads and writes are limited to their own tickets. `None`
    /// for agents, admins and API keys, who see the whole account.
    pub fn restricted_to_user(&self) -> Option<UserId> {
        match &self.principal {
            Principal::User {
                user_id,
                role: Role::Customer,
                ..
            } => Some(*user_id),
            Principal::User { .. } | Principal::ApiKey { .. } => None,
        }
    }

    /// Fails with PERMISSION_DENIED unless the caller holds `role` or a stronger one.
    pub fn require(&self, role: Role) -> AppResult<()> {
        if self.role() >= role {
            Ok(())
        } else {
            Err(AppError::PermissionDenied {
                reason: Reason::RoleRequired,
                message: format!("this needs the {role} role; the caller is {}", self.role()),
            })
        }
    }

    /// Fails with PERMISSION_DENIED unless a person (not an API key) is calling.
    pub fn require_user(&self) -> AppResult<UserId> {
        self.user_id().ok_or_else(|| AppError::PermissionDenied {
            reason: Reason::UserRequired,
            message: "this needs a logged-in user, not an API key".to_owned(),
        })
    }
}
