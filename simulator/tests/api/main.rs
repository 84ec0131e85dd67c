//! Drives the simulator over real HTTP, in-process through `Simulator::start` and once as the
//! built binary.

mod binary;
mod faults;
mod helpers;
mod idempotency;
mod lists;
mod payment_intents;
mod refunds;
mod webhooks;
