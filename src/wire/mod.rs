//! What the service and its clients agree on byte for byte: the protobuf contract as the service
//! sees it. The generated code and the descriptor set ([`proto`]), the codec that reads requests
//! ([`codec`]), the method table of every RPC's declarations ([`methods`]) with its REST path
//! templates ([`http_rule`]), the OpenAPI document generated from them ([`openapi`]), the retry rule Envoy and direct clients
//! follow ([`retry_rule`]), Envoy's configuration rendered from all of these ([`envoy`]), the names of the headers (gRPC metadata keys) the service reads
//! and writes ([`headers`]), and the conversions between the messages and the domain
//! ([`convert`], one file per resource), with which the webhooks we send render their bodies.

pub mod codec;
pub mod convert;
pub mod envoy;
pub mod headers;
pub mod http_rule;
pub mod methods;
pub mod openapi;
pub mod proto;
pub mod retry_rule;
