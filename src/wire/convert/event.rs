//! Events as the API shows them (the `Event` message of EventService and of every webhook we
//! send), and the body of every outbound webhook: the `Event` message in proto3 JSON, rendered
//! with the same options Envoy's transcoder uses for REST (lowerCamelCase names, primitive fields
//! always printed, enums by name), so a webhook's payload reads as the REST API's answers do.

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

use super::timestamp;
use crate::db::models::event::{EventData, StoredEvent};
use crate::domain::event_public_id;
use crate::wire::proto::google::longrunning as lro;
use crate::wire::proto::{self, v1};

/// The payload version every event carries.
pub const EVENT_API_VERSION: &str = "2026-11-28";

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
            EventData::Operation(operation) => {
                v1::event::Data::Operation(lro::Operation::from(operation.as_ref()))
            }
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

    /// The body of `event`'s deliveries.
    pub fn body(&self, event: &StoredEvent) -> Result<Vec<u8>, String> {
        self.json(&v1::Event::from(event))
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
                "../../../proto/supportdesk/v1/webhook_endpoint.proto"
            )),
            catalogue
        );
        // A test event is sent to one endpoint, never streamed.
        let streamed: Vec<&str> = catalogue
            .into_iter()
            .filter(|name| *name != EventType::EndpointTest.as_str())
            .collect();
        assert_eq!(
            declared_event_types(include_str!("../../../proto/supportdesk/v1/event.proto")),
            streamed
        );
    }
}
