//! Peeking at a unary request before its handler: the layers that must know what a request
//! says (admission's prefetch, the path-binding check) read the body whole, look at the message
//! (admission: one string field, found by scanning the wire format; path binding: decoded
//! dynamically with its descriptor from the method table), and hand the same bytes on. Only the
//! layers that need it call this, and only for the RPCs that need it, so the other calls pay
//! nothing.

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

    /// The message of the body when it is one uncompressed gRPC frame; `None` otherwise (the
    /// handler's decoder then refuses it as it would anyway).
    fn frame(&self) -> Option<&[u8]> {
        let bytes = &self.bytes;
        if bytes.len() < 5 || bytes[0] != 0 {
            return None;
        }
        let length = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        bytes.get(5..5usize.checked_add(length)?)
    }

    /// The request message, when the body is one uncompressed gRPC frame holding a message of
    /// `request_type`; `None` otherwise.
    pub(super) fn message(&self, request_type: &MessageDescriptor) -> Option<DynamicMessage> {
        DynamicMessage::decode(request_type.clone(), self.frame()?).ok()
    }

    /// The string field numbered `number` of the request message (its last occurrence, as a
    /// decoder reads a singular field), found without decoding the message; `None` when the
    /// body is not one well-formed uncompressed frame, or the field is absent or not UTF-8.
    pub(super) fn string_field(&self, number: u32) -> Option<&str> {
        let mut rest = self.frame()?;
        let mut found = None;
        while !rest.is_empty() {
            let key = read_varint(&mut rest)?;
            let field = u32::try_from(key >> 3).ok()?;
            let length = match key & 7 {
                0 => {
                    read_varint(&mut rest)?;
                    0
                }
                1 => 8,
                2 => usize::try_from(read_varint(&mut rest)?).ok()?,
                5 => 4,
                // Groups (deprecated, never in our requests) or an invalid wire type.
                _ => return None,
            };
            let value = rest.get(..length)?;
            if field == number && key & 7 == 2 {
                found = Some(value);
            }
            rest = &rest[length..];
        }
        std::str::from_utf8(found?).ok()
    }

    /// The body to hand on: the same bytes.
    pub(super) fn into_body(self) -> Body {
        Body::new(Full::new(self.bytes))
    }
}

/// A protobuf varint from the front of `bytes`, which it advances past it.
fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0_u64;
    for (index, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            *bytes = &bytes[index + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::wire::proto::v1;

    fn framed(message: &impl Message) -> Peeked {
        let encoded = message.encode_to_vec();
        let mut bytes = vec![0];
        bytes.extend_from_slice(&u32::try_from(encoded.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(&encoded);
        Peeked {
            bytes: Bytes::from(bytes),
        }
    }

    #[test]
    fn a_string_field_is_found_among_fields_of_every_wire_type() {
        let request = v1::ListCommentsRequest {
            ticket_id: "01890a5d-ac96-774b-bcce-b302099a8057".to_owned(),
            page_size: 300,
            page_token: "token".to_owned(),
        };
        let peeked = framed(&request);
        assert_eq!(
            peeked.string_field(1),
            Some("01890a5d-ac96-774b-bcce-b302099a8057")
        );
        assert_eq!(peeked.string_field(3), Some("token"));
        assert_eq!(peeked.string_field(2), None, "a varint is no string");
        assert_eq!(peeked.string_field(9), None);
    }

    #[test]
    fn the_last_occurrence_wins_as_in_a_decoder() {
        let first = v1::GetTicketRequest {
            id: "first".to_owned(),
            ..Default::default()
        }
        .encode_to_vec();
        let last = v1::GetTicketRequest {
            id: "last".to_owned(),
            ..Default::default()
        }
        .encode_to_vec();
        let both = [first, last].concat();
        let mut bytes = vec![0];
        bytes.extend_from_slice(&u32::try_from(both.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(&both);
        let peeked = Peeked {
            bytes: Bytes::from(bytes),
        };
        assert_eq!(peeked.string_field(1), Some("last"));
        assert_eq!(
            v1::GetTicketRequest::decode(&both[..]).unwrap().id,
            "last",
            "what the handler decodes"
        );
    }

    #[test]
    fn malformed_compressed_or_truncated_bodies_name_nothing() {
        let good = framed(&v1::GetTicketRequest {
            id: "abc".to_owned(),
            ..Default::default()
        })
        .bytes
        .to_vec();
        let mut compressed = good.clone();
        compressed[0] = 1;
        let mut longer_than_sent = good.clone();
        longer_than_sent[4] += 1;
        let mut overlong_field = good.clone();
        overlong_field[6] = 0x7f;
        let invalid_utf8 = [&good[..7], &[0xff, 0xfe, 0xfd][..]].concat();
        for bytes in [
            compressed,
            longer_than_sent,
            overlong_field,
            invalid_utf8,
            vec![0, 0, 0],
            vec![0, 0, 0, 0, 2, 0x0b, 0x00],
        ] {
            let peeked = Peeked {
                bytes: Bytes::from(bytes.clone()),
            };
            assert_eq!(peeked.string_field(1), None, "{bytes:?}");
        }
    }
}
