//! Stripe's test payment methods and what confirming a payment with each does.
//!
//! The ids and outcomes are Stripe's (docs: "Testing", declined payments). Any other id is
//! refused with `resource_missing`, as Stripe refuses a payment method it does not know.

/// What the card network answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CardBehaviour {
    Approve,
    Decline(Decline),
}

/// A decline as Stripe reports it in a `card_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decline {
    pub(crate) code: &'static str,
    pub(crate) decline_code: Option<&'static str>,
    pub(crate) message: &'static str,
    pub(crate) param: Option<&'static str>,
}

const fn declined(decline_code: &'static str, message: &'static str) -> CardBehaviour {
    CardBehaviour::Decline(Decline {
        code: "card_declined",
        decline_code: Some(decline_code),
        message,
        param: None,
    })
}

/// The test payment methods the simulator knows, with their behaviour.
pub(crate) const TEST_PAYMENT_METHODS: &[(&str, CardBehaviour)] = &[
    ("pm_card_visa", CardBehaviour::Approve),
    ("pm_card_visa_debit", CardBehaviour::Approve),
    ("pm_card_mastercard", CardBehaviour::Approve),
    ("pm_card_amex", CardBehaviour::Approve),
    (
        "pm_card_chargeDeclined",
        declined("generic_decline", "Your card was declined."),
    ),
    (
        "pm_card_chargeDeclinedInsufficientFunds",
        declined("insufficient_funds", "Your card has insufficient funds."),
    ),
    (
        "pm_card_chargeDeclinedLostCard",
        declined("lost_card", "Your card was declined."),
    ),
    (
        "pm_card_chargeDeclinedStolenCard",
        declined("stolen_card", "Your card was declined."),
    ),
    (
        "pm_card_chargeDeclinedFraudulent",
        declined("fraudulent", "Your card was declined."),
    ),
    (
        "pm_card_chargeDeclinedExpiredCard",
        CardBehaviour::Decline(Decline {
            code: "expired_card",
            decline_code: None,
            message: "Your card has expired.",
            param: Some("exp_month"),
        }),
    ),
    (
        "pm_card_chargeDeclinedIncorrectCvc",
        CardBehaviour::Decline(Decline {
            code: "incorrect_cvc",
            decline_code: None,
            message: "Your card's security code is incorrect.",
            param: Some("cvc"),
        }),
    ),
    (
        "pm_card_chargeDeclinedProcessingError",
        CardBehaviour::Decline(Decline {
            code: "processing_error",
            decline_code: None,
            message: "An error occurred while processing your card. Try again in a little bit.",
            param: None,
        }),
    ),
];

/// The behaviour of a test payment method, or none when the id is unknown.
pub(crate) fn behaviour_of(payment_method: &str) -> Option<CardBehaviour> {
    TEST_PAYMENT_METHODS
        .iter()
        .find(|(id, _)| *id == payment_method)
        .map(|(_, behaviour)| *behaviour)
}

/// What a `settle_later` payment that fails reports.
pub(crate) const LATE_DECLINE: Decline = Decline {
    code: "card_declined",
    decline_code: Some("generic_decline"),
    message: "Your card was declined.",
    param: None,
};
