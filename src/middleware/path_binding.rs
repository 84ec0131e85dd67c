//! The REST path names the resource: a transcoded request whose body or query sets a field that
//! the path also sets, to another value, is refused (INVALID_ARGUMENT, `PATH_BODY_MISMATCH`,
//! the field named in `BadRequest`).
//!
//! Envoy's transcoder fills the request message from the path first and then from the JSON
//! body and query, so `PATCH /v1/tickets/X` with `{"id": "Y"}` would reach the handler as a
//! change to Y, while every path-based rule, audit line and access log entry saw X. The
//! transcoder cannot be told to let the path win, and silently rewriting the field would hide the
//! client's bug, so the mismatch is an error.
//!
//! Which requests: those that came through the transcoder (Envoy adds `x-envoy-original-path`
//! and `x-envoy-original-method`) for an RPC whose REST path has variables (the method table's
//! [`PathBindings`], read from `google.api.http`). Only those have their body read here (the
//! shared peek of [`super::unary_body`]); direct gRPC calls and RPCs without path variables
//! pass untouched. It runs after admission, so a caller without credentials or role learns
//! nothing from it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

use super::method::declared_method;
use super::unary_body::Peeked;
use crate::domain::InvalidValue;
use crate::errors::{FieldViolations, Reason};
use crate::wire::headers::{ORIGINAL_METHOD_HEADER, ORIGINAL_PATH_HEADER};
use crate::wire::methods::{PathBindings, field_text};

// The transcoder's two headers, for lookups that do not parse the name on every request.
const ORIGINAL_PATH: http::HeaderName = http::HeaderName::from_static(ORIGINAL_PATH_HEADER);
const ORIGINAL_METHOD: http::HeaderName = http::HeaderName::from_static(ORIGINAL_METHOD_HEADER);

#[derive(Clone, Copy)]
pub struct PathBindingLayer {
    max_request_bytes: usize,
}

impl PathBindingLayer {
    pub fn new(max_request_bytes: usize) -> Self {
        Self { max_request_bytes }
    }
}

impl<S> Layer<S> for PathBindingLayer {
    type Service = CheckPathBinding<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CheckPathBinding {
            inner,
            max_request_bytes: self.max_request_bytes,
        }
    }
}

#[derive(Clone)]
pub struct CheckPathBinding<S> {
    inner: S,
    max_request_bytes: usize,
}

/// The fields of `message` that disagree with the variables of `original_path` (query
/// included; it is cut off here), for the binding of `bindings` the request was matched by.
fn disagreeing_fields(
    bindings: &PathBindings,
    http_method: Option<&str>,
    original_path: &str,
    message: &prost_reflect::DynamicMessage,
) -> FieldViolations {
    let path = original_path.split(['?', '#']).next().unwrap_or_default();
    let mut violations = FieldViolations::new();
    let Some(binding) = bindings.binding_for(http_method, path) else {
        // The transcoder matched a path this service cannot read: fail closed rather than let
        // the body decide unchecked.
        for binding in &bindings.bindings {
            for variable in binding.template.variables() {
                if !violations.iter().any(|refused| &refused.field == variable) {
                    violations.add(
                        variable.clone(),
                        &InvalidValue::new(format!(
                            "cannot be checked: the path does not match {}",
                            binding.template.as_str()
                        )),
                    );
                }
            }
        }
        return violations.with_reason(Reason::PathBodyMismatch);
    };
    for captured in binding.template.captures(path).unwrap_or_default() {
        let agrees =
            field_text(message, &captured.field).is_some_and(|value| captured.agrees_with(&value));
        if !agrees {
            violations.add(
                captured.field.clone(),
                &InvalidValue::new(format!(
                    "differs from the path ({}): the path names the resource, and the body or \
                     query may not name another; leave the field out or send the same value",
                    binding.template.as_str()
                )),
            );
        }
    }
    violations.with_reason(Reason::PathBodyMismatch)
}

