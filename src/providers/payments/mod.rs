//! Billing's foundation (docs/billing.md): the payment provider as a trait, its
//! Stripe-dialect HTTP client with timeouts, retries under a budget and a circuit breaker (the
//! breaker and the retry policy are the service's shared ones, `crate::resilience::breaker` and
//! `crate::resilience::retry`, which email uses too). Money itself is a domain type (`crate::domain::Money`).
//! The RPCs, tables and the completer that finishes interrupted charges build on these.

pub mod provider;
pub mod stripe;

pub use crate::resilience::breaker::{BreakerState, CircuitBreaker};
pub use provider::{
    BillingReference, CreatePayment, CreateRefund, LedgerPage, LedgerPeriod, Payment,
    PaymentFailure, PaymentProvider, PaymentStatus, ProviderCharge, ProviderError, Refund,
    RefundStatus,
};
pub use stripe::{ProviderSetupError, StripeHttpProvider};
