//! A charge of a customer and its lifecycle. [`Charge::apply`] is the one place that decides
//! what an event makes of a charge: pending → succeeded | failed; succeeded → partially refunded
//! → refunded. Refunds are counted with [`Money`] arithmetic, so a refund can never take more than
//! what is left of the charge, whatever order concurrent refunds are decided in (the service
//! decides them one at a time, under a row lock on the charge).

use std::fmt;

use super::{AccountId, ChargeId, InvalidValue, Money, TicketId, UserId};

/// Where a charge stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChargeStatus {
    /// Inserted and possibly sent to the provider; its outcome is not recorded yet.
    Pending,
    /// Paid, nothing refunded.
    Succeeded,
    /// Declined or refused by the provider: no money moved. Final.
    Failed,
    /// Paid, and part of it refunded.
    PartiallyRefunded,
    /// Paid, and all of it refunded. Final.
    Refunded,
}

impl ChargeStatus {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Succeeded,
        Self::Failed,
        Self::PartiallyRefunded,
        Self::Refunded,
    ];

    /// The stored form (the `charges.status` CHECK lists exactly these).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == raw)
            .ok_or_else(|| {
                InvalidValue::new(
                    "must be pending, succeeded, failed, partially_refunded or refunded",
                )
            })
    }

    /// Money was taken and can still (partly) be given back.
    pub fn is_refundable(self) -> bool {
        matches!(self, Self::Succeeded | Self::PartiallyRefunded)
    }
}

impl fmt::Display for ChargeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a refund stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefundStatus {
    /// Counted against the charge and possibly sent; the provider's answer is not recorded yet.
    Pending,
    Succeeded,
    /// The provider refused it: its amount is no longer counted against the charge.
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "pending" => Ok(Self::Pending),
            "succeeded" => Ok(Self::Succeeded),
            "failed" => Ok(Self::Failed),
            _ => Err(InvalidValue::new("must be pending, succeeded or failed")),
        }
    }
}

/// A charge as the service sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    pub id: ChargeId,
    pub account_id: AccountId,
    pub customer_id: UserId,
    pub ticket_id: Option<TicketId>,
    pub amount: Money,
    /// Refunds that succeeded or are still pending: what is no longer available to refund.
    pub amount_refunded: Money,
    pub payment_method: String,
    pub status: ChargeStatus,
    pub provider_payment_id: Option<String>,
    /// Why a failed charge failed; `None` unless FAILED.
    pub failure_kind: Option<FailureKind>,
    pub failure_code: Option<String>,
    pub decline_code: Option<String>,
    /// The request field a refusal names (`amount`, `payment_method`, `currency`).
    pub failure_param: Option<String>,
    pub version: i64,
}

/// Why a charge failed. Each kind is answered differently: a decline asks for another card, a
/// refusal names the field to fix, an abandoned charge was never made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The card was declined (the provider's `card_error`).
    Declined,
    /// The provider refused the request as invalid (`amount_too_large`, an unknown payment
    /// method, …): nothing was charged and sending it again would be refused again.
    Refused,
    /// Given up without the provider having charged it (it never saw the charge).
    Abandoned,
}

impl FailureKind {
    pub const ALL: [Self; 3] = [Self::Declined, Self::Refused, Self::Abandoned];

    /// The stored form (the `charges.failure_kind` CHECK lists exactly these).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Declined => "declined",
            Self::Refused => "refused",
            Self::Abandoned => "abandoned",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == raw)
            .ok_or_else(|| InvalidValue::new("must be declined, refused or abandoned"))
    }
}

/// Something that happens to a charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeEvent {
    /// The provider took the money.
    Succeeded { provider_payment_id: String },
    /// The provider declined the payment (a failed payment exists there).
    Failed {
        provider_payment_id: Option<String>,
        code: String,
        decline_code: Option<String>,
    },
    /// The provider refused the request itself as invalid (`code`, naming `param` when it
    /// says one): no payment exists, and the same request would be refused again.
    Refused { code: String, param: Option<String> },
    /// Given up without a payment at the provider (`reason`): it never saw the charge.
    Abandoned { reason: String },
    /// A refund of `amount` is reserved against the charge (before the provider is asked).
    RefundReserved { amount: Money },
    /// A reserved refund was refused by the provider: its amount is available again.
    RefundReleased { amount: Money },
    /// The provider's own figure of what is refunded (refunds made outside the service included),
    /// learnt from a webhook event once none of our refunds of the charge is in flight.
    RefundedAtProvider { amount_refunded: Money },
}

/// What an event makes of a charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeDecision {
    pub after: Charge,
    /// The audit trail's action for it.
    pub action: &'static str,
}

