//! Who a caller is and how they prove it: argon2id passwords, JWT access tokens, rotating refresh
//! tokens kept in Redis, and API keys for services. [`Authenticator`] turns the `authorization`
//! metadata into a [`Caller`]; the middleware puts it in the request for handlers.

mod api_key_secret;
mod authenticator;
mod caller;
mod password;
pub mod principals;
pub mod sessions;
mod standing;
mod tokens;

pub use api_key_secret::{API_KEY_PREFIX, ApiKeySecret};
pub use authenticator::{Authenticator, Credential, session_revoked};
pub use caller::{Caller, Principal};
pub use password::PasswordHasher;
pub use sessions::{RefreshToken, RefreshTokenOutcome, SessionOwner, SessionStore};
pub use standing::{RECHECK_EVERY, Standing, ValidUntil};
pub use tokens::{AccessClaims, AccessToken, TokenIssuer};
