//! Charges, refunds and reconciliation's findings between the wire and the domain, with the
//! money they carry.

use super::timestamp;
use crate::db::models::{StoredCharge, StoredFinding};
use crate::domain::{ChargeStatus, FailureKind, InvalidValue, Money};
use crate::wire::proto::v1;

/// An amount in a known currency (whether it may be zero or negative is the caller's rule).
impl TryFrom<&v1::Money> for Money {
    type Error = InvalidValue;

    fn try_from(money: &v1::Money) -> Result<Self, Self::Error> {
        Money::parse(money.amount_minor, &money.currency_code)
    }
}

impl From<Money> for v1::Money {
    fn from(money: Money) -> Self {
        v1::Money {
            amount_minor: money.amount_minor(),
            currency_code: money.currency().code().to_owned(),
        }
    }
}

/// A charge status a filter names; UNSPECIFIED ("any status") is read with
/// [`super::unless_unspecified`].
impl TryFrom<i32> for ChargeStatus {
    type Error = InvalidValue;

    fn try_from(value: i32) -> Result<Self, Self::Error> {
        match v1::ChargeStatus::try_from(value) {
            Ok(v1::ChargeStatus::Pending) => Ok(ChargeStatus::Pending),
            Ok(v1::ChargeStatus::Succeeded) => Ok(ChargeStatus::Succeeded),
            Ok(v1::ChargeStatus::Failed) => Ok(ChargeStatus::Failed),
            Ok(v1::ChargeStatus::PartiallyRefunded) => Ok(ChargeStatus::PartiallyRefunded),
            Ok(v1::ChargeStatus::Refunded) => Ok(ChargeStatus::Refunded),
            Ok(v1::ChargeStatus::Unspecified) | Err(_) => {
                Err(InvalidValue::new("is not a charge status"))
            }
        }
    }
}

impl From<ChargeStatus> for v1::ChargeStatus {
    fn from(status: ChargeStatus) -> Self {
        match status {
            ChargeStatus::Pending => v1::ChargeStatus::Pending,
            ChargeStatus::Succeeded => v1::ChargeStatus::Succeeded,
            ChargeStatus::Failed => v1::ChargeStatus::Failed,
            ChargeStatus::PartiallyRefunded => v1::ChargeStatus::PartiallyRefunded,
            ChargeStatus::Refunded => v1::ChargeStatus::Refunded,
        }
    }
}

impl From<&StoredCharge> for v1::Charge {
    fn from(stored: &StoredCharge) -> Self {
        let charge = &stored.charge;
        v1::Charge {
            id: charge.id.to_string(),
            account_id: charge.account_id.to_string(),
            customer_id: charge.customer_id.to_string(),
            ticket_id: charge
                .ticket_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            amount: Some(v1::Money::from(charge.amount)),
            amount_refunded: Some(v1::Money::from(charge.amount_refunded)),
            status: v1::ChargeStatus::from(charge.status).into(),
            payment_method: charge.payment_method.clone(),
            provider_payment_id: charge.provider_payment_id.clone().unwrap_or_default(),
            failure_code: charge.failure_code.clone().unwrap_or_default(),
            decline_code: charge.decline_code.clone().unwrap_or_default(),
            create_time: Some(timestamp(stored.created_at)),
            update_time: Some(timestamp(stored.updated_at)),
            etag: charge.etag(),
            failure_kind: charge
                .failure_kind
                .map_or(
                    v1::ChargeFailureKind::Unspecified,
                    v1::ChargeFailureKind::from,
                )
                .into(),
            attention_reason: stored
                .attention
                .as_ref()
                .map(|attention| attention.reason.clone())
                .unwrap_or_default(),
            attention_time: stored
                .attention
                .as_ref()
                .map(|attention| timestamp(attention.since)),
        }
    }
}

impl From<FailureKind> for v1::ChargeFailureKind {
    fn from(kind: FailureKind) -> Self {
        match kind {
            FailureKind::Declined => v1::ChargeFailureKind::Declined,
            FailureKind::Refused => v1::ChargeFailureKind::Refused,
            FailureKind::Abandoned => v1::ChargeFailureKind::Abandoned,
        }
    }
}

impl From<&StoredFinding> for v1::ReconciliationFinding {
    fn from(finding: &StoredFinding) -> Self {
        let text = |id: Option<uuid::Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
        v1::ReconciliationFinding {
            id: finding.id.to_string(),
            run_id: finding.run_id.to_string(),
            kind: finding.kind.as_str().to_owned(),
            charge_id: text(finding.charge_id),
            refund_id: text(finding.refund_id),
            provider_object_id: finding.provider_object_id.clone().unwrap_or_default(),
            details: finding.details.to_string(),
            action: finding.action.clone(),
            repaired: finding.repaired,
            create_time: Some(timestamp(finding.created_at)),
        }
    }
}
