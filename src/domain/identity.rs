//! The people side of the domain: roles, passwords, account and user names.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::{AccountId, ApiKeyId, Email, InvalidValue, UserId, bounded_text, single_line};

/// What a user (or an API key) may do in its account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Raises tickets and sees only their own.
    Customer,
    /// Works on every ticket of the account.
    Agent,
    /// Everything an agent may do, plus managing users and API keys.
    Admin,
}

impl Role {
    pub const ALL: &'static [Self] = &[Self::Admin, Self::Agent, Self::Customer];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Agent => "agent",
            Self::Customer => "customer",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "admin" => Ok(Self::Admin),
            "agent" => Ok(Self::Agent),
            "customer" => Ok(Self::Customer),
            _ => Err(InvalidValue::new(
                "is not a role (expected one of: admin, agent, customer)",
            )),
        }
    }

    /// Agents and admins work on every ticket of their account.
    pub fn works_tickets(&self) -> bool {
        matches!(self, Self::Agent | Self::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A password as typed: 12 to 128 characters (OWASP ASVS 2.1), kept secret so that it never
/// prints. Not trimmed: spaces are characters like any other.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    pub const MIN_LENGTH: usize = 12;
    pub const MAX_LENGTH: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let length = raw.chars().count();
        if length < Self::MIN_LENGTH {
            return Err(InvalidValue::new(format!(
                "must be at least {} characters",
                Self::MIN_LENGTH
            )));
        }
        if length > Self::MAX_LENGTH {
            return Err(InvalidValue::new(format!(
                "must be at most {} characters",
                Self::MAX_LENGTH
            )));
        }
        Ok(Self(SecretString::from(raw.to_owned())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// An account's display name: 1 to 200 characters on one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountName(String);

impl AccountName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, 1, 200).and_then(single_line).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An account's unique handle: 1 to 63 lower-case letters, digits and hyphens, starting with a
/// letter or digit (it may become a subdomain).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSlug(String);

impl AccountSlug {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let slug = raw.trim();
        let valid = (1..=63).contains(&slug.len())
            && slug
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !slug.starts_with('-');
        if valid {
            Ok(Self(slug.to_owned()))
        } else {
            Err(InvalidValue::new(
                "must be 1 to 63 lower-case letters, digits and hyphens, not starting with a hyphen",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name a user is shown by: up to 200 characters on one line, may be empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.trim().is_empty() {
            return Ok(Self(String::new()));
        }
        bounded_text(raw, 1, 200).and_then(single_line).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an API key is for: 1 to 100 characters on one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyName(String);

impl ApiKeyName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, 1, 100).and_then(single_line).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub name: AccountName,
    pub slug: AccountSlug,
    pub created_at: DateTime<Utc>,
}

/// A stored user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub account_id: AccountId,
    pub email: Email,
    pub display_name: DisplayName,
    pub role: Role,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user as logging in (and inviting) needs them: with the stored password hash, `None` for a
/// requester who never had a password. Never printed.
#[derive(Clone)]
pub struct UserLogin {
    pub user: User,
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for UserLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserLogin")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A stored API key (never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub account_id: AccountId,
    pub name: ApiKeyName,
    pub prefix: String,
    pub roles: Vec<Role>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_print() {
        let password = Password::parse("correct horse battery").unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert!(Password::parse("   twelve   ").is_ok());
    }

    #[test]
    fn slugs_are_lower_case_handles() {
        assert_eq!(AccountSlug::parse(" acme-2 ").unwrap().as_str(), "acme-2");
        for raw in ["", "Acme", "-acme", "a b", "ä", &"a".repeat(64)] {
            assert!(AccountSlug::parse(raw).is_err(), "{raw:?} accepted");
        }
    }

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Admin > Role::Agent && Role::Agent > Role::Customer);
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(*role));
        }
    }
}
