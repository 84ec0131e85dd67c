//! Outbound webhooks: the events we send to the endpoints customers register (docs/webhooks.md,
//! "Webhooks we send"), as opposed to the payment provider's events we receive
//! (`service::webhooks`).

pub mod secrets;
