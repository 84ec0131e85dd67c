//! The key a client sends to make a mutation safe to retry.

use super::InvalidValue;

/// 1 to 255 printable ASCII characters (a UUID is the usual choice).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LENGTH: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.is_empty() || raw.len() > Self::MAX_LENGTH {
            return Err(InvalidValue::new("must be 1 to 255 characters"));
        }
        if !raw.bytes().all(|byte| (0x20..=0x7e).contains(&byte)) {
            return Err(InvalidValue::new("must be printable ASCII"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_printable_ascii() {
        assert!(IdempotencyKey::parse("0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        for raw in ["", "tab\there", "é", &"k".repeat(256)] {
            assert!(IdempotencyKey::parse(raw).is_err(), "{raw:?} accepted");
        }
    }
}
