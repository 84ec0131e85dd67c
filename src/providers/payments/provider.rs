//! What billing asks of a payment provider, independent of any provider's wire format: create a
//! payment, read it back, find it by our charge id, refund it. [`StripeHttpProvider`] speaks it
//! over Stripe's REST dialect; tests and later the service hold it as `Arc<dyn PaymentProvider>`.
//!
//! The trait is object-safe (methods return boxed futures rather than `async fn`, which would
//! not be dyn-compatible): the service stores one provider chosen at start-up, and a dyn object
//! keeps a type parameter from spreading through the service, the API structs and the
//! application state. One allocation per provider call is nothing beside an HTTP round trip.
//!
//! Every mutating request carries an idempotency key *derived from our own id* (the charge or
//! the refund), never a random one: every retry, and every resumption after a crash, sends the
//! same key, so the provider executes the operation at most once.
//!
//! [`StripeHttpProvider`]: super::StripeHttpProvider

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::domain::{InvalidValue, Money};
use crate::resilience::bulkhead::Bulkhead;

/// The future every provider method returns.
pub type ProviderFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, ProviderError>> + Send + 'a>>;

/// A payment provider. Each call takes the caller's deadline: the implementation never waits,
/// sleeps or retries past it.
pub trait PaymentProvider: Send + Sync + std::fmt::Debug {
    /// Creates and confirms a payment under the key [`CreatePayment::idempotency_key`].
    fn create_payment<'a>(
        &'a self,
        request: &'a CreatePayment,
        deadline: Instant,
    ) -> ProviderFuture<'a, Payment>;

    /// Reads a payment back by the provider's id, with the amount refunded so far.
    fn get_payment<'a>(
        &'a self,
        payment_id: &'a str,
        deadline: Instant,
    ) -> ProviderFuture<'a, Payment>;

    /// Every payment the provider holds for our charge id, oldest first: how an unknown outcome
    /// is resolved when the idempotency key cannot be replayed (more than one means the charge was
    /// made twice, which this client never does, and must be reported).
    fn find_payments_by_charge_id<'a>(
        &'a self,
        charge_id: &'a BillingReference,
        deadline: Instant,
    ) -> ProviderFuture<'a, Vec<Payment>>;

    /// Reads a card charge (`ch_...`, a payment's `latest_charge`): how much of it is refunded,
    /// refunds made outside the service included, and whether it is disputed. What a webhook
    /// event is applied from, whatever the event said and whenever it arrived.
    fn get_charge<'a>(
        &'a self,
        charge_id: &'a str,
        deadline: Instant,
    ) -> ProviderFuture<'a, ProviderCharge>;

    /// One page (up to 100, newest first) of the payments created in `period`, after the cursor
    /// `after` (the [`LedgerPage::next`] of the previous page), each with the amount refunded of
    /// its latest charge: how reconciliation reads the provider's ledger. Reads only.
    fn list_payments<'a>(
        &'a self,
        period: &'a LedgerPeriod,
        after: Option<&'a str>,
        deadline: Instant,
    ) -> ProviderFuture<'a, LedgerPage<Payment>>;

    /// One page (up to 100, newest first) of the refunds created in `period`, ours and those
    /// made elsewhere (the provider's dashboard), after the cursor `after`. Reads only.
    fn list_refunds<'a>(
        &'a self,
        period: &'a LedgerPeriod,
        after: Option<&'a str>,
        deadline: Instant,
    ) -> ProviderFuture<'a, LedgerPage<Refund>>;

    /// Refunds all or part of a payment under the key [`CreateRefund::idempotency_key`].
    fn create_refund<'a>(
        &'a self,
        request: &'a CreateRefund,
        deadline: Instant,
    ) -> ProviderFuture<'a, Refund>;

    /// When every call would be refused now without being sent (an open circuit breaker): how
    /// long until one may be tried. Billing checks it before recording a new charge or refund,
    /// so that an outage creates no pending work. `None` by default: try.
    fn refusing_calls_for(&self) -> Option<Duration> {
        None
    }

    /// This instance's compartment for calls to the provider: a request takes a place before it
    /// records anything ([`Bulkhead::try_enter`], refused at once when full); background work
    /// waits for one ([`Bulkhead::enter`]). The provider's own methods take none.
    fn bulkhead(&self) -> &Bulkhead;

    /// How long the provider keeps an idempotency key and its answer. A charge or refund older
    /// than this is looked for at the provider before it is sent again: sent under a key the
    /// provider has forgotten, one it made would be made twice.
    fn key_retention(&self) -> Duration;
}

