//! Accounts as the API shows them.

use super::timestamp;
use crate::domain;
use crate::wire::proto::v1;

impl From<domain::Account> for v1::Account {
    fn from(account: domain::Account) -> Self {
        v1::Account {
            id: account.id.to_string(),
            name: account.name.as_str().to_owned(),
            slug: account.slug.as_str().to_owned(),
            create_time: Some(timestamp(account.created_at)),
        }
    }
}
