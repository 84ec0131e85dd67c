//! The Stripe objects the simulator creates, in Stripe's JSON shape.
//!
//! Only the fields billing and webhooks read are modelled, but each has Stripe's name and meaning,
//! so an adapter written against these works against Stripe. The same types are the ledger's rows:
//! what `GET /_sim/ledger` and [`crate::SimulatorHandle::ledger`] return.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StripeError;

/// Free-form key/value pairs the caller attached (`metadata[charge_id]=...`).
pub type Metadata = BTreeMap<String, String>;

/// A payment intent's lifecycle state (only those billing meets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentIntentStatus {
    /// Created without a payment method, or the last attempt was declined.
    RequiresPaymentMethod,
    /// Has a payment method but was not confirmed.
    RequiresConfirmation,
    /// Confirmed; the outcome is not known yet (a `settle_later` fault).
    Processing,
    /// Paid.
    Succeeded,
    /// Abandoned.
    Canceled,
}

/// `object: "payment_intent"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentIntent {
    /// `pi_...`
    pub id: String,
    /// Always `payment_intent`.
    pub object: String,
    /// In the currency's smallest unit.
    pub amount: i64,
    /// What was actually collected: `amount` once succeeded, else 0.
    pub amount_received: i64,
    /// Lower-case ISO code.
    pub currency: String,
    /// `cus_...` as given.
    pub customer: Option<String>,
    /// The payment method id as given (`pm_card_visa`).
    pub payment_method: Option<String>,
    /// The lifecycle state.
    pub status: PaymentIntentStatus,
    /// The charge of the last confirmation attempt (`ch_...`).
    pub latest_charge: Option<String>,
    /// Why the last attempt failed.
    pub last_payment_error: Option<StripeError>,
    /// As given.
    pub description: Option<String>,
    /// As given.
    pub metadata: Metadata,
    /// Unix seconds.
    pub created: i64,
    /// Always false.
    pub livemode: bool,
}

/// A charge's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeStatus {
    /// Collected.
    Succeeded,
    /// Outcome not known yet.
    Pending,
    /// Declined.
    Failed,
}

/// `object: "charge"`: one attempt to collect a payment intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    /// `ch_...`
    pub id: String,
    /// Always `charge`.
    pub object: String,
    /// Attempted amount.
    pub amount: i64,
    /// Collected amount: `amount` once succeeded, else 0.
    pub amount_captured: i64,
    /// Sum of the refunds that are not failed or canceled.
    pub amount_refunded: i64,
    /// Lower-case ISO code.
    pub currency: String,
    /// As on the payment intent.
    pub customer: Option<String>,
    /// The payment intent this charge belongs to.
    pub payment_intent: String,
    /// The payment method charged.
    pub payment_method: Option<String>,
    /// The charge's state.
    pub status: ChargeStatus,
    /// Whether the charge succeeded.
    pub paid: bool,
    /// Whether `amount_refunded == amount`.
    pub refunded: bool,
    /// Whether a dispute was opened on it.
    pub disputed: bool,
    /// The error code of a failed charge.
    pub failure_code: Option<String>,
    /// The message of a failed charge.
    pub failure_message: Option<String>,
    /// Copied from the payment intent, as Stripe does.
    pub metadata: Metadata,
    /// Unix seconds.
    pub created: i64,
    /// Always false.
    pub livemode: bool,
}

/// A refund's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Sent; the outcome is not known yet (a `settle_later` fault).
    Pending,
    /// Refunded.
    Succeeded,
    /// The refund failed; the amount is available to refund again.
    Failed,
    /// Canceled.
    Canceled,
}

/// `object: "refund"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refund {
    /// `re_...`
    pub id: String,
    /// Always `refund`.
    pub object: String,
    /// Refunded amount.
    pub amount: i64,
    /// The refunded charge.
    pub charge: String,
    /// Lower-case ISO code.
    pub currency: String,
    /// The refunded payment intent.
    pub payment_intent: String,
    /// The refund's state.
    pub status: RefundStatus,
    /// `duplicate`, `fraudulent`, `requested_by_customer` or none.
    pub reason: Option<String>,
    /// Why a failed refund failed.
    pub failure_reason: Option<String>,
    /// As given.
    pub metadata: Metadata,
    /// Unix seconds.
    pub created: i64,
}

/// `object: "dispute"`: a chargeback opened by the cardholder's bank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispute {
    /// `dp_...`
    pub id: String,
    /// Always `dispute`.
    pub object: String,
    /// Disputed amount.
    pub amount: i64,
    /// The disputed charge.
    pub charge: String,
    /// Lower-case ISO code.
    pub currency: String,
    /// The disputed charge's payment intent.
    pub payment_intent: String,
    /// Such as `fraudulent` or `product_not_received`.
    pub reason: String,
    /// Always `needs_response` here.
    pub status: String,
    /// Unix seconds.
    pub created: i64,
}

/// The API request that caused an event (none for control calls: "outside the service").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRequest {
    /// `req_...`
    pub id: Option<String>,
    /// The request's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
}

/// The `data` member of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventData {
    /// The object after the change.
    pub object: Value,
}

/// `object: "event"`: what webhooks deliver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `evt_...`
    pub id: String,
    /// Always `event`.
    pub object: String,
    /// The API version the object is rendered in.
    pub api_version: String,
    /// Unix seconds.
    pub created: i64,
    /// Such as `payment_intent.succeeded`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Always false.
    pub livemode: bool,
    /// Endpoints still to be told; the simulator has at most one.
    pub pending_webhooks: u32,
    /// What caused it.
    pub request: EventRequest,
    /// The object.
    pub data: EventData,
}

/// The API version events claim to be rendered in.
pub const API_VERSION: &str = "2024-06-20";
