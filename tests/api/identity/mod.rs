//! Accounts, users, sessions, API keys and groups of agents: AccountService, AuthService,
//! UserService, ApiKeyService, GroupService.

pub(crate) mod accounts_and_users;
pub(crate) mod api_keys;
pub(crate) mod authentication;
pub(crate) mod groups;
pub(crate) mod principal_states;
