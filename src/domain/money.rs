//! Money: an amount in integer minor units of an ISO 4217 currency. There is no float anywhere:
//! amounts are `i64` counts of the currency's smallest unit (cents, yen, fils), and the decimal
//! form is built from integer division, so `1.10 USD` never becomes `1.0999999`.
//!
//! Amounts are never negative. A charge, a refund and the total refunded so far are all
//! quantities, and the direction of a movement is carried by what it is (a refund), not by a
//! sign; a negative amount arriving from a client or a provider is therefore always a mistake.
//! Zero is a valid `Money` (nothing refunded yet); operations that need a positive amount, such
//! as a charge, check it themselves.

use std::fmt;

use super::InvalidValue;

/// An ISO 4217 currency that billing supports, with its exponent: the number of decimal digits
/// of its minor unit (JPY 0, USD 2, KWD 3). Only the table in [`Currency::SUPPORTED`] parses, so
/// a `Currency` always knows how to display and round-trip its amounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    exponent: u8,
}

impl Currency {
    /// Every supported currency, as (code, exponent). Zero-decimal, two-decimal and
    /// three-decimal currencies are all represented, so each display path is exercised.
    pub const SUPPORTED: [(&'static str, u8); 14] = [
        ("JPY", 0),
        ("KRW", 0),
        ("USD", 2),
        ("EUR", 2),
        ("GBP", 2),
        ("CHF", 2),
        ("CAD", 2),
        ("AUD", 2),
        ("SEK", 2),
        ("KWD", 3),
        ("BHD", 3),
        ("JOD", 3),
        ("OMR", 3),
        ("TND", 3),
    ];

    /// Parses a three-letter code in upper or lower case (`usd` as payment providers write it,
    /// `USD` as ISO does); mixed case, other lengths and codes outside the table are refused.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.len() != 3 || !raw.bytes().all(|byte| byte.is_ascii_alphabetic()) {
            return Err(InvalidValue::new(
                "must be a three-letter ISO 4217 currency code such as USD",
            ));
        }
        let all_upper = raw.bytes().all(|byte| byte.is_ascii_uppercase());
        let all_lower = raw.bytes().all(|byte| byte.is_ascii_lowercase());
        if !all_upper && !all_lower {
            return Err(InvalidValue::new(
                "must be a currency code in upper or lower case, not mixed",
            ));
        }
        let upper = raw.to_ascii_uppercase();
        Self::SUPPORTED
            .iter()
            .find(|(code, _)| *code == upper)
            .map(|&(code, exponent)| Self { code, exponent })
            .ok_or_else(|| {
                InvalidValue::new(format!(
                    "currency {upper} is not supported (supported: {})",
                    Self::SUPPORTED
                        .iter()
                        .map(|(code, _)| *code)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The upper-case ISO 4217 code.
    pub fn code(self) -> &'static str {
        self.code
    }

    /// The lower-case code, as Stripe-style providers expect it on the wire.
    pub fn lowercase_code(self) -> String {
        self.code.to_ascii_lowercase()
    }

    /// Decimal digits of the minor unit.
    pub fn exponent(self) -> u8 {
        self.exponent
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

/// A non-negative amount of minor units of one currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

/// Why an arithmetic operation on [`Money`] has no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyArithmeticError {
    /// The two amounts are in different currencies: adding them means nothing.
    #[error("cannot combine {left} with {right}: the currencies differ")]
    CurrencyMismatch { left: Currency, right: Currency },
    /// The result exceeds `i64::MAX` minor units.
    #[error("the result is too large")]
    Overflow,
    /// The result would be negative.
    #[error("the result would be negative")]
    Negative,
}

impl Money {
    /// Parses an amount in minor units and a currency code; says precisely which is wrong.
    pub fn parse(amount_minor: i64, currency_code: &str) -> Result<Self, InvalidValue> {
        let currency = Currency::parse(currency_code)?;
        Self::new(amount_minor, currency)
    }

    /// An amount of an already parsed currency.
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, InvalidValue> {
        if amount_minor < 0 {
            return Err(InvalidValue::new(format!(
                "amount must not be negative (got {amount_minor} minor units of {currency})"
            )));
        }
        Ok(Self {
            amount_minor,
            currency,
        })
    }

    /// Nothing, in `currency`.
    pub fn zero(currency: Currency) -> Self {
        Self {
            amount_minor: 0,
            currency,
        }
    }

    /// The amount in minor units (cents for USD, yen for JPY, fils for KWD).
    pub fn amount_minor(self) -> i64 {
        self.amount_minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }

    pub fn is_zero(self) -> bool {
        self.amount_minor == 0
    }

    /// The sum, refusing a currency mismatch and overflow.
    pub fn checked_add(self, other: Self) -> Result<Self, MoneyArithmeticError> {
        self.same_currency(other)?;
        let amount_minor = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyArithmeticError::Overflow)?;
        Ok(Self {
            amount_minor,
            currency: self.currency,
        })
    }

    /// The difference, refusing a currency mismatch and a negative result.
    pub fn checked_sub(self, other: Self) -> Result<Self, MoneyArithmeticError> {
        self.same_currency(other)?;
        let amount_minor = self.amount_minor - other.amount_minor;
        if amount_minor < 0 {
            return Err(MoneyArithmeticError::Negative);
        }
        Ok(Self {
            amount_minor,
            currency: self.currency,
        })
    }

    fn same_currency(self, other: Self) -> Result<(), MoneyArithmeticError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyArithmeticError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }
}

/// `12.34 USD`, `1000 JPY`, `1.234 KWD`: the major units, a point and exactly `exponent` digits,
/// computed with integers only.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exponent = u32::from(self.currency.exponent);
        if exponent == 0 {
            return write!(f, "{} {}", self.amount_minor, self.currency);
        }
        let scale = 10_i64.pow(exponent);
        let major = self.amount_minor / scale;
        let minor = self.amount_minor % scale;
        let width = usize::from(self.currency.exponent);
        write!(f, "{major}.{minor:0width$} {}", self.currency)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn usd(amount_minor: i64) -> Money {
        Money::parse(amount_minor, "USD").unwrap()
    }

    #[test]
    fn amounts_display_with_the_exponent_of_their_currency() {
        assert_eq!(usd(1234).to_string(), "12.34 USD");
        assert_eq!(usd(5).to_string(), "0.05 USD");
        assert_eq!(usd(0).to_string(), "0.00 USD");
        assert_eq!(Money::parse(1000, "JPY").unwrap().to_string(), "1000 JPY");
        assert_eq!(Money::parse(1234, "KWD").unwrap().to_string(), "1.234 KWD");
        assert_eq!(Money::parse(7, "BHD").unwrap().to_string(), "0.007 BHD");
        assert_eq!(
            Money::parse(i64::MAX, "EUR").unwrap().to_string(),
            "92233720368547758.07 EUR"
        );
    }

    #[test]
    fn every_supported_currency_parses_in_upper_and_lower_case_with_its_exponent() {
        for (code, exponent) in Currency::SUPPORTED {
            let upper = Currency::parse(code).unwrap();
            assert_eq!(upper.code(), code);
            assert_eq!(upper.exponent(), exponent);
            assert_eq!(Currency::parse(&code.to_ascii_lowercase()).unwrap(), upper);
        }
        assert_eq!(Currency::parse("jpy").unwrap().exponent(), 0);
        assert_eq!(Currency::parse("USD").unwrap().exponent(), 2);
        assert_eq!(Currency::parse("KWD").unwrap().exponent(), 3);
    }

    #[test]
    fn malformed_and_unsupported_currencies_are_refused_with_a_precise_message() {
        let message = |raw: &str| Currency::parse(raw).unwrap_err().to_string();
        for raw in ["", "US", "USDD", "U$D", "12€", "ÜSD"] {
            assert_eq!(
                message(raw),
                "must be a three-letter ISO 4217 currency code such as USD",
                "{raw:?}"
            );
        }
        assert_eq!(
            message("Usd"),
            "must be a currency code in upper or lower case, not mixed"
        );
        assert!(message("XYZ").starts_with("currency XYZ is not supported (supported: JPY, KRW"));
        assert!(message("btc").starts_with("currency BTC is not supported"));
    }

    #[test]
    fn a_negative_amount_is_refused_naming_the_amount_and_currency() {
        assert_eq!(
            Money::parse(-1, "USD").unwrap_err().to_string(),
            "amount must not be negative (got -1 minor units of USD)"
        );
        // The currency is checked first: a bad code is the more fundamental problem.
        assert!(
            Money::parse(-1, "XXX")
                .unwrap_err()
                .to_string()
                .starts_with("currency XXX")
        );
    }

    #[test]
    fn arithmetic_refuses_mixing_currencies_overflow_and_going_below_zero() {
        let yen = Money::parse(100, "JPY").unwrap();
        assert_eq!(
            usd(1).checked_add(yen),
            Err(MoneyArithmeticError::CurrencyMismatch {
                left: Currency::parse("USD").unwrap(),
                right: Currency::parse("JPY").unwrap(),
            })
        );
        assert!(matches!(
            usd(1).checked_sub(yen),
            Err(MoneyArithmeticError::CurrencyMismatch { .. })
        ));
        assert_eq!(
            usd(i64::MAX).checked_add(usd(1)),
            Err(MoneyArithmeticError::Overflow)
        );
        assert_eq!(
            usd(1).checked_sub(usd(2)),
            Err(MoneyArithmeticError::Negative)
        );
        assert_eq!(usd(250).checked_sub(usd(50)), Ok(usd(200)));
        assert_eq!(usd(250).checked_add(usd(50)), Ok(usd(300)));
    }

    fn currency() -> impl Strategy<Value = Currency> {
        prop::sample::select(Currency::SUPPORTED.to_vec())
            .prop_map(|(code, _)| Currency::parse(code).unwrap())
    }

    proptest! {
        #[test]
        fn any_non_negative_amount_parses_and_keeps_its_value(
            amount in 0..=i64::MAX, currency in currency()
        ) {
            let money = Money::parse(amount, currency.code()).unwrap();
            prop_assert_eq!(money.amount_minor(), amount);
            prop_assert_eq!(money.currency(), currency);
        }

        #[test]
        fn any_negative_amount_is_refused(amount in i64::MIN..0, currency in currency()) {
            prop_assert!(Money::parse(amount, currency.code()).is_err());
        }

        #[test]
        fn the_decimal_display_reads_back_as_the_same_minor_units(
            amount in 0..=i64::MAX, currency in currency()
        ) {
            let money = Money::new(amount, currency).unwrap();
            let text = money.to_string();
            let (number, code) = text.split_once(' ').unwrap();
            prop_assert_eq!(code, currency.code());
            let digits_after_point = number.split_once('.').map_or(0, |(_, minor)| minor.len());
            prop_assert_eq!(digits_after_point, usize::from(currency.exponent()));
            let reparsed: i64 = number.replace('.', "").parse().unwrap();
            prop_assert_eq!(reparsed, amount);
        }

        #[test]
        fn adding_then_subtracting_gives_back_the_original(
            a in 0..=i64::MAX / 2, b in 0..=i64::MAX / 2, currency in currency()
        ) {
            let a = Money::new(a, currency).unwrap();
            let b = Money::new(b, currency).unwrap();
            let sum = a.checked_add(b).unwrap();
            prop_assert_eq!(sum.checked_sub(b).unwrap(), a);
            prop_assert_eq!(sum.checked_sub(a).unwrap(), b);
        }

        #[test]
        fn subtraction_never_yields_a_negative_amount(
            a in 0..=i64::MAX, b in 0..=i64::MAX, currency in currency()
        ) {
            let result = Money::new(a, currency).unwrap().checked_sub(Money::new(b, currency).unwrap());
            prop_assert_eq!(result.is_ok(), a >= b);
        }

        #[test]
        fn arbitrary_text_never_panics_the_currency_parser(raw in "\\PC{0,6}") {
            let _ = Currency::parse(&raw);
        }
    }
}