/// A stretch of the provider's ledger: what was created from `from` (inclusive) until `until`
/// (exclusive), to the second (the provider's `created` is in unix seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerPeriod {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// One page of a provider list, and the cursor of the next page when there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerPage<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Our id for a charge or a refund as the provider sees it, in metadata, in search queries and
/// inside idempotency keys: 1 to 100 ASCII letters, digits, `-` and `_` (a UUID fits). The
/// narrow alphabet means it never needs quoting in the provider's search language.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BillingReference(String);

impl BillingReference {
    pub const MAX_LENGTH: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.is_empty() || raw.len() > Self::MAX_LENGTH {
            return Err(InvalidValue::new("must be 1 to 100 characters"));
        }
        if !raw
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        {
            return Err(InvalidValue::new(
                "must contain only ASCII letters, digits, '-' and '_'",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BillingReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A payment to create and confirm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatePayment {
    charge_id: BillingReference,
    amount: Money,
    customer: String,
    payment_method: String,
    metadata: BTreeMap<String, String>,
}

impl CreatePayment {
    /// The metadata key our charge id is stored under at the provider.
    pub const CHARGE_ID_METADATA_KEY: &'static str = "charge_id";

    /// A payment of `amount` (positive) for our charge `charge_id`. `metadata` is extra
    /// provider metadata; `charge_id` is added to it and may not be set there.
    pub fn new(
        charge_id: BillingReference,
        amount: Money,
        customer: impl Into<String>,
        payment_method: impl Into<String>,
        metadata: BTreeMap<String, String>,
    ) -> Result<Self, InvalidValue> {
        if amount.is_zero() {
            return Err(InvalidValue::new("a payment's amount must be positive"));
        }
        if metadata.contains_key(Self::CHARGE_ID_METADATA_KEY) {
            return Err(InvalidValue::new(
                "metadata must not set charge_id: it is the charge's own id",
            ));
        }
        let customer = customer.into();
        let payment_method = payment_method.into();
        if customer.trim().is_empty() || payment_method.trim().is_empty() {
            return Err(InvalidValue::new(
                "customer and payment method must not be empty",
            ));
        }
        Ok(Self {
            charge_id,
            amount,
            customer,
            payment_method,
            metadata,
        })
    }

    pub fn charge_id(&self) -> &BillingReference {
        &self.charge_id
    }

    pub fn amount(&self) -> Money {
        self.amount
    }

    pub fn customer(&self) -> &str {
        &self.customer
    }

    pub fn payment_method(&self) -> &str {
        &self.payment_method
    }

    /// The metadata sent, our charge id included.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut metadata = self.metadata.clone();
        metadata.insert(
            Self::CHARGE_ID_METADATA_KEY.to_owned(),
            self.charge_id.as_str().to_owned(),
        );
        metadata
    }

    /// `supportdesk-charge-<charge id>`: the same for every attempt, forever.
    pub fn idempotency_key(&self) -> String {
        format!("supportdesk-charge-{}", self.charge_id)
    }
}

/// A refund to create: the whole unrefunded rest of a payment, or part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateRefund {
    refund_id: BillingReference,
    payment_id: String,
    amount: Option<Money>,
}

impl CreateRefund {
    /// The metadata key our refund id is stored under at the provider.
    pub const REFUND_ID_METADATA_KEY: &'static str = "refund_id";

    /// Refunds `amount` (positive) of `payment_id`, or with `None` all that is left of it.
    pub fn new(
        refund_id: BillingReference,
        payment_id: impl Into<String>,
        amount: Option<Money>,
    ) -> Result<Self, InvalidValue> {
        if amount.is_some_and(Money::is_zero) {
            return Err(InvalidValue::new("a refund's amount must be positive"));
        }
        let payment_id = payment_id.into();
        if payment_id.trim().is_empty() {
            return Err(InvalidValue::new("the payment id must not be empty"));
        }
        Ok(Self {
            refund_id,
            payment_id,
            amount,
        })
    }

    pub fn refund_id(&self) -> &BillingReference {
        &self.refund_id
    }

    pub fn payment_id(&self) -> &str {
        &self.payment_id
    }

    pub fn amount(&self) -> Option<Money> {
        self.amount
    }

    /// `supportdesk-refund-<refund id>`: the same for every attempt, forever.
    pub fn idempotency_key(&self) -> String {
        format!("supportdesk-refund-{}", self.refund_id)
    }
}

/// A payment's state at the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    /// Paid.
    Succeeded,
    /// Confirmed; the outcome will come later (a webhook, or reading it back).
    Processing,
    /// Declined (or never given a payment method): no money moved.
    RequiresPaymentMethod,
    /// Created but not confirmed.
    RequiresConfirmation,
    /// Waiting for the customer (3-D Secure): no money moved yet.
    RequiresAction,
    /// Abandoned: no money moved.
    Canceled,
}

/// A payment as the provider holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// The provider's id (`pi_...`).
    pub id: String,
    pub status: PaymentStatus,
    pub amount: Money,
    /// How much has been refunded, when the provider said (reading a payment back by id does;
    /// creating and searching do not).
    pub amount_refunded: Option<Money>,
    /// Our charge id, from the payment's metadata.
    pub charge_id: Option<String>,
    /// The provider's id of the latest card charge (`ch_...`), if one was attempted.
    pub latest_charge: Option<String>,
    /// Why the last attempt to pay was refused (a decline), as the provider said it: what a
    /// payment read back after a lost answer or a crash is declined for.
    pub last_payment_error: Option<PaymentFailure>,
}

