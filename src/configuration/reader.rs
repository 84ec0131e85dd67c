//! The reader every section reads its variables with: a lookup (the environment, a dotenv file,
//! or a test's map) and the list of problems found so far, so that one start-up names every
//! missing or malformed setting at once. A secret setting is read from its variable or from the
//! file its `_FILE` variable names ([`super::secret_files`]), resolved once when the reader is
//! made, so the sections read secrets as they read everything else.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

use super::secret_files::{SECRET_SETTINGS, SecretValues};

/// Reads variables and collects what is wrong with them.
pub(super) struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    pub(super) problems: Vec<String>,
    /// The secret settings, from their variables or their files.
    secrets: SecretValues,
}

impl<'a> Reader<'a> {
    /// A reader of `lookup`; the secret settings' files are read now.
    pub(super) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            lookup,
            problems: Vec::new(),
            secrets: SecretValues::resolve(lookup),
        }
    }

    /// Every problem found: the secret files' first, then the sections' (less those that only
    /// repeat that a refused file's setting has no value).
    pub(super) fn into_problems(self) -> Vec<String> {
        let secrets = self.secrets;
        let mut problems = secrets.problems.clone();
        problems.extend(
            self.problems
                .into_iter()
                .filter(|problem| !secrets.repeats_a_refusal(problem)),
        );
        problems
    }

    /// A secret reader of a setting missing from [`SECRET_SETTINGS`] would not read its file:
    /// any test that builds settings fails on it.
    fn is_listed_secret(key: &str) {
        debug_assert!(
            SECRET_SETTINGS.contains(&key),
            "{key} is read as a secret: list it in SECRET_SETTINGS (secret_files.rs)"
        );
    }

    pub(super) fn raw(&self, key: &str) -> Option<String> {
        if SECRET_SETTINGS.contains(&key) {
            return self.secrets.get(key);
        }
        (self.lookup)(key).filter(|value| !value.trim().is_empty())
    }

    pub(super) fn parsed<T>(&mut self, key: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(key) {
            None => default,
            Some(value) => value.trim().parse().unwrap_or_else(|error| {
                self.problems
                    .push(format!("{key}={value:?} is invalid: {error}"));
                default
            }),
        }
    }

    pub(super) fn optional<T>(&mut self, key: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let value = self.raw(key)?;
        match value.trim().parse() {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                self.problems
                    .push(format!("{key}={value:?} is invalid: {error}"));
                None
            }
        }
    }

    pub(super) fn millis(&mut self, key: &str, default_ms: u64) -> Duration {
        let millis = self.parsed(key, default_ms);
        if millis == 0 {
            self.problems.push(format!("{key} must be greater than 0"));
        }
        Duration::from_millis(millis)
    }

    pub(super) fn millis_or_zero(&mut self, key: &str, default_ms: u64) -> Duration {
        Duration::from_millis(self.parsed(key, default_ms))
    }

    pub(super) fn positive(&mut self, key: &str, value: u32) {
        if value == 0 {
            self.problems.push(format!("{key} must be greater than 0"));
        }
    }

    pub(super) fn positive_duration(&mut self, key: &str, value: Duration) {
        if value.is_zero() {
            self.problems.push(format!("{key} must be greater than 0"));
        }
    }

    pub(super) fn secret_key(&mut self, key: &str, min_bytes: usize) -> SecretString {
        Self::is_listed_secret(key);
        match self.raw(key) {
            None => self.problems.push(format!(
                "{key} is not set (use at least {min_bytes} random bytes, e.g. `openssl rand -hex 32`)"
            )),
            Some(value) if value.len() < min_bytes => self
                .problems
                .push(format!("{key} must be at least {min_bytes} bytes long")),
            Some(_) => {}
        }
        SecretString::from(self.raw(key).unwrap_or_default())
    }

    /// A comma-separated list of secret keys, each at least `min_bytes` long; empty when unset.
    pub(super) fn secret_keys(&mut self, key: &str, min_bytes: usize) -> Vec<SecretString> {
        Self::is_listed_secret(key);
        let Some(value) = self.raw(key) else {
            return Vec::new();
        };
        let keys: Vec<&str> = value.split(',').map(str::trim).collect();
        if let Some(position) = keys.iter().position(|item| item.len() < min_bytes) {
            // Which one, never what it is.
            self.problems.push(format!(
                "{key}: key {} of {} must be at least {min_bytes} bytes long",
                position + 1,
                keys.len()
            ));
        }
        keys.into_iter()
            .map(|item| SecretString::from(item.to_owned()))
            .collect()
    }

    pub(super) fn secret_url(&mut self, key: &str, schemes: &[&str]) -> SecretString {
        Self::is_listed_secret(key);
        let Some(value) = self.raw(key) else {
            self.problems.push(format!("{key} is not set"));
            return SecretString::from(String::new());
        };
        // The value itself is never echoed: it may carry a password.
        let scheme = value.split_once("://").map(|(scheme, _)| scheme);
        if !scheme.is_some_and(|scheme| schemes.contains(&scheme)) {
            self.problems.push(format!(
                "{key} must be a URL starting with {}",
                schemes
                    .iter()
                    .map(|scheme| format!("{scheme}://"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
        } else {
            match url::Url::parse(&value) {
                // url's messages ("invalid port number", "empty host") say what, never the value.
                Err(error) => self
                    .problems
                    .push(format!("{key} is not a valid URL: {error}")),
                // A socket directory in `?host=` stands in for the host (libpq's convention).
                Ok(parsed)
                    if parsed.host_str().is_none_or(str::is_empty)
                        && !parsed.query_pairs().any(|(name, _)| name == "host") =>
                {
                    self.problems.push(format!("{key} names no host"));
                }
                Ok(_) => {}
            }
        }
        SecretString::from(value)
    }
}
