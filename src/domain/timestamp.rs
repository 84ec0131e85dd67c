//! A point in time a client may send: within what both protobuf's `Timestamp` and PostgreSQL's
//! `timestamptz` can hold, at PostgreSQL's microsecond precision.
//!
//! protobuf allows years 1 to 9999; PostgreSQL stores 4713 BC to 294276 AD. Anything outside the
//! first range is refused here, naming the field, so no query ever sees a time PostgreSQL would
//! reject (it answered INTERNAL, logging an error a line per request, before this type).

use chrono::{DateTime, Utc};

use super::InvalidValue;

/// An instant between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// 0001-01-01T00:00:00Z, in seconds since the Unix epoch.
    const MIN_SECONDS: i64 = -62_135_596_800;
    /// 9999-12-31T23:59:59Z, in seconds since the Unix epoch.
    const MAX_SECONDS: i64 = 253_402_300_799;

    /// From a protobuf `Timestamp`'s parts; nanoseconds below a microsecond are dropped, as
    /// PostgreSQL would.
    pub fn parse(seconds: i64, nanos: i32) -> Result<Self, InvalidValue> {
        if !(Self::MIN_SECONDS..=Self::MAX_SECONDS).contains(&seconds) {
            return Err(Self::out_of_range());
        }
        let nanos = u32::try_from(nanos)
            .ok()
            .filter(|nanos| *nanos < 1_000_000_000)
            .ok_or_else(|| InvalidValue::new("nanos must be between 0 and 999,999,999"))?;
        DateTime::from_timestamp(seconds, nanos - nanos % 1_000)
            .map(Self)
            .ok_or_else(Self::out_of_range)
    }

    /// From microseconds since the Unix epoch (how page tokens carry a position).
    pub fn from_micros(micros: i64) -> Result<Self, InvalidValue> {
        let seconds = micros.div_euclid(1_000_000);
        let nanos = (micros.rem_euclid(1_000_000) * 1_000) as i32;
        Self::parse(seconds, nanos)
    }

    /// A time read back from PostgreSQL (always within range, at microsecond precision).
    pub fn from_stored(at: DateTime<Utc>) -> Self {
        Self(at)
    }

    pub fn get(self) -> DateTime<Utc> {
        self.0
    }

    pub fn micros(self) -> i64 {
        self.0.timestamp_micros()
    }

    fn out_of_range() -> InvalidValue {
        InvalidValue::new("must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn times_before_year_one_or_after_9999_are_refused() {
        assert!(Timestamp::parse(-210_900_000_000, 0).is_err());
        assert!(Timestamp::parse(Timestamp::MIN_SECONDS - 1, 0).is_err());
        assert!(Timestamp::parse(Timestamp::MAX_SECONDS + 1, 0).is_err());
        assert!(Timestamp::parse(i64::MIN, 0).is_err());
        assert!(Timestamp::parse(i64::MAX, 0).is_err());
        assert!(Timestamp::parse(Timestamp::MIN_SECONDS, 0).is_ok());
        assert!(Timestamp::parse(Timestamp::MAX_SECONDS, 999_999_999).is_ok());
    }

    #[test]
    fn nanos_outside_a_second_are_refused() {
        assert!(Timestamp::parse(0, -1).is_err());
        assert!(Timestamp::parse(0, 1_000_000_000).is_err());
    }

    #[test]
    fn precision_is_cut_to_microseconds() {
        let at = Timestamp::parse(1, 123_456_789).unwrap();
        assert_eq!(at.micros(), 1_123_456);
    }

    proptest! {
        #[test]
        fn microseconds_round_trip_within_the_range(
            micros in (Timestamp::MIN_SECONDS * 1_000_000)..(Timestamp::MAX_SECONDS * 1_000_000)
        ) {
            prop_assert_eq!(Timestamp::from_micros(micros).unwrap().micros(), micros);
        }

        #[test]
        fn every_i64_of_microseconds_either_parses_in_range_or_is_refused(micros in any::<i64>()) {
            if let Ok(at) = Timestamp::from_micros(micros) {
                prop_assert!(at.get().timestamp() >= Timestamp::MIN_SECONDS);
                prop_assert!(at.get().timestamp() <= Timestamp::MAX_SECONDS);
            }
        }
    }
}
