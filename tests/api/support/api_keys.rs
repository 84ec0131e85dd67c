//! A builder for API keys, so that a test says which key it makes and who makes it:
//! `app.api_key("billing sync").roles(&[Agent]).create().await` (the answer holds the secret,
//! once), or `app.api_key("").try_create().await` for a refusal. Anything left unsaid is valid:
//! an agent key, made by the account's admin under a fresh idempotency key.

use supportdesk::wire::proto::v1;
use tonic::Status;

use super::{TestApp, TestUser, keyed};

/// A CreateApiKey call in the making.
pub(crate) struct ApiKeyBuilder<'a> {
    app: &'a TestApp,
    caller: &'a TestUser,
    key: v1::ApiKey,
}

impl TestApp {
    /// An agent key named `name`, made by the admin until told otherwise.
    pub(crate) fn api_key(&self, name: &str) -> ApiKeyBuilder<'_> {
        ApiKeyBuilder {
            app: self,
            caller: &self.admin,
            key: v1::ApiKey {
                name: name.to_owned(),
                roles: vec![v1::UserRole::Agent.into()],
                ..Default::default()
            },
        }
    }
}

impl ApiKeyBuilder<'_> {
    /// With exactly `roles` (an empty list, or a customer's, is refused).
    pub(crate) fn roles(mut self, roles: &[v1::UserRole]) -> Self {
        self.key.roles = roles.iter().map(|role| (*role).into()).collect();
        self
    }

    /// The request as it would be sent, for a test that sends it its own way.
    pub(crate) fn request(self) -> v1::CreateApiKeyRequest {
        v1::CreateApiKeyRequest {
            api_key: Some(self.key),
        }
    }

    /// Makes the key, which must succeed: the key and its secret.
    pub(crate) async fn create(self) -> v1::CreateApiKeyResponse {
        self.try_create().await.expect("the API key is made")
    }

    /// Tries to make the key: for a test about what is refused.
    pub(crate) async fn try_create(self) -> Result<v1::CreateApiKeyResponse, Status> {
        let (app, caller) = (self.app, self.caller);
        app.api_keys
            .clone()
            .create_api_key(keyed(caller.request(self.request())))
            .await
            .map(tonic::Response::into_inner)
    }
}
