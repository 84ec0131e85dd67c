//! A builder for the endpoints of the webhooks we send, so that a test says what it registers
//! and as whom: `app.webhook_endpoint(&receiver.url("desk")).event_types(&["ticket.created"])
//! .create().await` (the answer holds the signing secret, once), or
//! `app.webhook_endpoint("http://10.1.2.3/").try_create().await` for a refusal. Anything left
//! unsaid is valid: every event type, no description, registered by the account's admin under a
//! fresh idempotency key.

use supportdesk::wire::proto::v1;
use tonic::Status;

use super::{TestApp, TestUser, keyed};

/// A CreateWebhookEndpoint call in the making.
pub(crate) struct WebhookEndpointBuilder<'a> {
    app: &'a TestApp,
    caller: &'a TestUser,
    endpoint: v1::WebhookEndpoint,
}

impl TestApp {
    /// `url`, subscribed to every event type, registered by the admin until told otherwise.
    pub(crate) fn webhook_endpoint(&self, url: &str) -> WebhookEndpointBuilder<'_> {
        WebhookEndpointBuilder {
            app: self,
            caller: &self.admin,
            endpoint: v1::WebhookEndpoint {
                url: url.to_owned(),
                ..Default::default()
            },
        }
    }
}

impl<'a> WebhookEndpointBuilder<'a> {
    /// Subscribed to `event_types` only (none means every type).
    pub(crate) fn event_types(mut self, event_types: &[&str]) -> Self {
        self.endpoint.event_types = event_types.iter().map(|kind| (*kind).to_owned()).collect();
        self
    }

    pub(crate) fn description(mut self, description: &str) -> Self {
        description.clone_into(&mut self.endpoint.description);
        self
    }

    /// Registered by `caller` (of this account or another) rather than the admin.
    pub(crate) fn by(mut self, caller: &'a TestUser) -> Self {
        self.caller = caller;
        self
    }

    /// The request as it would be sent, for a test that sends it its own way.
    pub(crate) fn request(self) -> v1::CreateWebhookEndpointRequest {
        v1::CreateWebhookEndpointRequest {
            webhook_endpoint: Some(self.endpoint),
        }
    }

    /// Registers the endpoint, which must succeed: the endpoint and its signing secret.
    pub(crate) async fn create(self) -> v1::CreateWebhookEndpointResponse {
        self.try_create().await.expect("the endpoint is registered")
    }

    /// Tries to register the endpoint: for a test about what is refused.
    pub(crate) async fn try_create(self) -> Result<v1::CreateWebhookEndpointResponse, Status> {
        let (app, caller) = (self.app, self.caller);
        app.webhook_endpoints
            .clone()
            .create_webhook_endpoint(keyed(caller.request(self.request())))
            .await
            .map(tonic::Response::into_inner)
    }
}
