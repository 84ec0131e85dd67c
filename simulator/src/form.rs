//! Form-encoded request parameters, parsed into the typed requests the ledger executes.
//!
//! Stripe reads `application/x-www-form-urlencoded` bodies with bracketed names for nested
//! values (`metadata[charge_id]=c1`, `expand[]=latest_charge`). Validation happens here, before
//! the idempotency key is claimed: as on Stripe, a request refused for its parameters saves no
//! result, so fixing nothing and retrying gives the same refusal, not a replay.

use crate::cards::{self, CardBehaviour};
use crate::error::ApiFailure;
use crate::idempotency::RequestFingerprint;
use crate::objects::Metadata;

/// Stripe's limits on metadata.
const MAX_METADATA_KEYS: usize = 50;
const MAX_METADATA_KEY_LENGTH: usize = 40;
const MAX_METADATA_VALUE_LENGTH: usize = 500;
/// Stripe's largest amount (eight digits in the smallest unit).
const MAX_AMOUNT: i64 = 99_999_999;

/// The decoded `name=value` pairs of a form body or query string, in wire order.
#[derive(Debug, Clone, Default)]
pub(crate) struct FormParams {
    pairs: Vec<(String, String)>,
}

impl FormParams {
    pub(crate) fn parse(raw: &[u8]) -> Self {
        Self {
            pairs: form_urlencoded::parse(raw)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
        }
    }

    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    pub(crate) fn fingerprint(&self, path: &str) -> RequestFingerprint {
        let mut params = self.pairs.clone();
        params.sort();
        RequestFingerprint {
            path: path.to_owned(),
            params,
        }
    }

    /// The last value of a plain parameter.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Refuses any parameter whose top-level name is not allowed (`metadata[x]` is `metadata`).
    fn reject_unknown(&self, allowed: &[&str]) -> Result<(), ApiFailure> {
        for (name, _) in &self.pairs {
            let top_level = name.split('[').next().unwrap_or(name);
            if !allowed.contains(&top_level) {
                return Err(ApiFailure::invalid_param(
                    name,
                    Some("parameter_unknown"),
                    format!("Received unknown parameter: {name}"),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn metadata(&self) -> Result<Metadata, ApiFailure> {
        let mut metadata = Metadata::new();
        for (name, value) in &self.pairs {
            let Some(key) = name
                .strip_prefix("metadata[")
                .and_then(|rest| rest.strip_suffix(']'))
            else {
                continue;
            };
            if key.is_empty() || key.chars().count() > MAX_METADATA_KEY_LENGTH {
                return Err(ApiFailure::invalid_param(
                    name,
                    None,
                    format!(
                        "Metadata keys must be between 1 and {MAX_METADATA_KEY_LENGTH} characters."
                    ),
                ));
            }
            if value.chars().count() > MAX_METADATA_VALUE_LENGTH {
                return Err(ApiFailure::invalid_param(
                    name,
                    None,
                    format!(
                        "Metadata values can have up to {MAX_METADATA_VALUE_LENGTH} characters."
                    ),
                ));
            }
            metadata.insert(key.to_owned(), value.clone());
        }
        if metadata.len() > MAX_METADATA_KEYS {
            return Err(ApiFailure::invalid_param(
                "metadata",
                None,
                format!("Metadata can have up to {MAX_METADATA_KEYS} keys."),
            ));
        }
        Ok(metadata)
    }

    /// `expand[]=a&expand[0]=b` → `[a, b]`.
    pub(crate) fn expand(&self) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(name, _)| name == "expand" || name.starts_with("expand["))
            .map(|(_, value)| value.clone())
            .collect()
    }

    fn amount(&self, name: &str) -> Result<Option<i64>, ApiFailure> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        let amount: i64 = raw.parse().map_err(|_| {
            ApiFailure::invalid_param(
                name,
                Some("parameter_invalid_integer"),
                format!("Invalid integer: {raw}"),
            )
        })?;
        if amount < 1 {
            return Err(ApiFailure::invalid_param(
                name,
                Some("parameter_invalid_integer"),
                "This value must be greater than or equal to 1.",
            ));
        }
        if amount > MAX_AMOUNT {
            return Err(ApiFailure::invalid_param(
                name,
                Some("amount_too_large"),
                format!("Amount must be no more than {MAX_AMOUNT}."),
            ));
        }
        Ok(Some(amount))
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, ApiFailure> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ApiFailure::invalid_param(
                name,
                Some("parameter_invalid_boolean"),
                format!("Invalid boolean: {other}"),
            )),
        }
    }

