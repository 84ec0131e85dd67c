//! The `webhook_events` table: every event the payment provider delivered, stored once by its
//! event id, and the queue the webhook workers take events from (docs/webhooks.md).
//!
//! The receiving side (storing a delivery, the admin RPCs' reads and re-drive) and the queue
//! (claiming due events under a lease, recording an attempt's outcome) share the row but not
//! their queries; each half below is written for its own callers.

// ----- Receiving and the admin RPCs -----

// ----- The queue -----