/// A payment's `last_payment_error`: the decline's `code` and, for card declines, the issuer's
/// `decline_code` (the same pair a 402 carries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentFailure {
    pub code: String,
    pub decline_code: Option<String>,
}

/// A card charge as the provider holds it: the refund and dispute state of a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderCharge {
    /// The provider's id (`ch_...`).
    pub id: String,
    /// The payment it belongs to (`pi_...`).
    pub payment_id: String,
    /// Every refund that is not failed or canceled, ours and those made elsewhere (the
    /// provider's dashboard), pending ones included.
    pub amount_refunded: Money,
    /// Whether a dispute (chargeback) was opened on it.
    pub disputed: bool,
}

/// A refund's state at the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundStatus {
    /// Sent; the outcome comes later.
    Pending,
    Succeeded,
    /// The money was not returned; the amount can be refunded again.
    Failed,
    Canceled,
    /// Waiting for the customer.
    RequiresAction,
}

/// A refund as the provider holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refund {
    /// The provider's id (`re_...`).
    pub id: String,
    pub payment_id: String,
    pub amount: Money,
    pub status: RefundStatus,
    /// Our refund id, from the refund's metadata; none for a refund made elsewhere.
    pub refund_id: Option<String>,
}

/// Why a provider call did not produce its result. Each variant says what is known about the
/// effect at the provider, which is what the caller must act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The card was declined. No money moved; retrying the same payment changes nothing.
    #[error("the card was declined ({code}{})", decline_code.as_deref().map(|code| format!(", {code}")).unwrap_or_default())]
    Declined {
        /// The provider's error code (`card_declined`, `expired_card`, `incorrect_cvc`, ...).
        code: String,
        /// The issuer's reason (`generic_decline`, `insufficient_funds`, ...), when given.
        decline_code: Option<String>,
        message: String,
        /// The declined payment's id, when the provider returned it.
        payment_id: Option<String>,
    },
    /// The provider refused the request as malformed or impossible (a refund larger than what is
    /// left, an unknown payment, a wrong API key). Nothing happened; it is our mistake or the
    /// caller's, and retrying changes nothing.
    #[error("the provider refused the request ({status} {code}): {message}")]
    InvalidRequest {
        /// The HTTP status (400, 401, 404, ...); 0 when the client refused it before sending.
        status: u16,
        /// The provider's error code (`amount_too_large`, `resource_missing`, ...), or empty.
        code: String,
        /// The offending parameter, when named.
        param: Option<String>,
        message: String,
    },
    /// The idempotency key was already used with other parameters: two different operations
    /// derived the same key, which is a bug.
    #[error("the idempotency key was reused with other parameters: {message}")]
    IdempotencyConflict { message: String },
    /// The provider asked us to slow down, and the deadline left no room to wait.
    #[error("the provider is rate limiting us")]
    RateLimited {
        /// The provider's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The provider could not be reached or answered with a server error before acting: the
    /// operation did not happen, and may be tried again later with the same key.
    #[error("the payment provider is unavailable: {detail}")]
    Unavailable { detail: String },
    /// The request was sent and no usable answer came back (a timeout, a dropped connection, a
    /// 500 after execution began). The operation MAY have happened. Resolve it by retrying with
    /// the same idempotency key or by reading the payment back by charge id; never with a new key.
    #[error("the outcome of the provider call is unknown: {detail}")]
    UnknownOutcome { detail: String },
    /// The circuit breaker is open: nothing was sent.
    #[error("the payment provider's circuit breaker is open")]
    CircuitOpen {
        /// How long until a probe call will be let through.
        retry_after: Duration,
    },
    /// The deadline had passed before anything was sent.
    #[error("the deadline passed before the provider was called")]
    DeadlineExceeded,
    /// A read answered with something this client cannot interpret (a malformed body, a status
    /// it does not know): a contract problem, not an outage.
    #[error("the provider's answer could not be understood ({status}): {detail}")]
    UnexpectedResponse { status: u16, detail: String },
}

