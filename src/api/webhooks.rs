//! `supportdesk.v1.WebhookService`, incoming: the payment provider's events (the file keeps the
//! proto service's name; the webhooks we send are `service::outbound_webhooks`). Wire ↔ domain for the payment provider's deliveries and the
//! admin RPCs over them; verification, storage and the queue's rules live in
//! `service::payment_events`. ReceivePaymentEvent takes the body as `google.api.HttpBody`, so the bytes
//! the provider signed reach the service unchanged through Envoy's transcoder.

use tonic::{Request, Response, Status};

use super::{ListPages, required, scope};
use crate::domain::{PageTokenKeys, WebhookEventId, WebhookEventState};
use crate::errors::{AppError, FieldViolations};
use crate::service::PaymentEvents;
use crate::wire::proto::v1;

/// The request header (gRPC metadata) carrying the provider's signature.
const SIGNATURE_HEADER: &str = "stripe-signature";

pub struct WebhookApi {
    webhooks: PaymentEvents,
    pages: PageTokenKeys,
}

impl WebhookApi {
    pub fn new(webhooks: PaymentEvents, pages: PageTokenKeys) -> Self {
        Self { webhooks, pages }
    }
}

#[tonic::async_trait]
impl v1::webhook_service_server::WebhookService for WebhookApi {
    async fn receive_payment_event(
        &self,
        request: Request<v1::ReceivePaymentEventRequest>,
    ) -> Result<Response<v1::ReceivePaymentEventResponse>, Status> {
        // A header that is not visible ASCII cannot be a signature; absent and empty are the
        // same to the verifier (missing).
        let signature = request
            .metadata()
            .get(SIGNATURE_HEADER)
            .map(|value| value.to_str().unwrap_or("\u{0}"))
            .map(str::to_owned);
        let payload = request
            .into_inner()
            .http_body
            .map(|body| body.data)
            .unwrap_or_default();
        let receipt = self
            .webhooks
            .receive(signature.as_deref(), &payload)
            .await?;
        Ok(Response::new(v1::ReceivePaymentEventResponse {
            event_id: receipt.event_id.to_string(),
            duplicate: receipt.duplicate,
        }))
    }

    async fn list_webhook_events(
        &self,
        mut request: Request<v1::ListWebhookEventsRequest>,
    ) -> Result<Response<v1::ListWebhookEventsResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        let state = violations.check("state", WebhookEventState::try_from(message.state));
        // Page tokens are bound to the state listed: a token of the dead list does not page the
        // received one.
        let list = state.map(|state| format!("webhook-events:{state}"));
        let page = ListPages::checked_text(
            &self.pages,
            caller,
            list.as_deref(),
            &mut violations,
            message.page_size,
            &message.page_token,
        );
        let (Some(state), Some((pages, page_size, after))) = (state, page) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let page = self.webhooks.list(&scope, state, page_size, after).await?;
        Ok(Response::new(v1::ListWebhookEventsResponse {
            events: page.items.iter().map(v1::WebhookEvent::from).collect(),
            next_page_token: pages.next_text_token(page.next.as_ref()),
        }))
    }

    async fn get_webhook_event(
        &self,
        mut request: Request<v1::GetWebhookEventRequest>,
    ) -> Result<Response<v1::WebhookEvent>, Status> {
        let scope = scope(&mut request)?;
        let id = event_id(&request.get_ref().id)?;
        let event = self.webhooks.get(&scope, &id).await?;
        Ok(Response::new(v1::WebhookEvent::from(&event)))
    }

    async fn redrive_webhook_event(
        &self,
        mut request: Request<v1::RedriveWebhookEventRequest>,
    ) -> Result<Response<v1::WebhookEvent>, Status> {
        let scope = scope(&mut request)?;
        let id = event_id(&request.get_ref().id)?;
        let event = self.webhooks.redrive(&scope, &id).await?;
        Ok(Response::new(v1::WebhookEvent::from(&event)))
    }
}

fn event_id(raw: &str) -> Result<WebhookEventId, AppError> {
    if raw.is_empty() {
        return Err(AppError::invalid_field("id", &required()));
    }
    WebhookEventId::parse(raw).map_err(|problem| AppError::invalid_field("id", &problem))
}
