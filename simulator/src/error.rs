//! Stripe's error object and the HTTP statuses that carry it.
//!
//! Every failure the simulator answers on `/v1` is a [`StripeError`] inside `{"error": ...}`, typed
//! the way Stripe types them: `card_error` (402) for declines, `invalid_request_error` (400/401/404)
//! for the caller's mistakes, `idempotency_error` (400/409) for key misuse, `api_error` (5xx) for
//! the provider's own trouble. [`ApiFailure`] pairs the object with its status so handlers can use
//! `?` and the idempotency store can save the exact status and body.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `error` member of a Stripe error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StripeError {
    /// `card_error`, `invalid_request_error`, `idempotency_error` or `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short machine-readable code such as `card_declined` or `resource_missing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// On card declines, the issuer's reason (`generic_decline`, `insufficient_funds`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    /// A human-readable message.
    pub message: String,
    /// The request parameter the error is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// On card errors raised while confirming a payment intent, the payment intent itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<Value>,
    /// On card errors, the id of the failed charge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge: Option<String>,
    /// Stripe links every code to its documentation page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_url: Option<String>,
}

impl StripeError {
    fn new(kind: &str, code: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            code: code.map(str::to_owned),
            decline_code: None,
            message: message.into(),
            param: None,
            payment_intent: None,
            charge: None,
            doc_url: code.map(|code| {
                format!(
                    "https://stripe.com/docs/error-codes/{}",
                    code.replace('_', "-")
                )
            }),
        }
    }
}

/// A failed API call: the HTTP status and the error object answered with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiFailure {
    /// 400, 401, 402, 404, 409, 429, 500 or 503.
    pub status: StatusCode,
    /// The body's `error` member (boxed: it is large and travels in `Result`s).
    pub error: Box<StripeError>,
}

impl ApiFailure {
    pub(crate) fn invalid_request(
        status: StatusCode,
        code: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error: Box::new(StripeError::new("invalid_request_error", code, message)),
        }
    }

    /// 400 `invalid_request_error` about one parameter.
    pub(crate) fn invalid_param(
        param: &str,
        code: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        let mut failure = Self::invalid_request(StatusCode::BAD_REQUEST, code, message);
        failure.error.param = Some(param.to_owned());
        failure
    }

    pub(crate) fn missing_param(param: &str) -> Self {
        Self::invalid_param(
            param,
            Some("parameter_missing"),
            format!("Missing required param: {param}."),
        )
    }

    /// 404 for an unknown object in the URL path.
    pub(crate) fn no_such_object(object: &str, id: &str, param: &str) -> Self {
        let mut failure = Self::invalid_request(
            StatusCode::NOT_FOUND,
            Some("resource_missing"),
            format!("No such {object}: '{id}'"),
        );
        failure.error.param = Some(param.to_owned());
        failure
    }

    /// 400 for an unknown object named by a request parameter (Stripe answers 400, not 404, when
    /// the id is in the body rather than the path).
    pub(crate) fn no_such_param_object(object: &str, id: &str, param: &str) -> Self {
        Self::invalid_param(
            param,
            Some("resource_missing"),
            format!("No such {object}: '{id}'"),
        )
    }

    pub(crate) fn idempotency(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            error: Box::new(StripeError::new("idempotency_error", None, message)),
        }
    }

    pub(crate) fn card_declined(
        code: &str,
        decline_code: Option<&str>,
        message: &str,
        param: Option<&str>,
    ) -> Self {
        let mut error = StripeError::new("card_error", Some(code), message);
        error.decline_code = decline_code.map(str::to_owned);
        error.param = param.map(str::to_owned);
        Self {
            status: StatusCode::PAYMENT_REQUIRED,
            error: Box::new(error),
        }
    }

    pub(crate) fn api_error(status: StatusCode) -> Self {
        Self {
            status,
            error: Box::new(StripeError::new(
                "api_error",
                None,
                "An unknown error occurred while processing your request (simulated fault).",
            )),
        }
    }

    /// Any 4xx error object, as a fault answers it.
    pub(crate) fn refusal(
        status: u16,
        kind: &str,
        code: Option<String>,
        decline_code: Option<String>,
        param: Option<String>,
    ) -> Self {
        let mut error = StripeError::new(
            kind,
            code.as_deref(),
            format!(
                "Refused by a test fault ({})",
                code.as_deref().unwrap_or(kind)
            ),
        );
        error.decline_code = decline_code;
        error.param = param;
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            error: Box::new(error),
        }
    }

    pub(crate) fn rate_limited() -> Self {
        Self::invalid_request(
            StatusCode::TOO_MANY_REQUESTS,
            Some("rate_limit"),
            "Too many requests hit the API too quickly (simulated fault). \
             Retry with exponential backoff.",
        )
    }

    /// The response body: `{"error": {...}}`.
    pub(crate) fn body(&self) -> Value {
        serde_json::json!({ "error": self.error })
    }
}
