//! `supportdesk.v1.WebhookEndpointService`: the endpoints customers register for the webhooks we
//! send, and their deliveries. The body of every outbound webhook is rendered by
//! `wire::convert::event`.

use tonic::{Request, Response, Status};

use super::{KeyedRequest, ListPages, answer, created, required, scope, stored_as, uuid_field};
use crate::domain::{
    DeliveryState, EndpointUrl, InvalidValue, PageTokenKeys, WebhookDelivery, WebhookEndpoint,
    parse_event_types,
};
use crate::errors::{AppError, FieldViolations};
use crate::idempotency::IdempotencyPolicy;
use crate::idempotency::Outcome;
use crate::service::{EndpointUpdate, IssuedSecret, NewEndpointRequest, WebhookEndpointAdmin};
use crate::wire::convert::unless_unspecified;
use crate::wire::proto::v1;

/// The name page tokens of ListWebhookEndpoints carry.
const LIST: &str = "webhook-endpoints";
/// The same for an endpoint's deliveries (`webhook-deliveries:<endpoint>`).
const DELIVERIES: &str = "webhook-deliveries";

/// The longest description.
const MAX_DESCRIPTION_CHARS: usize = 500;

pub struct WebhookEndpointApi {
    endpoints: WebhookEndpointAdmin,
    idempotency: IdempotencyPolicy,
    pages: PageTokenKeys,
}

impl WebhookEndpointApi {
    pub fn new(
        endpoints: WebhookEndpointAdmin,
        idempotency: IdempotencyPolicy,
        pages: PageTokenKeys,
    ) -> Self {
        Self {
            endpoints,
            idempotency,
            pages,
        }
    }

    fn url(&self, raw: &str) -> Result<EndpointUrl, InvalidValue> {
        let (schemes, addresses) = self.endpoints.url_rules();
        EndpointUrl::parse(raw, schemes, &addresses)
    }
}

