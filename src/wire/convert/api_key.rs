//! API keys as the API shows them (never their secret, which only CreateApiKey's answer holds).

use super::{optional_timestamp, timestamp};
use crate::domain;
use crate::wire::proto::v1;

impl From<domain::ApiKey> for v1::ApiKey {
    fn from(key: domain::ApiKey) -> Self {
        v1::ApiKey {
            id: key.id.to_string(),
            name: key.name.as_str().to_owned(),
            prefix: key.prefix,
            roles: key
                .roles
                .into_iter()
                .map(|role| v1::UserRole::from(role).into())
                .collect(),
            create_time: Some(timestamp(key.created_at)),
            last_use_time: optional_timestamp(key.last_used_at),
            revoke_time: optional_timestamp(key.revoked_at),
        }
    }
}
