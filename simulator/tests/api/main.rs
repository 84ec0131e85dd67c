//! Drives the simulators over real HTTP, in-process (`Simulator::start`,
//! `EmailSimulator::start`) and once each as the built binary.

mod binary;
mod email;
mod faults;
mod helpers;
mod idempotency;
mod lists;
mod payment_intents;
mod refunds;
mod webhooks;
