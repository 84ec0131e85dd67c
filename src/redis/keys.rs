//! Key names: every key the service writes is under the configured prefix (`REDIS_KEY_PREFIX`),
//! so instances and tests can share one server.

/// Key names under the configured prefix, so instances and tests can share one server.
#[derive(Clone, Debug)]
pub struct RedisKeys {
    prefix: String,
}

impl RedisKeys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn key(&self, suffix: &str) -> String {
        self.key_of_parts(&[suffix])
    }

    /// [`RedisKeys::key`] of a suffix in parts, concatenated without the formatting machinery:
    /// the keys every request makes.
    pub fn key_of_parts(&self, parts: &[&str]) -> String {
        let length = parts.iter().map(|part| part.len()).sum::<usize>();
        let mut key = String::with_capacity(self.prefix.len() + length);
        key.push_str(&self.prefix);
        for part in parts {
            key.push_str(part);
        }
        key
    }
}