    fn non_empty(&self, name: &str) -> Result<Option<String>, ApiFailure> {
        match self.get(name) {
            None => Ok(None),
            Some("") => Err(ApiFailure::invalid_param(
                name,
                Some("parameter_invalid_empty"),
                format!(
                    "You passed an empty string for '{name}'. We assume empty values are an \
                     attempt to unset a parameter; however '{name}' cannot be unset."
                ),
            )),
            Some(value) => Ok(Some(value.to_owned())),
        }
    }
}

/// A validated `POST /v1/payment_intents`.
#[derive(Debug, Clone)]
pub(crate) struct NewPaymentIntent {
    pub(crate) amount: i64,
    pub(crate) currency: String,
    pub(crate) customer: Option<String>,
    pub(crate) payment_method: Option<(String, CardBehaviour)>,
    pub(crate) confirm: bool,
    pub(crate) description: Option<String>,
    pub(crate) metadata: Metadata,
}

impl NewPaymentIntent {
    pub(crate) fn parse(params: &FormParams) -> Result<Self, ApiFailure> {
        params.reject_unknown(&[
            "amount",
            "currency",
            "customer",
            "payment_method",
            "payment_method_types",
            "confirm",
            "off_session",
            "description",
            "metadata",
            "expand",
        ])?;
        let amount = params
            .amount("amount")?
            .ok_or_else(|| ApiFailure::missing_param("amount"))?;
        let currency = params
            .non_empty("currency")?
            .ok_or_else(|| ApiFailure::missing_param("currency"))?;
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(ApiFailure::invalid_param(
                "currency",
                Some("parameter_invalid_string"),
                format!(
                    "Invalid currency: {}. Stripe currencies are three-letter ISO codes.",
                    currency.to_ascii_lowercase()
                ),
            ));
        }
        let payment_method = match params.non_empty("payment_method")? {
            None => None,
            Some(id) => {
                let behaviour = cards::behaviour_of(&id).ok_or_else(|| {
                    ApiFailure::no_such_param_object("PaymentMethod", &id, "payment_method")
                })?;
                Some((id, behaviour))
            }
        };
        let confirm = params.boolean("confirm")?.unwrap_or(false);
        params.boolean("off_session")?;
        if confirm && payment_method.is_none() {
            return Err(ApiFailure::invalid_param(
                "payment_method",
                Some("payment_intent_unexpected_state"),
                "You cannot confirm this PaymentIntent because it's missing a payment method. \
                 Pass `payment_method` with `confirm=true`.",
            ));
        }
        Ok(Self {
            amount,
            currency: currency.to_ascii_lowercase(),
            customer: params.non_empty("customer")?,
            payment_method,
            confirm,
            description: params.non_empty("description")?,
            metadata: params.metadata()?,
        })
    }
}

/// What a refund names: Stripe accepts either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RefundTarget {
    PaymentIntent(String),
    Charge(String),
}

/// A validated `POST /v1/refunds`.
#[derive(Debug, Clone)]
pub(crate) struct NewRefund {
    pub(crate) target: RefundTarget,
    pub(crate) amount: Option<i64>,
    pub(crate) reason: Option<String>,
    pub(crate) metadata: Metadata,
}

pub(crate) const REFUND_REASONS: &[&str] = &["duplicate", "fraudulent", "requested_by_customer"];