/// Why the lifecycle refuses an event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChargeViolation {
    #[error("a {status} charge cannot be {what}")]
    WrongStatus {
        status: ChargeStatus,
        what: &'static str,
    },
    #[error("the refund of {requested} exceeds the {remaining} left to refund")]
    RefundExceedsCharge { requested: Money, remaining: Money },
    #[error("the amount is in {found}, the charge in {expected}")]
    CurrencyMismatch {
        expected: super::Currency,
        found: super::Currency,
    },
}

impl Charge {
    /// What is left to refund.
    pub fn refundable(&self) -> Money {
        // amount_refunded never exceeds amount (apply and the table's CHECK see to it).
        self.amount
            .checked_sub(self.amount_refunded)
            .unwrap_or_else(|_| Money::zero(self.amount.currency()))
    }

    /// The charge's etag: its version, written as every etag of the API is (`v3`, as tickets'),
    /// so a client handles one format (docs/http-contract.md, "One shape").
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// The lifecycle's one decision. Pure: the caller locks the row, persists and records.
    pub fn apply(&self, event: &ChargeEvent) -> Result<ChargeDecision, ChargeViolation> {
        let mut after = self.clone();
        let wrong = |what| ChargeViolation::WrongStatus {
            status: self.status,
            what,
        };
        let action = match event {
            ChargeEvent::Succeeded {
                provider_payment_id,
            } => {
                if self.status != ChargeStatus::Pending {
                    return Err(wrong("marked succeeded"));
                }
                after.status = ChargeStatus::Succeeded;
                after.provider_payment_id = Some(provider_payment_id.clone());
                "succeeded"
            }
            ChargeEvent::Failed {
                provider_payment_id,
                code,
                decline_code,
            } => {
                if self.status != ChargeStatus::Pending {
                    return Err(wrong("marked failed"));
                }
                after.status = ChargeStatus::Failed;
                after.provider_payment_id = provider_payment_id.clone();
                after.failure_kind = Some(FailureKind::Declined);
                after.failure_code = Some(code.clone());
                after.decline_code = decline_code.clone();
                "failed"
            }
            ChargeEvent::Refused { code, param } => {
                if self.status != ChargeStatus::Pending {
                    return Err(wrong("marked refused"));
                }
                after.status = ChargeStatus::Failed;
                after.failure_kind = Some(FailureKind::Refused);
                after.failure_code = Some(code.clone());
                after.failure_param = param.clone();
                "failed"
            }
            ChargeEvent::Abandoned { reason } => {
                if self.status != ChargeStatus::Pending {
                    return Err(wrong("abandoned"));
                }
                after.status = ChargeStatus::Failed;
                after.failure_kind = Some(FailureKind::Abandoned);
                after.failure_code = Some(reason.clone());
                "failed"
            }
            ChargeEvent::RefundReserved { amount } => {
                if !self.status.is_refundable() {
                    return Err(wrong("refunded"));
                }
                self.same_currency(*amount)?;
                let remaining = self.refundable();
                if amount.is_zero() || amount.amount_minor() > remaining.amount_minor() {
                    return Err(ChargeViolation::RefundExceedsCharge {
                        requested: *amount,
                        remaining,
                    });
                }
                after.amount_refunded =
                    self.amount_refunded.checked_add(*amount).map_err(|_| {
                        ChargeViolation::RefundExceedsCharge {
                            requested: *amount,
                            remaining,
                        }
                    })?;
                after.status = status_for_refunded(&after);
                "refund_requested"
            }
            ChargeEvent::RefundReleased { amount } => {
                if !matches!(
                    self.status,
                    ChargeStatus::PartiallyRefunded | ChargeStatus::Refunded
                ) {
                    return Err(wrong("released from a refund"));
                }
                self.same_currency(*amount)?;
                after.amount_refunded =
                    self.amount_refunded.checked_sub(*amount).map_err(|_| {
                        ChargeViolation::RefundExceedsCharge {
                            requested: *amount,
                            remaining: self.amount_refunded,
                        }
                    })?;
                after.status = status_for_refunded(&after);
                "refund_failed"
            }
            ChargeEvent::RefundedAtProvider { amount_refunded } => {
                if !matches!(
                    self.status,
                    ChargeStatus::Succeeded
                        | ChargeStatus::PartiallyRefunded
                        | ChargeStatus::Refunded
                ) {
                    return Err(wrong("refunded at the provider"));
                }
                self.same_currency(*amount_refunded)?;
                if amount_refunded.amount_minor() > self.amount.amount_minor() {
                    return Err(ChargeViolation::RefundExceedsCharge {
                        requested: *amount_refunded,
                        remaining: self.amount,
                    });
                }
                after.amount_refunded = *amount_refunded;
                after.status = status_for_refunded(&after);
                // Less refunded than we counted: a refund the provider had accepted failed there.
                if amount_refunded.amount_minor() < self.amount_refunded.amount_minor() {
                    "refund_failed"
                } else {
                    "refunded"
                }
            }
        };
        after.version += 1;
        Ok(ChargeDecision { after, action })
    }

