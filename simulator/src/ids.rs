//! Stripe-looking object ids and the wall clock objects are stamped with.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use rand::distributions::Alphanumeric;

/// `prefix_` followed by 24 random alphanumerics, like `pi_3MtwBwLkdIwHu7ix28a3tqPa`.
pub(crate) fn new_id(prefix: &str) -> String {
    let suffix: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    format!("{prefix}_{suffix}")
}

/// Seconds since the Unix epoch, what Stripe's `created` fields hold.
pub(crate) fn unix_now() -> i64 {
    i64::try_from(unix_now_millis() / 1000).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch, for the delivery log.
pub(crate) fn unix_now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or(0)
}
