//! Peeking at a unary request before its handler: the layers that must know what a request
//! says (admission's prefetch, the path-binding check) read the body whole, decode the one
//! message dynamically with its descriptor from the method table, and hand the same bytes on.
//! Only the layers that need it call this, and only for the RPCs that need it, so the other
//! calls pay nothing.

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full, Limited};
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::body::Body;

use crate::errors::AppError;

/// A unary request body read whole.
pub(super) struct Peeked {
    bytes: Bytes,
}

impl Peeked {
    /// Reads `body`, refusing one over `max_request_bytes` (plus the 5-byte frame header).
    pub(super) async fn read(body: Body, max_request_bytes: usize) -> Result<Self, Response<Body>> {
        match Limited::new(body, max_request_bytes.saturating_add(5))
            .collect()
            .await
        {
            Ok(collected) => Ok(Self {
                bytes: collected.to_bytes(),
            }),
            Err(error) => {
                let status = match error.downcast::<tonic::Status>() {
                    Ok(status) => *status,
                    Err(_) => tonic::Status::from(AppError::MessageTooLarge {
                        limit: max_request_bytes,
                    }),
                };
                Err(status.into_http())
            }
        }
    }

    /// The request message, when the body is one uncompressed gRPC frame holding a message of
    /// `request_type`; `None` otherwise (the handler's decoder then refuses it as it would
    /// anyway).
    pub(super) fn message(&self, request_type: &MessageDescriptor) -> Option<DynamicMessage> {
        let bytes = &self.bytes;
        if bytes.len() < 5 || bytes[0] != 0 {
            return None;
        }
        let length = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        let message = bytes.get(5..5usize.checked_add(length)?)?;
        DynamicMessage::decode(request_type.clone(), message).ok()
    }

    /// The body to hand on: the same bytes.
    pub(super) fn into_body(self) -> Body {
        Body::new(Full::new(self.bytes))
    }
}
