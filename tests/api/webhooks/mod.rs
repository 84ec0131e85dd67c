//! WebhookService: receiving, processing, quarantining and administering the provider's events.

pub(crate) mod admin;
pub(crate) mod end_to_end;
pub(crate) mod processing;
pub(crate) mod quarantine;
pub(crate) mod receiving;
