//! REST clients read the fields of an error in their own terms: over REST, every `BadRequest`
//! field path (and the message that repeats it) is the path in the JSON the client sent, not in
//! the request message the transcoder built: `requesterEmail` for the body of
//! `POST /v1/tickets` (`body: "ticket"`), `amount.amountMinor`, `pageSize` for a query parameter
//! (docs/http-contract.md, "Field paths"). gRPC callers keep the proto paths
//! (`ticket.requester_email`), which are theirs. The description of a field mask's violation
//! names the fields the mask may hold, and echoes the refused path, in the same terms:
//! `?readMask=requesterEmail,fooBar` reaches the service as `requester_email,foo_bar` (the
//! transcoder's conversion), and its error says `"fooBar" is not a field that can be read; known:
//! ..., requesterEmail, ...` over REST, `"foo_bar"` and `requester_email` over gRPC.
//!
//! Why here and not in each handler: handlers name fields once, by the request message, for both
//! protocols; only the edge knows which protocol asked. A request is REST when the transcoder
//! marked it (`x-envoy-original-path`), and the binding it was matched by says what the body
//! fills (`wire::http_rule::rest_field_path`). Only error answers carrying details are touched,
//! in the headers of a trailers-only answer (every error before a stream's first message).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use prost::Message;
use tonic::body::Body;
use tower::{Layer, Service};

use super::method::declared_method;
use crate::wire::headers::{ORIGINAL_METHOD_HEADER, ORIGINAL_PATH_HEADER};
use crate::wire::http_rule::rest_field_path;
use crate::wire::proto::google::rpc;

const ORIGINAL_PATH: http::HeaderName = http::HeaderName::from_static(ORIGINAL_PATH_HEADER);
const ORIGINAL_METHOD: http::HeaderName = http::HeaderName::from_static(ORIGINAL_METHOD_HEADER);
const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";

#[derive(Clone, Copy, Default)]
pub struct RestFieldsLayer;

impl<S> Layer<S> for RestFieldsLayer {
    type Service = RestFields<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RestFields { inner }
    }
}

#[derive(Clone)]
pub struct RestFields<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for RestFields<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let headers = request.headers();
        let body = declared_method(&request).and_then(|method| {
            let original_path = headers.get(ORIGINAL_PATH)?.to_str().ok()?;
            let http_method = headers
                .get(ORIGINAL_METHOD)
                .and_then(|value| value.to_str().ok());
            method
                .rest_body(http_method, original_path)
                .map(str::to_owned)
        });
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            if let Some(body) = body {
                rename_fields(response.headers_mut(), &body);
            }
            Ok(response)
        })
    }
}

/// Rewrites the status in `headers` (if it is an error with a `BadRequest`) to name each field
/// by its REST path for a request whose rule has `body`.
fn rename_fields(headers: &mut HeaderMap, body: &str) {
    let Some(status) = tonic::Status::from_header_map(headers) else {
        return;
    };
    if status.code() == tonic::Code::Ok || status.details().is_empty() {
        return;
    }
    let Ok(mut decoded) = rpc::Status::decode(status.details()) else {
        return;
    };
    let mut message = status.message().to_owned();
    let mut renamed = false;
    for detail in &mut decoded.details {
        if detail.type_url != BAD_REQUEST_TYPE {
            continue;
        }
        let Ok(mut bad_request) = rpc::BadRequest::decode(detail.value.as_slice()) else {
            continue;
        };
        for violation in &mut bad_request.field_violations {
            let rest = rest_field_path(&violation.field, body);
            let description = if is_field_mask(&violation.field) {
                camel_case_names(&violation.description)
            } else {
                violation.description.clone()
            };
            if rest != violation.field || description != violation.description {
                // The message lists each violation as "<field> <description>".
                message = message.replace(
                    &format!("{} {}", violation.field, violation.description),
                    &format!("{rest} {description}"),
                );
                violation.field = rest;
                violation.description = description;
                renamed = true;
            }
        }
        detail.value = bad_request.encode_to_vec();
    }
    if !renamed {
        return;
    }
    decoded.message.clone_from(&message);
    let rewritten =
        tonic::Status::with_details(status.code(), message, decoded.encode_to_vec().into());
    // Fails only for a message that cannot be a header value, which the original was.
    let _ = rewritten.add_header(headers);
}

