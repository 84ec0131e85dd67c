//! The protobuf codec of every generated server and client (build.rs names it with
//! `codec_path`): prost's, except for what a message that does not decode is answered with.
//!
//! tonic's own codec answers INTERNAL, with prost's text naming proto types, and logs nothing: a
//! client sending bad bytes looks like a bug of ours. Here it is the client's mistake,
//! INVALID_ARGUMENT with the reason `MALFORMED_MESSAGE` and, where prost says which field it was
//! reading, a `BadRequest` naming it; the refusal is logged at INFO inside the request's span, so
//! it carries the request id.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstDecoder, ProstEncoder};

use crate::errors::{AppError, Reason};

/// [`tonic_prost::ProstCodec`] with decoding failures answered as the client's mistake.
#[derive(Debug, Clone)]
pub struct ApiCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for ApiCodec<T, U> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for ApiCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ApiDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ApiDecoder {
            inner: ProstDecoder::default(),
        }
    }
}

/// Decodes `U` as prost does; see the module for what a failure becomes.
#[derive(Debug, Clone)]
pub struct ApiDecoder<U> {
    inner: ProstDecoder<U>,
}

impl<U: Message + Default> Decoder for ApiDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        U::decode(buf).map(Some).map_err(|error| {
            let error = MalformedMessage::from(&error);
            tracing::info!(
                reason = Reason::MalformedMessage.as_str(),
                field = error.field.as_deref().unwrap_or(""),
                problem = %error.problem,
                "refused a message that does not decode"
            );
            Status::from(AppError::from(error))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}

/// What was wrong with a message that does not decode: the field being read (`ticket.subject`),
/// when prost said, and the problem in prost's words, without proto type names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedMessage {
    pub field: Option<String>,
    pub problem: String,
}

impl From<MalformedMessage> for AppError {
    fn from(malformed: MalformedMessage) -> Self {
        Self::MalformedMessage {
            field: malformed.field,
            problem: malformed.problem,
        }
    }
}

impl From<&prost::DecodeError> for MalformedMessage {
    /// prost describes a failure as `failed to decode Protobuf message: Inner.field: Outer.field:
    /// problem`; its stack of (type, field) is not public, so it is read from
    /// that text. Anything unexpected degrades to no field and a generic problem.
    fn from(error: &prost::DecodeError) -> Self {
        let text = error.to_string();
        let text = text
            .strip_prefix("failed to decode Protobuf message: ")
            .unwrap_or(&text);
        let mut fields = Vec::new();
        let mut rest = text;
        while let Some((segment, tail)) = rest.split_once(": ") {
            let Some((type_name, field)) = segment.rsplit_once('.') else {
                break;
            };
            let is_identifier = |part: &str| {
                !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            };
            if !is_identifier(type_name) || !is_identifier(field) {
                break;
            }
            fields.push(field);
            rest = tail;
        }
        let problem = if rest.is_empty() || rest.len() > 200 {
            "the bytes are not a protobuf message of this RPC's request type".to_owned()
        } else {
            rest.to_owned()
        };
        // prost records the fields as the error unwinds: innermost first.
        fields.reverse();
        Self {
            field: (!fields.is_empty()).then(|| fields.join(".")),
            problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto::v1;

    fn decode_error<M: Message + Default + std::fmt::Debug>(bytes: &[u8]) -> MalformedMessage {
        MalformedMessage::from(&M::decode(bytes).expect_err("must not decode"))
    }

    #[test]
    fn invalid_utf8_in_a_nested_string_names_the_field_path() {
        // CreateTicketRequest { ticket (1): Ticket { subject (3): 0xff } }
        let ticket = [0x1a, 0x01, 0xff];
        let mut request = vec![0x0a, ticket.len() as u8];
        request.extend_from_slice(&ticket);
        let malformed = decode_error::<v1::CreateTicketRequest>(&request);
        assert_eq!(malformed.field.as_deref(), Some("ticket.subject"));
        assert!(
            !malformed.problem.contains("Ticket"),
            "no proto type names: {}",
            malformed.problem
        );
    }

    #[test]
    fn a_truncated_message_is_malformed_without_a_field_when_prost_names_none() {
        // A length prefix of 10 with 1 byte behind it.
        let malformed = decode_error::<v1::LoginRequest>(&[0x0a, 0x0a, b'x']);
        assert!(!malformed.problem.is_empty());
        assert!(!malformed.problem.contains("LoginRequest"));
    }

    #[test]
    fn a_malformed_message_is_invalid_argument_with_its_own_reason() {
        let status = Status::from(AppError::from(MalformedMessage {
            field: Some("ticket.subject".to_owned()),
            problem: "invalid string value: data is not UTF-8 encoded".to_owned(),
        }));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let details = tonic_types::StatusExt::get_error_details(&status);
        assert_eq!(
            details.error_info().unwrap().reason,
            Reason::MalformedMessage.as_str()
        );
        assert_eq!(
            details.bad_request().unwrap().field_violations[0].field,
            "ticket.subject"
        );
    }
}
