//! Outbound webhooks: the events we send to the endpoints customers register (docs/webhooks.md,
//! "Webhooks we send"), as opposed to the payment provider's events we receive
//! (`service::payment_events`).

pub mod delivery;
pub mod endpoints;
pub mod secrets;
