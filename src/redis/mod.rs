//! Redis, as the service uses it: one shared multiplexed [`connection`], the [`keys`] under the
//! configured prefix, the [`backoff`] a feature takes after a failure, the [`ticket_cache`] in
//! front of PostgreSQL, and the [`admission`] script that decides a request's quota and reads
//! the caller's state in one round trip.
//!
//! Callers name the module they use (`crate::redis::connection::Redis`): the layer check in
//! `tests/api/cross_cutting/imports.rs` places each module of this room on its own.

pub mod backoff;
pub mod connection;
pub mod keys;
pub mod ticket_cache;
