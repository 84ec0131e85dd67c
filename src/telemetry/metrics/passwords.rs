//! What password hashing verified, and against what.

use prometheus_client::registry::Registry;

use super::instruments::{Counter, counters_by};

/// What password hashing counts: every argon2 verification that ran, by what it was checked
/// against. A login for an unknown email, a deactivated user or one without a password checks
/// the decoy, so its cost (one argon2 verification) is the cost of a wrong password.
#[derive(Debug)]
pub struct PasswordCounters {
    /// Verifications against a user's stored hash.
    pub verified_against_stored: Counter,
    /// Verifications against the decoy hash.
    pub verified_against_decoy: Counter,
}

impl PasswordCounters {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let [verified_against_stored, verified_against_decoy] = counters_by(
            registry,
            "supportdesk_password_verifications",
            "Argon2 password verifications run, by what the password was checked against (decoy: no usable stored hash, for an unknown email, a deactivated user or one without a password)",
            "against",
            ["stored", "decoy"],
        );
        Self {
            verified_against_stored,
            verified_against_decoy,
        }
    }
}