impl<S> Service<Request<Body>> for CheckPathBinding<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let bindings = declared_method(&request).and_then(|method| method.path_bindings.as_ref());
        let original_path = request
            .headers()
            .get(ORIGINAL_PATH)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let (Some(bindings), Some(original_path)) = (bindings, original_path) else {
            return Box::pin(self.inner.call(request));
        };
        // The service that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let max_request_bytes = self.max_request_bytes;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let peeked = match Peeked::read(body, max_request_bytes).await {
                Ok(peeked) => peeked,
                Err(refused) => return Ok(refused),
            };
            if let Some(message) = peeked.message(&bindings.request) {
                let http_method = parts
                    .headers
                    .get(ORIGINAL_METHOD)
                    .and_then(|value| value.to_str().ok());
                let violations =
                    disagreeing_fields(bindings, http_method, &original_path, &message);
                if let Err(error) = violations.into_result() {
                    return Ok(tonic::Status::from(error).into_http());
                }
            }
            inner
                .call(Request::from_parts(parts, peeked.into_body()))
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use prost_reflect::DynamicMessage;

    use super::*;
    use crate::wire::methods::MethodTable;

    fn bindings_of(rpc: &str) -> &'static PathBindings {
        MethodTable::get()
            .expect("the method table")
            .lookup(rpc)
            .and_then(|method| method.path_bindings.as_ref())
            .expect("path bindings")
    }

    fn update_ticket(id: &str) -> DynamicMessage {
        let bindings = bindings_of("/supportdesk.v1.TicketService/UpdateTicket");
        let mut request = DynamicMessage::new(bindings.request.clone());
        let ticket_field = bindings
            .request
            .get_field_by_name("ticket")
            .expect("a ticket field");
        let mut ticket = DynamicMessage::new(ticket_field.kind().as_message().unwrap().clone());
        ticket.set_field_by_name("id", prost_reflect::Value::String(id.to_owned()));
        request.set_field_by_name("ticket", prost_reflect::Value::Message(ticket));
        request
    }

    fn refused_fields(violations: &FieldViolations) -> Vec<String> {
        violations.iter().map(|v| v.field.clone()).collect()
    }

    #[test]
    fn a_body_naming_another_ticket_than_the_path_is_refused_naming_the_field() {
        let bindings = bindings_of("/supportdesk.v1.TicketService/UpdateTicket");
        let violations = disagreeing_fields(
            bindings,
            Some("PATCH"),
            "/v1/tickets/X?updateMask=subject",
            &update_ticket("Y"),
        );
        assert_eq!(refused_fields(&violations), ["ticket.id"]);
        assert_eq!(violations.reason(), Reason::PathBodyMismatch);
    }

    #[test]
    fn a_body_repeating_the_paths_value_is_accepted() {
        let bindings = bindings_of("/supportdesk.v1.TicketService/UpdateTicket");
        let violations = disagreeing_fields(
            bindings,
            Some("PATCH"),
            "/v1/tickets/X?updateMask=subject",
            &update_ticket("X"),
        );
        assert!(violations.is_empty());
    }

    #[test]
    fn a_path_no_template_matches_is_refused_rather_than_left_unchecked() {
        let bindings = bindings_of("/supportdesk.v1.TicketService/UpdateTicket");
        let violations = disagreeing_fields(
            bindings,
            Some("PATCH"),
            "/v1/tickets/X/extra",
            &update_ticket("X"),
        );
        assert_eq!(refused_fields(&violations), ["ticket.id"]);
        assert_eq!(violations.reason(), Reason::PathBodyMismatch);
    }

    #[test]
    fn a_trailing_slash_does_not_hide_a_mismatch() {
        let bindings = bindings_of("/supportdesk.v1.TicketService/UpdateTicket");
        let violations = disagreeing_fields(
            bindings,
            Some("PATCH"),
            "/v1/tickets/X/",
            &update_ticket("Y"),
        );
        assert_eq!(refused_fields(&violations), ["ticket.id"]);
    }

    #[test]
    fn rpcs_without_path_variables_have_no_bindings_to_check() {
        let table = MethodTable::get().expect("the method table");
        for rpc in [
            "/supportdesk.v1.TicketService/CreateTicket",
            "/supportdesk.v1.TicketService/ListTickets",
            "/supportdesk.v1.AuthService/Login",
            "/grpc.health.v1.Health/Check",
        ] {
            assert!(
                table.lookup(rpc).expect(rpc).path_bindings.is_none(),
                "{rpc}"
            );
        }
    }
}