/// Whether `field` (a proto path) is a field mask or one of its paths (`read_mask`,
/// `update_mask.paths[1]`): the API names its masks `*_mask`, as AIP-157 and AIP-134 do.
fn is_field_mask(field: &str) -> bool {
    field
        .split('.')
        .next()
        .is_some_and(|first| first.ends_with("_mask"))
}

/// `text` with each proto field name in it (a lower-case word with `_`: `requester_email`) in
/// lowerCamelCase (`requesterEmail`), as the JSON mapping writes field mask paths; other words
/// (`*`, `TICKET_PRIORITY_URGENT`, `subject`) are left as they are.
fn camel_case_names(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let is_field_name = word.contains('_')
            && word.starts_with(|first: char| first.is_ascii_lowercase())
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if is_field_name {
            out.push_str(&rest_field_path(word, ""));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for character in text.chars() {
        if character.is_ascii_alphanumeric() || character == '_' {
            word.push(character);
        } else {
            flush(&mut word, &mut out);
            out.push(character);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

    use super::*;

    fn status_headers(fields: &[(&str, &str)]) -> HeaderMap {
        let violations: Vec<FieldViolation> = fields
            .iter()
            .map(|(field, description)| FieldViolation::new(*field, *description))
            .collect();
        let message = fields
            .iter()
            .map(|(field, description)| format!("{field} {description}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut details = ErrorDetails::new();
        details.set_bad_request(violations);
        details.set_error_info(
            "INVALID_ARGUMENT",
            "supportdesk",
            std::collections::HashMap::new(),
        );
        let status = tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            format!("invalid request: {message}"),
            details,
        );
        let mut headers = HeaderMap::new();
        status.add_header(&mut headers).expect("headers");
        headers
    }

    #[test]
    fn a_rest_field_mask_error_lists_the_mask_paths_in_lower_camel_case() {
        let mut headers = status_headers(&[
            (
                "read_mask",
                "\"foo_bar\" is not a field that can be read; known: id, requester_email, create_time",
            ),
            ("page_size", "must be between 0 and 100"),
        ]);
        rename_fields(&mut headers, "");
        let status = tonic::Status::from_header_map(&headers).expect("a status");
        assert_eq!(
            status.message(),
            "invalid request: readMask \"fooBar\" is not a field that can be read; known: id, \
             requesterEmail, createTime; pageSize must be between 0 and 100"
        );
        let details = status.get_error_details();
        let violations = &details.bad_request().expect("BadRequest").field_violations;
        assert_eq!(violations[0].field, "readMask");
        assert_eq!(
            violations[0].description,
            "\"fooBar\" is not a field that can be read; known: id, requesterEmail, createTime"
        );
    }

    #[test]
    fn only_field_names_in_a_mask_error_change_case() {
        assert_eq!(
            camel_case_names("\"*\" or TICKET_PRIORITY_URGENT, display_name2 and subject"),
            "\"*\" or TICKET_PRIORITY_URGENT, displayName2 and subject"
        );
        assert!(is_field_mask("update_mask.paths[1]"));
        assert!(!is_field_mask("ticket.requester_email"));
    }

    #[test]
    fn a_rest_error_names_body_fields_as_the_body_has_them_and_keeps_its_other_details() {
        let mut headers = status_headers(&[
            ("ticket.subject", "must not be empty"),
            ("ticket.requester_email", "an email address is required"),
        ]);
        rename_fields(&mut headers, "ticket");
        let status = tonic::Status::from_header_map(&headers).expect("a status");
        assert_eq!(
            status.message(),
            "invalid request: subject must not be empty; requesterEmail an email address is required"
        );
        let details = status.get_error_details();
        let fields: Vec<&str> = details
            .bad_request()
            .expect("BadRequest")
            .field_violations
            .iter()
            .map(|violation| violation.field.as_str())
            .collect();
        assert_eq!(fields, ["subject", "requesterEmail"]);
        assert_eq!(
            details.error_info().expect("ErrorInfo").reason,
            "INVALID_ARGUMENT"
        );
    }
}
