//! BillingService and the payment provider: charges, refunds, crashes, faults, reconciliation.

pub(crate) mod charges_and_refunds;
pub(crate) mod clocks;
pub(crate) mod crashes;
pub(crate) mod faults;
pub(crate) mod payment_provider;
pub(crate) mod reconciliation;
