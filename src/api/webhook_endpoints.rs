//! `supportdesk.v1.WebhookEndpointService`, and the body of every outbound webhook: the `Event`
//! message in proto3 JSON, rendered with the same options Envoy's transcoder uses for REST
//! (lowerCamelCase names, primitive fields always printed, enums by name).

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use tonic::{Request, Response, Status};

use super::{
    KeyedRequest, ListPages, answer, created, optional_timestamp, required, scope, stored_as,
    timestamp,
};
use crate::db::models::event::{EventData, StoredEvent};
use crate::domain::{
    DeliveryState, EndpointState, EndpointUrl, InvalidValue, PageTokenKeys, WebhookDelivery,
    WebhookEndpoint, event_public_id, hyphenated_uuid, parse_event_types,
};
use crate::errors::{AppError, FieldViolations};
use crate::idempotency::IdempotencyPolicy;
use crate::idempotency::Outcome;
use crate::service::{
    EndpointUpdate, IssuedSecret, NewEndpointRequest, RenderEvent, WebhookEndpointAdmin,
};
use crate::wire::proto::{self, v1};

/// The name page tokens of ListWebhookEndpoints carry.
const LIST: &str = "webhook-endpoints";
/// The same for an endpoint's deliveries (`webhook-deliveries:<endpoint>`).
const DELIVERIES: &str = "webhook-deliveries";

/// The payload version every event carries.
pub const EVENT_API_VERSION: &str = "2026-11-28";

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

