//! What reconciliation against the provider's ledger can find (docs/billing.md,
//! "Reconciliation"): the kinds of difference between a charge as the service records it and the
//! provider's payment, and which of them the service repairs rather than only reports.

use std::fmt;

use super::InvalidValue;

/// A kind of difference between the service and the provider's ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FindingKind {
    /// The provider counts another refunded amount than the service (a refund in its dashboard
    /// whose webhook was lost, or a refund that failed there): the charge takes the provider's
    /// figure, as the `charge.refunded` event would have done.
    RefundedAtProvider,
    /// The service has the charge pending, the provider paid it (the answer was lost): settled as
    /// paid.
    PaidAtProvider,
    /// The service has the charge pending, the provider declined it: settled as declined.
    DeclinedAtProvider,
    /// The provider holds no payment for a charge the service has pending or paid. A pending one
    /// is abandoned (nothing was charged); a paid one is only reported, for an operator.
    UnknownToProvider,
    /// The provider's payment is for another amount or currency than the charge: reported.
    AmountMismatch,
    /// The provider holds a payment carrying a charge id the service does not know: reported.
    UnknownPayment,
    /// One of our refunds stands otherwise at the provider (failed there, or missing): reported.
    RefundMismatch,
}

impl FindingKind {
    pub const ALL: [Self; 7] = [
        Self::RefundedAtProvider,
        Self::PaidAtProvider,
        Self::DeclinedAtProvider,
        Self::UnknownToProvider,
        Self::AmountMismatch,
        Self::UnknownPayment,
        Self::RefundMismatch,
    ];

    /// The stored form (the `reconciliation_findings.kind` CHECK lists exactly these).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RefundedAtProvider => "refunded_at_provider",
            Self::PaidAtProvider => "paid_at_provider",
            Self::DeclinedAtProvider => "declined_at_provider",
            Self::UnknownToProvider => "unknown_to_provider",
            Self::AmountMismatch => "amount_mismatch",
            Self::UnknownPayment => "unknown_payment",
            Self::RefundMismatch => "refund_mismatch",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == raw)
            .ok_or_else(|| InvalidValue::new("is not a reconciliation finding kind"))
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_stored_form() {
        for kind in FindingKind::ALL {
            assert_eq!(FindingKind::parse(kind.as_str()), Ok(kind));
        }
        assert!(FindingKind::parse("drift").is_err());
    }
}
