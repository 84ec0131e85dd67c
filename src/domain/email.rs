//! An email address as the service stores it: trimmed, lower-cased, and plausible.

use std::fmt;

use super::InvalidValue;

/// A syntactically plausible address (`local@domain.tld`), lower-cased so that lookups and the
/// per-account unique key are case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Addresses longer than RFC 5321's 254 characters cannot be delivered.
    pub const MAX_LENGTH: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let trimmed = raw.trim();
        // The same lower case, without Unicode's tables for the usual all-ASCII address.
        let address = if trimmed.is_ascii() {
            trimmed.to_ascii_lowercase()
        } else {
            trimmed.to_lowercase()
        };
        if address.is_empty() {
            return Err(InvalidValue::new("an email address is required"));
        }
        let ascii = address.is_ascii();
        let length = if ascii {
            address.len()
        } else {
            address.chars().count()
        };
        if length > Self::MAX_LENGTH {
            return Err(InvalidValue::new(format!(
                "must be at most {} characters",
                Self::MAX_LENGTH
            )));
        }
        let plausible = address.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        }) && !(if ascii {
            // For ASCII, the same test by bytes.
            address
                .bytes()
                .any(|b| char::from(b).is_whitespace() || b.is_ascii_control())
        } else {
            address.chars().any(|c| c.is_whitespace() || c.is_control())
        });
        if !plausible {
            return Err(InvalidValue::new(
                "must be an email address such as jane@example.com",
            ));
        }
        Ok(Self(address))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address, given up without a copy (building a wire message).
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn addresses_are_trimmed_and_lower_cased() {
        assert_eq!(
            Email::parse("  Jane.Doe@Example.COM ").unwrap().as_str(),
            "jane.doe@example.com"
        );
    }

    #[test]
    fn implausible_addresses_are_refused() {
        for raw in [
            "",
            "jane",
            "@example.com",
            "jane@",
            "jane@example",
            "a b@c.de",
            "a@b@c.de",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} was accepted");
        }
    }

    proptest! {
        #[test]
        fn any_simple_address_is_accepted(local in "[a-z0-9._%+-]{1,40}", domain in "[a-z0-9-]{1,30}\\.[a-z]{2,10}") {
            let raw = format!("{local}@{domain}");
            let email = Email::parse(&raw).unwrap();
            prop_assert_eq!(email.as_str(), raw.as_str());
        }

        #[test]
        fn parsing_never_panics(raw in "\\PC*") {
            let _ = Email::parse(&raw);
        }
    }
}
