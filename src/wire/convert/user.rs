//! Users and their roles on the wire (roles are shared by API keys).

use super::timestamp;
use crate::domain::{self, InvalidValue, Role};
use crate::wire::proto::v1;

/// A role from the wire; UNSPECIFIED is refused, as is a number outside the enum.
impl TryFrom<i32> for Role {
    type Error = InvalidValue;

    fn try_from(value: i32) -> Result<Self, Self::Error> {
        match v1::UserRole::try_from(value) {
            Ok(v1::UserRole::Admin) => Ok(Role::Admin),
            Ok(v1::UserRole::Agent) => Ok(Role::Agent),
            Ok(v1::UserRole::Customer) => Ok(Role::Customer),
            Ok(v1::UserRole::Unspecified) => Err(InvalidValue::new(
                "is required: USER_ROLE_ADMIN, USER_ROLE_AGENT or USER_ROLE_CUSTOMER",
            )),
            Err(_) => Err(InvalidValue::new(format!("{value} is not a UserRole"))),
        }
    }
}

impl From<Role> for v1::UserRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => v1::UserRole::Admin,
            Role::Agent => v1::UserRole::Agent,
            Role::Customer => v1::UserRole::Customer,
        }
    }
}

impl From<domain::User> for v1::User {
    fn from(user: domain::User) -> Self {
        v1::User {
            id: user.id.to_string(),
            account_id: user.account_id.to_string(),
            email: user.email.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
            role: v1::UserRole::from(user.role).into(),
            active: user.active,
            create_time: Some(timestamp(user.created_at)),
            update_time: Some(timestamp(user.updated_at)),
        }
    }
}