fn uuid_field(raw: &str) -> Result<uuid::Uuid, InvalidValue> {
    if raw.is_empty() {
        return Err(required());
    }
    hyphenated_uuid(raw).ok_or_else(|| InvalidValue::new("must be a UUID in its hyphenated form"))
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
        let state = violations.check("state", state_from_wire(message.state));
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
                .and_then(|since| crate::domain::Timestamp::parse(since.seconds, since.nanos))
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

fn state_from_wire(value: i32) -> Result<Option<DeliveryState>, InvalidValue> {
    match v1::WebhookDeliveryState::try_from(value) {
        Ok(v1::WebhookDeliveryState::Unspecified) => Ok(None),
        Ok(v1::WebhookDeliveryState::Pending) => Ok(Some(DeliveryState::Pending)),
        Ok(v1::WebhookDeliveryState::Succeeded) => Ok(Some(DeliveryState::Succeeded)),
        Ok(v1::WebhookDeliveryState::Failed) => Ok(Some(DeliveryState::Failed)),
        Err(_) => Err(InvalidValue::new(format!("{value} is no delivery state"))),
    }
}

impl From<&WebhookEndpoint> for v1::WebhookEndpoint {
    fn from(endpoint: &WebhookEndpoint) -> Self {
        v1::WebhookEndpoint {
            id: endpoint.id.to_string(),
            url: endpoint.url.clone(),
            description: endpoint.description.clone(),
            event_types: endpoint
                .event_types
                .iter()
                .map(|kind| kind.as_str().to_owned())
                .collect(),
            disabled: endpoint.state == EndpointState::Disabled,
            state: match endpoint.state {
                EndpointState::Enabled => v1::WebhookEndpointState::Enabled,
                EndpointState::Disabled => v1::WebhookEndpointState::Disabled,
            }
            .into(),
            disabled_reason: endpoint
                .disabled_reason
                .map(|reason| reason.as_str().to_owned())
                .unwrap_or_default(),
            disable_time: optional_timestamp(endpoint.disabled_at),
            previous_secret_expire_time: optional_timestamp(endpoint.previous_secret_expires_at),
            create_time: Some(timestamp(endpoint.created_at)),
            update_time: Some(timestamp(endpoint.updated_at)),
        }
    }
}

impl From<&WebhookDelivery> for v1::WebhookDelivery {
    fn from(delivery: &WebhookDelivery) -> Self {
        v1::WebhookDelivery {
            id: delivery.id.to_string(),
            endpoint_id: delivery.endpoint_id.to_string(),
            event_id: event_public_id(delivery.event_id),
            event_type: delivery.event_type.clone(),
            state: match delivery.state {
                DeliveryState::Pending => v1::WebhookDeliveryState::Pending,
                DeliveryState::Succeeded => v1::WebhookDeliveryState::Succeeded,
                DeliveryState::Failed => v1::WebhookDeliveryState::Failed,
            }
            .into(),
            attempts: delivery.attempts,
            next_attempt_time: optional_timestamp(delivery.next_attempt_at),
            create_time: Some(timestamp(delivery.created_at)),
            attempt_log: delivery
                .attempt_log
                .iter()
                .map(|attempt| v1::WebhookDeliveryAttempt {
                    attempt: attempt.attempt,
                    start_time: Some(timestamp(attempt.started_at)),
                    latency_ms: attempt.latency_ms,
                    http_status: attempt.http_status.unwrap_or_default(),
                    error: attempt.error.clone().unwrap_or_default(),
                    response_excerpt: attempt.response_excerpt.clone(),
                    url: attempt.url.clone(),
                })
                .collect(),
        }
    }
}

/// An event as the API's `Event` message.
impl From<&StoredEvent> for v1::Event {
    fn from(event: &StoredEvent) -> Self {
        let mut refund = None;
        let data = match &event.data {
            EventData::Ticket(ticket) => v1::event::Data::Ticket(v1::Ticket::from(ticket.clone())),
            EventData::Comment(comment) => {
                v1::event::Data::Comment(v1::Comment::from(comment.clone()))
            }
            EventData::Attachment(attachment) => {
                v1::event::Data::Attachment(v1::Attachment::from(attachment.as_ref().clone()))
            }
            EventData::Charge(charge) => v1::event::Data::Charge(v1::Charge::from(charge.as_ref())),
            EventData::Refund(charge, refunded) => {
                refund = Some(v1::EventRefund {
                    id: refunded.id.to_string(),
                    amount: Some(v1::Money::from(refunded.amount)),
                    create_time: Some(timestamp(refunded.created_at)),
                    provider_refund_id: refunded.provider_refund_id.clone().unwrap_or_default(),
                });
                v1::event::Data::Charge(v1::Charge::from(charge.as_ref()))
            }
            EventData::Operation(operation) => v1::event::Data::Operation(
                crate::wire::proto::google::longrunning::Operation::from(operation.as_ref()),
            ),
            EventData::WebhookEndpoint(endpoint) => {
                v1::event::Data::WebhookEndpoint(v1::WebhookEndpoint::from(endpoint))
            }
        };
        v1::Event {
            id: event_public_id(event.id),
            r#type: event.event_type.as_str().to_owned(),
            account_id: event.account_id.to_string(),
            create_time: Some(timestamp(event.created_at)),
            api_version: EVENT_API_VERSION.to_owned(),
            changed_fields: event.changed_fields.clone(),
            refund,
            data: Some(data),
        }
    }
}

/// Renders events as delivery bodies: proto3 JSON of [`v1::Event`].
pub struct JsonEvents {
    descriptor: prost_reflect::MessageDescriptor,
}

impl JsonEvents {
    pub fn new() -> anyhow::Result<Self> {
        let pool = DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET)?;
        let descriptor = pool
            .get_message_by_name("supportdesk.v1.Event")
            .ok_or_else(|| anyhow::anyhow!("supportdesk.v1.Event is not in the descriptor set"))?;
        Ok(Self { descriptor })
    }

    /// The JSON of `event`.
    pub fn json(&self, event: &v1::Event) -> Result<Vec<u8>, String> {
        let message =
            DynamicMessage::decode(self.descriptor.clone(), event.encode_to_vec().as_slice())
                .map_err(|error| error.to_string())?;
        let options = SerializeOptions::new().skip_default_fields(false);
        let mut body = Vec::new();
        let mut serializer = serde_json::Serializer::new(&mut body);
        message
            .serialize_with_options(&mut serializer, &options)
            .map_err(|error| error.to_string())?;
        Ok(body)
    }
}

impl RenderEvent for JsonEvents {
    fn body(&self, event: &StoredEvent) -> Result<Vec<u8>, String> {
        self.json(&v1::Event::from(event))
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::EventType;

    /// The names of the `in:` rule of the first `event_types` field of a proto file.
    fn declared_event_types(proto: &str) -> Vec<&str> {
        let field = proto
            .find("repeated string event_types")
            .expect("the file declares event_types");
        let list = &proto[field..];
        let start = list.find("in: [").expect("event_types has an `in` rule") + "in: [".len();
        let end = start + list[start..].find(']').expect("the list ends");
        list[start..end]
            .split(',')
            .map(|name| name.trim().trim_matches('"'))
            .collect()
    }

    #[test]
    fn the_protos_event_type_rules_name_the_domains_catalogue_in_its_order() {
        let catalogue: Vec<&str> = EventType::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(
            declared_event_types(include_str!(
                "../../proto/supportdesk/v1/webhook_endpoint.proto"
            )),
            catalogue
        );
        // A test event is sent to one endpoint, never streamed.
        let streamed: Vec<&str> = catalogue
            .into_iter()
            .filter(|name| *name != EventType::EndpointTest.as_str())
            .collect();
        assert_eq!(
            declared_event_types(include_str!("../../proto/supportdesk/v1/event.proto")),
            streamed
        );
    }
}
