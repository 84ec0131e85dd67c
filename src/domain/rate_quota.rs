//! A rate-limit quota as configured (`RATE_LIMIT_*=count/seconds`); a plain value, so that the
//! error a used-up quota becomes can name it without `errors` importing `configuration`.

use std::str::FromStr;
use std::time::Duration;

/// `count` requests per `window`, with bursts of up to `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateQuota {
    pub count: u32,
    pub window: Duration,
}

impl FromStr for RateQuota {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = || "must be `count/seconds`, e.g. 100/60".to_owned();
        let (count, seconds) = value.split_once('/').ok_or_else(invalid)?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        let seconds: u64 = seconds.trim().parse().map_err(|_| invalid())?;
        if count == 0 || seconds == 0 {
            return Err("count and seconds must both be greater than 0".to_owned());
        }
        Ok(Self {
            count,
            window: Duration::from_secs(seconds),
        })
    }
}