fn description(raw: &str) -> Result<String, InvalidValue> {
    if raw.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(InvalidValue::new(format!(
            "must be at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(raw.trim().to_owned())
}

#[tonic::async_trait]
impl v1::webhook_endpoint_service_server::WebhookEndpointService for WebhookEndpointApi {
    async fn create_webhook_endpoint(
        &self,
        mut request: Request<v1::CreateWebhookEndpointRequest>,
    ) -> Result<Response<v1::CreateWebhookEndpointResponse>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let mut violations = FieldViolations::new();
        let Some(endpoint) = request.into_inner().webhook_endpoint else {
            violations.add("webhook_endpoint", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let url = violations.check("webhook_endpoint.url", self.url(&endpoint.url));
        let description = violations.check(
            "webhook_endpoint.description",
            description(&endpoint.description),
        );
        let event_types = violations.check(
            "webhook_endpoint.event_types",
            parse_event_types(&endpoint.event_types),
        );
        let (Some(url), Some(description), Some(event_types)) = (url, description, event_types)
        else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let respond_with_secret = |endpoint: &WebhookEndpoint, secret: &str| {
            created(
                Response::new(v1::CreateWebhookEndpointResponse {
                    webhook_endpoint: Some(v1::WebhookEndpoint::from(endpoint)),
                    secret: secret.to_owned(),
                }),
                &format!("/v1/webhookEndpoints/{}", endpoint.id),
            )
        };
        // The secret is never stored in clear: a keyed answer stores it sealed, and its replay
        // opens it.
        let sealed = |issued: &IssuedSecret| respond_with_secret(&issued.endpoint, &issued.sealed);
        let store = stored_as(&sealed);
        let (outcome, secret) = self
            .endpoints
            .create(
                &keyed.write(&store),
                NewEndpointRequest {
                    url,
                    description,
                    event_types,
                },
            )
            .await?;
        let revealed = secret.reveal();
        let replayed = matches!(outcome, Outcome::Replay(_));
        let mut response = answer(outcome, &|endpoint: &WebhookEndpoint| {
            respond_with_secret(endpoint, &revealed)
        })?;
        if replayed {
            let answer = response.get_mut();
            answer.secret = self.endpoints.reveal_issued(&answer.secret)?;
        }
        Ok(response)
    }

    async fn get_webhook_endpoint(
        &self,
        mut request: Request<v1::GetWebhookEndpointRequest>,
    ) -> Result<Response<v1::WebhookEndpoint>, Status> {
        let scope = scope(&mut request)?;
        let id = uuid_field(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        let endpoint = self.endpoints.get(&scope, id).await?;
        Ok(Response::new(v1::WebhookEndpoint::from(&endpoint)))
    }

    async fn list_webhook_endpoints(
        &self,
        mut request: Request<v1::ListWebhookEndpointsRequest>,
    ) -> Result<Response<v1::ListWebhookEndpointsResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let pages = ListPages::new(&self.pages, caller, LIST);
        let (page_size, after) = pages.request(message.page_size, &message.page_token)?;
        let page = self.endpoints.list(&scope, page_size, after).await?;
        Ok(Response::new(v1::ListWebhookEndpointsResponse {
            webhook_endpoints: page.items.iter().map(v1::WebhookEndpoint::from).collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn update_webhook_endpoint(
        &self,
        mut request: Request<v1::UpdateWebhookEndpointRequest>,
    ) -> Result<Response<v1::WebhookEndpoint>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let Some(endpoint) = message.webhook_endpoint else {
            violations.add("webhook_endpoint", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let id = violations.check("webhook_endpoint.id", uuid_field(&endpoint.id));
        let paths = message
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            violations.add(
                "update_mask",
                &InvalidValue::new(
                    "must name one or more of: url, description, event_types, disabled",
                ),
            );
        }
        let mut update = EndpointUpdate::default();
        for path in &paths {
            match path.as_str() {
                "url" => {
                    update.url = violations.check("webhook_endpoint.url", self.url(&endpoint.url));
                }
                "description" => {
                    update.description = violations.check(
                        "webhook_endpoint.description",
                        description(&endpoint.description),
                    );
                }
                "event_types" => {
                    update.event_types = violations.check(
                        "webhook_endpoint.event_types",
                        parse_event_types(&endpoint.event_types),
                    );
                }
                "disabled" => update.disabled = Some(endpoint.disabled),
                other => violations.add(
                    "update_mask",
                    &InvalidValue::new(format!(
                        "{other:?} cannot be changed; the fields are url, description, event_types, disabled"
                    )),
                ),
            }
        }
        let Some(id) = id else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        if !violations.is_empty() {
            return Err(AppError::InvalidArgument(violations).into());
        }
        let respond =
            |endpoint: &WebhookEndpoint| Response::new(v1::WebhookEndpoint::from(endpoint));
        let store = stored_as(&respond);
        let outcome = self
            .endpoints
            .update(&keyed.write(&store), id, update)
            .await?;
        answer(outcome, &respond)
    }

    async fn delete_webhook_endpoint(
        &self,
        mut request: Request<v1::DeleteWebhookEndpointRequest>,
    ) -> Result<Response<v1::DeleteWebhookEndpointResponse>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let id = uuid_field(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        let respond = |(): &()| Response::new(v1::DeleteWebhookEndpointResponse {});
        let store = stored_as(&respond);
        let outcome = self.endpoints.delete(&keyed.write(&store), id).await?;
        answer(outcome, &respond)
    }

    async fn rotate_webhook_endpoint_secret(
        &self,
        mut request: Request<v1::RotateWebhookEndpointSecretRequest>,
    ) -> Result<Response<v1::RotateWebhookEndpointSecretResponse>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let id = uuid_field(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        let respond_with_secret = |endpoint: &WebhookEndpoint, secret: &str| {
            Response::new(v1::RotateWebhookEndpointSecretResponse {
                webhook_endpoint: Some(v1::WebhookEndpoint::from(endpoint)),
                secret: secret.to_owned(),
            })
        };
        // Stored sealed with the key's outcome; a replay opens it.
        let sealed = |issued: &IssuedSecret| respond_with_secret(&issued.endpoint, &issued.sealed);
        let store = stored_as(&sealed);
        let (outcome, secret) = self
            .endpoints
            .rotate_secret(&keyed.write(&store), id)
            .await?;
        let revealed = secret.reveal();
        let replayed = matches!(outcome, Outcome::Replay(_));
        let mut response = answer(outcome, &|endpoint: &WebhookEndpoint| {
            respond_with_secret(endpoint, &revealed)
        })?;
        if replayed {
            let answer = response.get_mut();
            answer.secret = self.endpoints.reveal_issued(&answer.secret)?;
        }
        Ok(response)
    }

    async fn send_test_webhook_event(
        &self,
        mut request: Request<v1::SendTestWebhookEventRequest>,
    ) -> Result<Response<v1::WebhookDelivery>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let id = uuid_field(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        let respond =
            |delivery: &WebhookDelivery| Response::new(v1::WebhookDelivery::from(delivery));
        let store = stored_as(&respond);
        let outcome = self.endpoints.send_test(&keyed.write(&store), id).await?;
        answer(outcome, &respond)
    }

    async fn list_webhook_deliveries(
        &self,
        mut request: Request<v1::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<v1::ListWebhookDeliveriesResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        let state = violations.check("state", unless_unspecified::<DeliveryState>(message.state));
        let (endpoint_id, pages, page_size, after) = ListPages::of_parent(
            &self.pages,
            caller,
            DELIVERIES,
            ("endpoint_id", uuid_field(&message.endpoint_id)),
            (message.page_size, &message.page_token),
        )?;
        let Some(state) = state else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let page = self
            .endpoints
            .deliveries(&scope, endpoint_id, state, page_size, after)
            .await?;
        Ok(Response::new(v1::ListWebhookDeliveriesResponse {
            webhook_deliveries: page.items.iter().map(v1::WebhookDelivery::from).collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn redrive_webhook_delivery(
        &self,
        mut request: Request<v1::RedriveWebhookDeliveryRequest>,
    ) -> Result<Response<v1::WebhookDelivery>, Status> {
        let scope = scope(&mut request)?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        let endpoint_id = violations.check("endpoint_id", uuid_field(&message.endpoint_id));
        let id = violations.check("id", uuid_field(&message.id));
        let (Some(endpoint_id), Some(id)) = (endpoint_id, id) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let delivery = self.endpoints.redrive(&scope, endpoint_id, id).await?;
        Ok(Response::new(v1::WebhookDelivery::from(&delivery)))
    }

    async fn redrive_failed_webhook_deliveries(
        &self,
        mut request: Request<v1::RedriveFailedWebhookDeliveriesRequest>,
    ) -> Result<Response<v1::RedriveFailedWebhookDeliveriesResponse>, Status> {
        let scope = scope(&mut request)?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        let endpoint_id = violations.check("endpoint_id", uuid_field(&message.endpoint_id));
        let since = violations.check(
            "since",
            message
                .since
                .ok_or_else(required)
                .and_then(crate::domain::Timestamp::try_from)
                .map(crate::domain::Timestamp::get),
        );
        let (Some(endpoint_id), Some(since)) = (endpoint_id, since) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let redriven = self
            .endpoints
            .redrive_failed_since(&scope, endpoint_id, since)
            .await?;
        Ok(Response::new(v1::RedriveFailedWebhookDeliveriesResponse {
            redriven: i32::try_from(redriven).unwrap_or(i32::MAX),
        }))
    }
}
