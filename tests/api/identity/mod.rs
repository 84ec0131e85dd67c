//! Accounts, users, sessions and API keys: IdentityService, AuthService, UserService, ApiKeyService.

pub(crate) mod accounts_and_users;
pub(crate) mod api_keys;
pub(crate) mod authentication;
pub(crate) mod principal_states;
