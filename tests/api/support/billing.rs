//! A builder for charges, so that a test says what it charges, to whom and as whom:
//! `app.charge(&customer, 2_500, "EUR").create().await`, or
//! `app.charge(&customer, 500, "EUR").paid_with("pm_card_chargeDeclined").try_create().await` for
//! a decline. Anything left unsaid is valid: the test card that always pays, charged by the
//! account's admin under a fresh idempotency key (a test of who may charge, or of replays, sends
//! `request()` its own way).

use supportdesk::wire::proto::v1;
use tonic::Status;

use super::{TestApp, TestUser, keyed};

/// A CreateCharge call in the making.
pub(crate) struct ChargeBuilder<'a> {
    app: &'a TestApp,
    caller: &'a TestUser,
    charge: v1::Charge,
}

impl TestApp {
    /// `amount_minor` units of `currency_code` charged to the customer `customer_id` (a
    /// `UserId`, or its text), paid with the card that always succeeds, by the admin.
    pub(crate) fn charge(
        &self,
        customer_id: impl ToString,
        amount_minor: i64,
        currency_code: &str,
    ) -> ChargeBuilder<'_> {
        ChargeBuilder {
            app: self,
            caller: &self.admin,
            charge: v1::Charge {
                customer_id: customer_id.to_string(),
                amount: Some(v1::Money {
                    amount_minor,
                    currency_code: currency_code.to_owned(),
                }),
                payment_method: "pm_card_visa".to_owned(),
                ..Default::default()
            },
        }
    }
}

impl ChargeBuilder<'_> {
    /// Paid with `payment_method` (the simulator's test cards: `pm_card_chargeDeclined`,
    /// `pm_card_chargeDeclinedInsufficientFunds`, ...).
    pub(crate) fn paid_with(mut self, payment_method: &str) -> Self {
        payment_method.clone_into(&mut self.charge.payment_method);
        self
    }

    /// The request as it would be sent, for a test that sends it its own way.
    pub(crate) fn request(self) -> v1::CreateChargeRequest {
        v1::CreateChargeRequest {
            charge: Some(self.charge),
        }
    }

    /// Charges, which must succeed (the charge may still be declined: see its status).
    pub(crate) async fn create(self) -> v1::Charge {
        self.try_create().await.expect("the charge is made")
    }

    /// Tries to charge: for a test about what is refused or declined.
    pub(crate) async fn try_create(self) -> Result<v1::Charge, Status> {
        let (app, caller) = (self.app, self.caller);
        app.billing
            .clone()
            .create_charge(keyed(caller.request(self.request())))
            .await
            .map(tonic::Response::into_inner)
    }
}