impl NewRefund {
    pub(crate) fn parse(params: &FormParams) -> Result<Self, ApiFailure> {
        params.reject_unknown(&[
            "payment_intent",
            "charge",
            "amount",
            "reason",
            "metadata",
            "expand",
        ])?;
        let target = match (
            params.non_empty("payment_intent")?,
            params.non_empty("charge")?,
        ) {
            (Some(payment_intent), None) => RefundTarget::PaymentIntent(payment_intent),
            (None, Some(charge)) => RefundTarget::Charge(charge),
            (Some(_), Some(_)) => {
                return Err(ApiFailure::invalid_param(
                    "charge",
                    None,
                    "You can only pass one of `charge` or `payment_intent`.",
                ));
            }
            (None, None) => {
                return Err(ApiFailure::invalid_param(
                    "payment_intent",
                    Some("parameter_missing"),
                    "One of the following params should be provided for this request: \
                     payment_intent or charge.",
                ));
            }
        };
        let reason = params.non_empty("reason")?;
        if let Some(reason) = &reason {
            check_refund_reason(reason)?;
        }
        Ok(Self {
            target,
            amount: params.amount("amount")?,
            reason,
            metadata: params.metadata()?,
        })
    }
}

pub(crate) fn check_refund_reason(reason: &str) -> Result<(), ApiFailure> {
    if REFUND_REASONS.contains(&reason) {
        Ok(())
    } else {
        Err(ApiFailure::invalid_param(
            "reason",
            Some("parameter_invalid_string"),
            format!(
                "Invalid reason: must be one of {}",
                REFUND_REASONS.join(", ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(raw: &str) -> FormParams {
        FormParams::parse(raw.as_bytes())
    }

    #[test]
    fn a_payment_intent_request_parses_with_its_metadata() {
        let request = NewPaymentIntent::parse(&form(
            "amount=2000&currency=USD&payment_method=pm_card_visa&confirm=true\
             &metadata[charge_id]=c%201&customer=cus_1",
        ))
        .unwrap();
        assert_eq!(request.amount, 2000);
        assert_eq!(request.currency, "usd");
        assert!(request.confirm);
        assert_eq!(request.metadata["charge_id"], "c 1");
        assert_eq!(request.customer.as_deref(), Some("cus_1"));
    }

    #[test]
    fn bad_amounts_and_currencies_name_their_param() {
        for (raw, param, code) in [
            ("currency=usd", "amount", Some("parameter_missing")),
            (
                "amount=0&currency=usd",
                "amount",
                Some("parameter_invalid_integer"),
            ),
            (
                "amount=-5&currency=usd",
                "amount",
                Some("parameter_invalid_integer"),
            ),
            (
                "amount=12.5&currency=usd",
                "amount",
                Some("parameter_invalid_integer"),
            ),
            ("amount=100", "currency", Some("parameter_missing")),
            (
                "amount=100&currency=dollars",
                "currency",
                Some("parameter_invalid_string"),
            ),
            (
                "amount=100&currency=u1d",
                "currency",
                Some("parameter_invalid_string"),
            ),
            (
                "amount=100&currency=usd&colour=red",
                "colour",
                Some("parameter_unknown"),
            ),
            (
                "amount=100&currency=usd&payment_method=pm_nope",
                "payment_method",
                Some("resource_missing"),
            ),
        ] {
            let failure = NewPaymentIntent::parse(&form(raw)).unwrap_err();
            assert_eq!(failure.error.param.as_deref(), Some(param), "{raw}");
            assert_eq!(failure.error.code.as_deref(), code, "{raw}");
            assert_eq!(failure.error.kind, "invalid_request_error", "{raw}");
            assert_eq!(failure.status.as_u16(), 400, "{raw}");
        }
    }

    #[test]
    fn the_fingerprint_ignores_parameter_order() {
        assert_eq!(
            form("a=1&b=2").fingerprint("/v1/x"),
            form("b=2&a=1").fingerprint("/v1/x")
        );
        assert_ne!(
            form("a=1&b=2").fingerprint("/v1/x"),
            form("a=1&b=3").fingerprint("/v1/x")
        );
    }

    #[test]
    fn a_refund_names_exactly_one_target() {
        assert!(NewRefund::parse(&form("amount=5")).is_err());
        assert!(NewRefund::parse(&form("payment_intent=pi_1&charge=ch_1")).is_err());
        let refund = NewRefund::parse(&form("payment_intent=pi_1&amount=5")).unwrap();
        assert_eq!(
            refund.target,
            RefundTarget::PaymentIntent("pi_1".to_owned())
        );
        assert_eq!(refund.amount, Some(5));
    }
}