impl ProviderError {
    /// True when the operation may have taken effect at the provider even though no result came
    /// back: the caller must resolve it before deciding the operation failed.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::UnknownOutcome { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(raw: &str) -> BillingReference {
        BillingReference::parse(raw).unwrap()
    }

    #[test]
    fn references_are_short_and_need_no_quoting() {
        assert!(BillingReference::parse("0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c").is_ok());
        assert!(BillingReference::parse(&"a".repeat(100)).is_ok());
        for raw in ["", "it's", "a b", "x'\\", "é", &"a".repeat(101)] {
            assert!(BillingReference::parse(raw).is_err(), "{raw:?} accepted");
        }
    }

    #[test]
    fn idempotency_keys_derive_from_our_ids_and_never_change() {
        let amount = Money::parse(2000, "USD").unwrap();
        let payment = CreatePayment::new(
            reference("c1"),
            amount,
            "cus_1",
            "pm_card_visa",
            BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(payment.idempotency_key(), "supportdesk-charge-c1");
        assert_eq!(payment.clone().idempotency_key(), payment.idempotency_key());
        assert_eq!(payment.metadata()["charge_id"], "c1");
        let refund = CreateRefund::new(reference("r1"), "pi_1", None).unwrap();
        assert_eq!(refund.idempotency_key(), "supportdesk-refund-r1");
    }

    #[test]
    fn zero_amounts_and_a_metadata_charge_id_are_refused() {
        let zero = Money::parse(0, "USD").unwrap();
        assert!(CreatePayment::new(reference("c1"), zero, "cus_1", "pm", BTreeMap::new()).is_err());
        let metadata = BTreeMap::from([("charge_id".to_owned(), "other".to_owned())]);
        let amount = Money::parse(1, "USD").unwrap();
        assert!(CreatePayment::new(reference("c1"), amount, "cus_1", "pm", metadata).is_err());
        assert!(CreateRefund::new(reference("r1"), "pi_1", Some(zero)).is_err());
    }
}
