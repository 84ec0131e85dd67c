//! An email address as the service stores it: trimmed, lower-cased, and deliverable by the
//! service's own mail library.
//!
//! New addresses are held to one rule, the one lettre applies when a message is sent (the
//! `email_address` crate's local part and domain, IDN domains through IDNA), plus two of ours:
//! at most 254 characters (RFC 5321) and a domain with a dot (no `jane@localhost`, no IP
//! literal). So an address the service accepts is one its mail can be addressed to.
//! Addresses stored under the looser rule of earlier releases stay readable ([`Email::from_stored`])
//! and their users can still log in ([`Email::lookup`]); `supportdesk migrate` lists them.

use std::fmt;
use std::str::FromStr;

use super::InvalidValue;

/// What a refused address is told, by either rule.
const NOT_AN_ADDRESS: &str =
    "must be an email address mail can be sent to, such as jane@example.com";

/// A deliverable address (`local@domain.tld`), lower-cased so that lookups and the per-account
/// unique key are case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Addresses longer than RFC 5321's 254 characters cannot be delivered.
    pub const MAX_LENGTH: usize = 254;

    /// The plain shape most addresses have, as a regular expression PostgreSQL and proptest both
    /// read (anchor it where it is used): dot-separated atoms of letters, digits, `_`, `+` and `-`,
    /// at a domain of letter-or-digit labels ending in a label that starts with a letter. Every
    /// address of this shape within the lengths of [`Email::PLAIN_SHAPE_LENGTHS`] satisfies
    /// [`Email::parse`], so a scan for stored addresses the rule refuses looks only at the rest.
    pub const PLAIN_SHAPE: &str = r"[a-z0-9_+-]+(\.[a-z0-9_+-]+)*@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?";

    /// The whole address and its local part, at most: RFC 5321's limits.
    pub const PLAIN_SHAPE_LENGTHS: (usize, usize) = (Self::MAX_LENGTH, 64);

    /// A new address: it must satisfy the delivery rule (the module's documentation).
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let address = Self::lookup(raw)?;
        let deliverable = lettre::Address::from_str(address.as_str()).is_ok_and(|parsed| {
            let domain = parsed.domain();
            !domain.starts_with('[') && domain.parse::<std::net::IpAddr>().is_err()
        });
        if !deliverable {
            return Err(InvalidValue::new(NOT_AN_ADDRESS));
        }
        Ok(address)
    }

    /// An address to find an existing user by (logging in, asking for a password reset):
    /// normalised as [`Email::parse`] does, but held only to the looser rule addresses were
    /// stored under before, so that nobody stored then is locked out.
    pub fn lookup(raw: &str) -> Result<Self, InvalidValue> {
        // The length as sent, as the proto's `max_len` counts it.
        let sent = if raw.is_ascii() {
            raw.len()
        } else {
            raw.chars().count()
        };
        if sent > Self::MAX_LENGTH {
            return Err(InvalidValue::new(format!(
                "must be at most {} characters",
                Self::MAX_LENGTH
            )));
        }
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
            return Err(InvalidValue::new(NOT_AN_ADDRESS));
        }
        Ok(Self(address))
    }

    /// An address read back from PostgreSQL or the cache, as it was stored: it passed the rule in
    /// force when it was written, and a stricter rule since must not make its row unreadable.
    pub fn from_stored(stored: &str) -> Self {
        Self(stored.to_owned())
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

    /// An address of exactly `length` characters: a 64-character local part at a domain of
    /// labels of at most 63.
    fn address_of_length(length: usize) -> String {
        let local = "l".repeat(64);
        let mut domain = String::new();
        let mut left = length - local.len() - 1;
        while left > 0 {
            if !domain.is_empty() {
                domain.push('.');
                left -= 1;
            }
            let label = left.min(63);
            // The last label starts with a letter; a label left at 1 would be a lone letter.
            domain.push_str(&"d".repeat(label));
            left -= label;
        }
        format!("{local}@{domain}")
    }

    /// Addresses of [`Email::PLAIN_SHAPE`] itself with its repetitions cut short, so that they
    /// fit its lengths (its longest labels and local part are `address_of_length`'s).
    fn plain_shape_in_short() -> impl Strategy<Value = String> {
        let short = Email::PLAIN_SHAPE
            .replace("]+", "]{1,8}")
            .replace(")+", "){1,3}")
            .replace(")*", "){0,3}")
            .replace("{0,61}", "{0,8}");
        proptest::string::string_regex(&short).expect("the shape is a regular expression")
    }

    fn lettre_accepts(address: &str) -> bool {
        lettre::Address::from_str(address).is_ok()
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

    /// The cases the mail library and the looser rule of earlier releases disagree on, and the
    /// usual ones they agree on: the service takes the mail library's side every time.
    #[test]
    fn new_addresses_are_held_to_the_rule_the_mail_library_sends_by() {
        let deliverable = [
            "jane@example.com",
            "jane.doe@example.com",
            "jane+support@example.com",
            "jane_doe-1@mail.example.co.uk",
            "\"jane\"@example.com",
            "jane@bücher.example",
            "jane@xn--bcher-kva.example",
        ];
        let undeliverable = [
            "a..b@example.com",
            ".jane@example.com",
            "jane.@example.com",
            "a,b@example.com",
            "jane(comment)@example.com",
            "ja\\ne@example.com",
            "jane@-example.com",
            "jane@example-.com",
            "jane@[127.0.0.1]",
            "jane@127.0.0.1",
            "jane@localhost",
        ];
        for raw in deliverable {
            assert!(lettre_accepts(raw), "lettre refuses {raw:?}");
            assert_eq!(
                Email::parse(raw).map(Email::into_string),
                Ok(raw.to_owned())
            );
        }
        for raw in undeliverable {
            let refused = Email::parse(raw).expect_err(raw);
            assert_eq!(
                refused.description(),
                "must be an email address mail can be sent to, such as jane@example.com",
                "{raw:?}"
            );
        }
        // What the looser rule let in: still found when logging in.
        for raw in ["a..b@example.com", "a,b@example.com", "jane.@example.com"] {
            assert!(!lettre_accepts(raw), "lettre accepts {raw:?}");
            assert_eq!(
                Email::lookup(raw).map(Email::into_string),
                Ok(raw.to_owned())
            );
        }
    }

    #[test]
    fn an_address_may_have_254_characters_and_not_255() {
        let longest = address_of_length(254);
        assert_eq!(longest.len(), 254);
        assert!(lettre_accepts(&longest));
        assert!(Email::parse(&longest).is_ok());
        let too_long = address_of_length(255);
        assert_eq!(too_long.len(), 255);
        assert_eq!(
            Email::parse(&too_long).unwrap_err().description(),
            "must be at most 254 characters"
        );
    }

    #[test]
    fn a_stored_address_is_taken_as_it_is() {
        assert_eq!(
            Email::from_stored("a..b@example.com").as_str(),
            "a..b@example.com"
        );
    }

    proptest! {
        #[test]
        fn any_simple_address_is_accepted(local in "[a-z0-9_%+-]{1,40}", domain in "[a-z0-9-]{1,30}\\.[a-z]{2,10}") {
            let raw = format!("{local}@{domain}");
            // A dotted domain ending in letters: only the mail library's rule can refuse it.
            prop_assert_eq!(Email::parse(&raw).is_ok(), lettre_accepts(&raw), "{}", raw);
        }

        #[test]
        fn every_address_the_service_accepts_the_mail_library_accepts(raw in "[a-zA-Z0-9.,_%+\"()@\\[\\]-]{1,30}@[a-z0-9.\\[\\]-]{1,20}") {
            if let Ok(email) = Email::parse(&raw) {
                prop_assert!(lettre_accepts(email.as_str()), "{}", raw);
            }
        }

        #[test]
        fn every_address_of_the_plain_shape_is_accepted(raw in plain_shape_in_short()) {
            prop_assert!(Email::parse(&raw).is_ok(), "{}", raw);
        }

        #[test]
        fn parsing_never_panics(raw in "\\PC*") {
            let _ = Email::parse(&raw);
        }
    }
}
