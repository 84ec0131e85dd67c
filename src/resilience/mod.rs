//! How the service calls what it does not control (the payment provider, the email provider,
//! object storage) and runs work it must not lose, without letting one slow or failing part take
//! the rest down. Which to reach for:
//!
//! - a call to an outside provider, made while a client waits: go through the provider's
//!   [`bulkhead::Bulkhead`] (a bound on this instance's calls in flight, refused at once when
//!   full) and its [`breaker::CircuitBreaker`] (stop calling a provider that keeps failing);
//!   repeat a failed attempt only through [`retry::RetryDriver`], which holds the breaker's
//!   permit, the timeout of each attempt, the full-jitter backoff, the retry budget and the
//!   caller's deadline together;
//! - spacing the attempts of durable work (the webhook queue's): the same full-jitter backoff,
//!   [`retry::RetryPolicy::backoff`];
//! - several identical background workers that must live and die together under the job
//!   runner: [`worker_pool::run`];
//! - a long stream that holds or keeps using a pooled connection (an export, WatchEvents): a
//!   place of its kind per account and per instance, [`stream_limit::StreamLimits`].
//!
//! Nothing here knows a provider: each provider's adapter (`billing/`, `notifications/`,
//! `storage/`) decides what counts as a failure and what may be repeated.

pub mod breaker;
pub mod bulkhead;
pub mod retry;
pub mod stream_limit;
pub mod worker_pool;
