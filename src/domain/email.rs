//! An email address as the service stores it: trimmed, lower-cased, and deliverable by the
//! service's own mail library.
//!
//! New addresses are held to one rule, declared in the protos on every field that takes one
//! (`buf.validate` `string.pattern` [`Email::PATTERN`], the local-part limit [`Email::LOCAL_PART`]
//! as a CEL rule, and `max_len` 254) so that clients check it before sending, and applied here
//! together with the check lettre makes when a message is sent (the `email_address` crate, IDN
//! domains through IDNA). For an ASCII address the declared rule and the service's are the same
//! rule, and lettre accepts every address it admits; a domain label with other characters is
//! IDNA's to judge, which no pattern states. So an address the service accepts is one its mail
//! can be addressed to. The rule is narrower than RFC 5322 where mail is, in practice: no quoted
//! local parts, no local part outside ASCII (it would need SMTPUTF8 of every relay), no IP
//! literal, a dotted domain whose last label starts with a letter.
//! Addresses stored under the looser rule of earlier releases stay readable ([`Email::from_stored`])
//! and their users can still log in ([`Email::lookup`]); `supportdesk migrate` lists them.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;

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

    /// The shape of a new address as sent, as the protos declare it (RE2, which the `regex`
    /// crate reads alike): optional surrounding white space (trimmed), a dot-atom local part of
    /// RFC 5322's ASCII characters, `@`, and dotted labels of letters, digits and inner hyphens,
    /// at most 63 each, the last starting with a letter; any non-ASCII character counts as a
    /// letter here, and IDNA decides.
    pub const PATTERN: &str = concat!(
        r"^[\x{09}-\x{0D}\x{85}\p{Z}]*",
        r"[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]+)*",
        r"@(?:(?:[a-zA-Z0-9]|[^\x{00}-\x{7F}])",
        r"(?:(?:[a-zA-Z0-9-]|[^\x{00}-\x{7F}]){0,61}(?:[a-zA-Z0-9]|[^\x{00}-\x{7F}]))?\.)+",
        r"(?:[a-zA-Z]|[^\x{00}-\x{7F}])",
        r"(?:(?:[a-zA-Z0-9-]|[^\x{00}-\x{7F}]){0,61}(?:[a-zA-Z0-9]|[^\x{00}-\x{7F}]))?",
        r"[\x{09}-\x{0D}\x{85}\p{Z}]*$",
    );

    /// RFC 5321's 64 characters before the `@` (white space around the address aside), declared
    /// as a CEL rule (`this.matches(...)`): a pattern cannot also count the dot-atom's length.
    pub const LOCAL_PART: &str = r"^[\x{09}-\x{0D}\x{85}\p{Z}]*[^@]{1,64}@";

    /// A new address: it must satisfy the declared rule and the mail library's (the module's
    /// documentation).
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        static DECLARED: LazyLock<[Regex; 2]> = LazyLock::new(|| {
            [Email::PATTERN, Email::LOCAL_PART]
                .map(|pattern| Regex::new(pattern).expect("the declared rule is a regex"))
        });
        let address = Self::lookup(raw)?;
        let deliverable = DECLARED.iter().all(|rule| rule.is_match(raw))
            && lettre::Address::from_str(address.as_str()).is_ok();
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

/// `address` as every email provider is sent it (the SMTP relay's envelope and `To` header, the
/// email API's `to`): its domain in IDNA's ASCII form (`xn--...`), the rest as it is. One form
/// for every provider, so what a provider reports back (a bounce, a complaint, its logs) names
/// the address the others would have been given; the stored address keeps the form it was given
/// in. A Unicode domain would need SMTPUTF8 of every relay on the way. An address whose domain
/// IDNA refuses is left as it is, for the provider's parse to refuse.
pub fn idna_form(address: &str) -> std::borrow::Cow<'_, str> {
    match address.rsplit_once('@') {
        Some((local, domain)) if !domain.is_ascii() => idna::domain_to_ascii(domain)
            .map_or(std::borrow::Cow::Borrowed(address), |domain| {
                std::borrow::Cow::Owned(format!("{local}@{domain}"))
            }),
        _ => std::borrow::Cow::Borrowed(address),
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
    fn an_international_domain_goes_as_idna_and_the_rest_of_the_address_as_it_is() {
        assert_eq!(
            idna_form("jane@bücher.example"),
            "jane@xn--bcher-kva.example"
        );
        assert_eq!(idna_form("jane@example.com"), "jane@example.com");
        assert_eq!(idna_form("jöhn@example.com"), "jöhn@example.com");
    }

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
    /// usual ones they agree on: the service takes the mail library's side every time, and the
    /// declared rule's where it is narrower still.
    #[test]
    fn new_addresses_are_held_to_the_rule_the_mail_library_sends_by() {
        let deliverable = [
            "jane@example.com",
            "jane.doe@example.com",
            "jane+support@example.com",
            "jane_doe-1@mail.example.co.uk",
            "o'brien!{x}@example.com",
            "jane@bücher.example",
            "jane@xn--bcher-kva.example",
        ];
        // Mail the library would address, which the declared rule refuses (the module's
        // documentation says why).
        let narrower = [
            "\"jane\"@example.com",
            "josé@example.com",
            "jane@[127.0.0.1]",
            "jane@127.0.0.1",
            "jane@localhost",
            "jane@example.123",
            "jane@exa_mple.com",
        ];
        for raw in narrower {
            assert!(lettre_accepts(raw), "lettre refuses {raw:?}");
            assert!(Email::parse(raw).is_err(), "{raw:?} was accepted");
        }
        let undeliverable = [
            "a..b@example.com",
            ".jane@example.com",
            "jane.@example.com",
            "a,b@example.com",
            "jane(comment)@example.com",
            "ja\\ne@example.com",
            "jane@-example.com",
            "jane@example-.com",
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
    fn the_local_part_may_have_64_characters_and_not_65() {
        let at_limit = format!("{}@example.com", "l".repeat(64));
        assert!(Email::parse(&at_limit).is_ok());
        assert!(Email::parse(&format!(" \u{3000}{at_limit}\t")).is_ok());
        let past = format!("{}@example.com", "l".repeat(65));
        assert!(!lettre_accepts(&past));
        assert!(Email::parse(&past).is_err());
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

        /// For ASCII, the rule the protos declare is the whole rule: the mail library refuses
        /// nothing more.
        #[test]
        fn an_ascii_address_is_accepted_exactly_when_the_declared_rule_accepts_it(raw in "[ \ta-zA-Z0-9.,_%+!#'\"()-]{0,70}@[a-zA-Z0-9._-]{0,30}[a-z]{0,3}") {
            let declared = [Email::PATTERN, Email::LOCAL_PART]
                .iter()
                .all(|pattern| regex::Regex::new(pattern).unwrap().is_match(&raw));
            prop_assert_eq!(Email::parse(&raw).is_ok(), declared, "{}", raw);
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