    fn same_currency(&self, amount: Money) -> Result<(), ChargeViolation> {
        if amount.currency() == self.amount.currency() {
            Ok(())
        } else {
            Err(ChargeViolation::CurrencyMismatch {
                expected: self.amount.currency(),
                found: amount.currency(),
            })
        }
    }
}

fn status_for_refunded(charge: &Charge) -> ChargeStatus {
    if charge.amount_refunded.is_zero() {
        ChargeStatus::Succeeded
    } else if charge.amount_refunded == charge.amount {
        ChargeStatus::Refunded
    } else {
        ChargeStatus::PartiallyRefunded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd(minor: i64) -> Money {
        Money::parse(minor, "USD").unwrap()
    }

    fn pending(amount: i64) -> Charge {
        Charge {
            id: ChargeId::generate(),
            account_id: AccountId::generate(),
            customer_id: UserId::generate(),
            ticket_id: None,
            amount: usd(amount),
            amount_refunded: usd(0),
            payment_method: "pm_card_visa".to_owned(),
            status: ChargeStatus::Pending,
            provider_payment_id: None,
            failure_kind: None,
            failure_code: None,
            decline_code: None,
            failure_param: None,
            version: 1,
        }
    }

    fn succeeded(amount: i64) -> Charge {
        pending(amount)
            .apply(&ChargeEvent::Succeeded {
                provider_payment_id: "pi_1".to_owned(),
            })
            .unwrap()
            .after
    }

    fn refund(charge: &Charge, minor: i64) -> Result<Charge, ChargeViolation> {
        charge
            .apply(&ChargeEvent::RefundReserved { amount: usd(minor) })
            .map(|decision| decision.after)
    }

    #[test]
    fn a_pending_charge_succeeds_or_fails_once() {
        let paid = succeeded(2000);
        assert_eq!(paid.status, ChargeStatus::Succeeded);
        assert_eq!(paid.provider_payment_id.as_deref(), Some("pi_1"));
        assert_eq!(paid.version, 2);
        let declined = pending(2000)
            .apply(&ChargeEvent::Failed {
                provider_payment_id: Some("pi_2".to_owned()),
                code: "card_declined".to_owned(),
                decline_code: Some("insufficient_funds".to_owned()),
            })
            .unwrap();
        assert_eq!(declined.action, "failed");
        assert_eq!(declined.after.status, ChargeStatus::Failed);
        assert_eq!(declined.after.failure_kind, Some(FailureKind::Declined));
        assert_eq!(
            declined.after.decline_code.as_deref(),
            Some("insufficient_funds")
        );
        let again = ChargeEvent::Succeeded {
            provider_payment_id: "pi_3".to_owned(),
        };
        assert!(paid.apply(&again).is_err());
        assert!(declined.after.apply(&again).is_err());
    }

    #[test]
    fn a_refused_or_abandoned_charge_fails_with_its_kind_and_no_payment() {
        let refused = pending(2000)
            .apply(&ChargeEvent::Refused {
                code: "amount_too_large".to_owned(),
                param: Some("amount".to_owned()),
            })
            .unwrap()
            .after;
        assert_eq!(refused.status, ChargeStatus::Failed);
        assert_eq!(refused.failure_kind, Some(FailureKind::Refused));
        assert_eq!(refused.failure_code.as_deref(), Some("amount_too_large"));
        assert_eq!(refused.failure_param.as_deref(), Some("amount"));
        assert_eq!(refused.provider_payment_id, None);
        let abandoned = pending(2000)
            .apply(&ChargeEvent::Abandoned {
                reason: "not_at_provider".to_owned(),
            })
            .unwrap()
            .after;
        assert_eq!(abandoned.failure_kind, Some(FailureKind::Abandoned));
        assert_eq!(abandoned.failure_code.as_deref(), Some("not_at_provider"));
        assert!(
            refused
                .apply(&ChargeEvent::Abandoned {
                    reason: "late".to_owned()
                })
                .is_err()
        );
        assert!(refund(&abandoned, 1).is_err());
    }

    #[test]
    fn refunds_go_from_partial_to_full_and_never_beyond() {
        let paid = succeeded(1000);
        let partly = refund(&paid, 300).unwrap();
        assert_eq!(partly.status, ChargeStatus::PartiallyRefunded);
        let more = refund(&partly, 300).unwrap();
        assert_eq!(more.status, ChargeStatus::PartiallyRefunded);
        assert_eq!(more.refundable(), usd(400));
        assert_eq!(
            refund(&more, 401),
            Err(ChargeViolation::RefundExceedsCharge {
                requested: usd(401),
                remaining: usd(400)
            })
        );
        let all = refund(&more, 400).unwrap();
        assert_eq!(all.status, ChargeStatus::Refunded);
        assert!(matches!(
            refund(&all, 1),
            Err(ChargeViolation::WrongStatus { .. })
        ));
    }

    #[test]
    fn pending_and_failed_charges_cannot_be_refunded() {
        assert!(refund(&pending(100), 1).is_err());
        let failed = pending(100)
            .apply(&ChargeEvent::Failed {
                provider_payment_id: None,
                code: "card_declined".to_owned(),
                decline_code: None,
            })
            .unwrap()
            .after;
        assert!(refund(&failed, 1).is_err());
    }

    #[test]
    fn a_refund_in_another_currency_is_refused() {
        let eur = Money::parse(100, "EUR").unwrap();
        assert!(matches!(
            succeeded(1000).apply(&ChargeEvent::RefundReserved { amount: eur }),
            Err(ChargeViolation::CurrencyMismatch { .. })
        ));
    }

    #[test]
    fn a_released_refund_makes_its_amount_refundable_again() {
        let all = refund(&succeeded(500), 500).unwrap();
        let released = all
            .apply(&ChargeEvent::RefundReleased { amount: usd(200) })
            .unwrap();
        assert_eq!(released.action, "refund_failed");
        assert_eq!(released.after.status, ChargeStatus::PartiallyRefunded);
        assert_eq!(released.after.refundable(), usd(200));
        let none = released
            .after
            .apply(&ChargeEvent::RefundReleased { amount: usd(300) })
            .unwrap()
            .after;
        assert_eq!(none.status, ChargeStatus::Succeeded);
    }

    #[test]
    fn the_providers_refunded_figure_replaces_ours_in_either_direction() {
        let paid = succeeded(1000);
        let outside = paid
            .apply(&ChargeEvent::RefundedAtProvider {
                amount_refunded: usd(400),
            })
            .unwrap();
        assert_eq!(outside.action, "refunded");
        assert_eq!(outside.after.status, ChargeStatus::PartiallyRefunded);
        assert_eq!(outside.after.refundable(), usd(600));
        let all = outside
            .after
            .apply(&ChargeEvent::RefundedAtProvider {
                amount_refunded: usd(1000),
            })
            .unwrap()
            .after;
        assert_eq!(all.status, ChargeStatus::Refunded);
        let failed_there = all
            .apply(&ChargeEvent::RefundedAtProvider {
                amount_refunded: usd(0),
            })
            .unwrap();
        assert_eq!(failed_there.action, "refund_failed");
        assert_eq!(failed_there.after.status, ChargeStatus::Succeeded);
        assert!(
            paid.apply(&ChargeEvent::RefundedAtProvider {
                amount_refunded: usd(1001)
            })
            .is_err()
        );
        assert!(
            pending(1000)
                .apply(&ChargeEvent::RefundedAtProvider {
                    amount_refunded: usd(1)
                })
                .is_err()
        );
    }

    #[test]
    fn statuses_round_trip_through_their_stored_form() {
        for status in ChargeStatus::ALL {
            assert_eq!(ChargeStatus::parse(status.as_str()), Ok(status));
        }
        assert!(ChargeStatus::parse("paid").is_err());
    }

    proptest! {
        #[test]
        fn any_sequence_of_refunds_never_takes_more_than_the_charge(
            amount in 1i64..1_000_000,
            refunds in proptest::collection::vec(1i64..400_000, 0..20),
        ) {
            let mut charge = succeeded(amount);
            let mut accepted = 0i64;
            for minor in refunds {
                match refund(&charge, minor) {
                    Ok(after) => {
                        accepted += minor;
                        charge = after;
                    }
                    Err(_) => prop_assert!(accepted + minor > amount
                        || charge.status == ChargeStatus::Refunded),
                }
                prop_assert!(charge.amount_refunded.amount_minor() <= amount);
                prop_assert_eq!(charge.amount_refunded.amount_minor(), accepted);
                prop_assert_eq!(
                    charge.status == ChargeStatus::Refunded,
                    accepted == amount
                );
            }
        }
    }
}
