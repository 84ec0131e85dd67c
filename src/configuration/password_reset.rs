//! Password resets and invitations (docs/identity.md, "Password resets and invitations"): the
//! quotas of RequestPasswordReset.

use std::time::Duration;

use super::RateQuota;
use super::reader::Reader;

#[derive(Clone, Debug)]
pub struct PasswordResetSettings {
    /// `RATE_LIMIT_PASSWORD_RESET`: `RequestPasswordReset` calls per client IP.
    pub per_client: RateQuota,
    /// `RATE_LIMIT_PASSWORD_RESET_ADDRESS`: `RequestPasswordReset` calls per email address
    /// (account and email), whoever asks.
    pub per_address: RateQuota,
}

impl Reader<'_> {
    pub(super) fn password_reset(&mut self) -> PasswordResetSettings {
        PasswordResetSettings {
            per_client: self.parsed(
                "RATE_LIMIT_PASSWORD_RESET",
                RateQuota {
                    count: 10,
                    window: Duration::from_secs(3600),
                },
            ),
            per_address: self.parsed(
                "RATE_LIMIT_PASSWORD_RESET_ADDRESS",
                RateQuota {
                    count: 3,
                    window: Duration::from_secs(3600),
                },
            ),
        }
    }
}
