//! Custom fields: the typed fields an account's admins define for its tickets (plan, order
//! number, product area), and the rule that checks a value against its field's definition on
//! every write path (create, update, import). A value is stored as JSON of one fixed shape per
//! type (see [`FieldValue::to_json`]), so that filters compare like with like and a retired or
//! changed field leaves the values already stored readable.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use regex::Regex;
use uuid::Uuid;

use super::InvalidValue;

/// The longest key, in characters.
pub const MAX_KEY_CHARS: usize = 40;
/// The most options of a choice field.
pub const MAX_OPTIONS: usize = 200;
/// The longest value of a text field, and of a long text field, in characters.
pub const MAX_TEXT_CHARS: usize = 1_000;
pub const MAX_LONG_TEXT_CHARS: usize = 20_000;
/// The longest pattern of a pattern field, in characters (a Rust regex runs in linear time, so
/// its size is the only cost to bound).
pub const MAX_PATTERN_CHARS: usize = 500;
/// The most fields an account defines.
pub const MAX_FIELDS_PER_ACCOUNT: usize = 100;
/// The longest title and description of a field, in characters.
pub const MAX_TITLE_CHARS: usize = 100;
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// The largest position a field is shown at.
pub const MAX_POSITION: i32 = 10_000;
/// The largest integer a field holds: what a JSON number carries exactly (2^53 - 1).
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// A field's key, what the API and filters name it by (`custom_fields.plan`): lower case
/// letters, digits and `_`, starting with a letter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldKey(String);

impl FieldKey {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let length = raw.chars().count();
        let well_formed = raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !well_formed || length > MAX_KEY_CHARS {
            return Err(InvalidValue::new(format!(
                "a field key is 1 to {MAX_KEY_CHARS} lower-case letters, digits and _, starting \
                 with a letter (such as order_number)"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a field holds.
#[derive(Clone, Debug)]
pub enum FieldKind {
    Text,
    LongText,
    Integer,
    Decimal,
    Checkbox,
    Date,
    SingleChoice(Choices),
    MultipleChoice(Choices),
    /// One line of text that matches the whole pattern (an order number: `ORD-[0-9]{6}`).
    Pattern(FieldPattern),
}

impl FieldKind {
    /// The type's stored name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::LongText => "long_text",
            Self::Integer => "integer",
            Self::Decimal => "decimal",
            Self::Checkbox => "checkbox",
            Self::Date => "date",
            Self::SingleChoice(_) => "single_choice",
            Self::MultipleChoice(_) => "multiple_choice",
            Self::Pattern(_) => "pattern",
        }
    }

    /// The names of the nine kinds, as stored and as the API's enum names them in lower case.
    pub const NAMES: [&'static str; 9] = [
        "text",
        "long_text",
        "integer",
        "decimal",
        "checkbox",
        "date",
        "single_choice",
        "multiple_choice",
        "pattern",
    ];

    /// The kind named `type_name`, with its options (choice kinds) or pattern (the pattern
    /// kind); what a kind does not take must be absent. The error names the part refused:
    /// `"choices"` (with the index of the option, when one is), `"pattern"` or `"kind"`.
    pub fn parse(
        type_name: &str,
        choices: &[String],
        pattern: Option<&str>,
    ) -> Result<Self, KindProblem> {
        let choice_kind = matches!(type_name, "single_choice" | "multiple_choice");
        if !choice_kind && !choices.is_empty() {
            return Err(KindProblem::Kind(InvalidValue::new(format!(
                "a {type_name} field has no options: choices go with SINGLE_CHOICE or \
                 MULTIPLE_CHOICE"
            ))));
        }
        if type_name != "pattern" && pattern.is_some_and(|pattern| !pattern.is_empty()) {
            return Err(KindProblem::Kind(InvalidValue::new(format!(
                "a {type_name} field has no pattern: a pattern goes with PATTERN"
            ))));
        }
        let options =
            || Choices::parse(choices).map_err(|(at, problem)| KindProblem::Choices(at, problem));
        Ok(match type_name {
            "text" => Self::Text,
            "long_text" => Self::LongText,
            "integer" => Self::Integer,
            "decimal" => Self::Decimal,
            "checkbox" => Self::Checkbox,
            "date" => Self::Date,
            "single_choice" => Self::SingleChoice(options()?),
            "multiple_choice" => Self::MultipleChoice(options()?),
            "pattern" => Self::Pattern(
                FieldPattern::parse(pattern.unwrap_or_default()).map_err(KindProblem::Pattern)?,
            ),
            other => {
                return Err(KindProblem::Kind(InvalidValue::new(format!(
                    "{other:?} is not a kind of field; the kinds are {}",
                    Self::NAMES.join(", ")
                ))));
            }
        })
    }

    /// The options of a choice kind (empty for the others).
    pub fn choices(&self) -> &[String] {
        match self {
            Self::SingleChoice(choices) | Self::MultipleChoice(choices) => choices.as_slice(),
            Self::Text
            | Self::LongText
            | Self::Integer
            | Self::Decimal
            | Self::Checkbox
            | Self::Date
            | Self::Pattern(_) => &[],
        }
    }

    /// The pattern of the pattern kind.
    pub fn pattern(&self) -> Option<&str> {
        match self {
            Self::Pattern(pattern) => Some(pattern.as_str()),
            Self::Text
            | Self::LongText
            | Self::Integer
            | Self::Decimal
            | Self::Checkbox
            | Self::Date
            | Self::SingleChoice(_)
            | Self::MultipleChoice(_) => None,
        }
    }

    /// The same kind with other options (a choice kind) or another pattern (the pattern kind):
    /// what an update may change of a kind, never its type. Values already stored stay as
    /// they are, readable; only new writes meet the new options or pattern.
    pub fn with_choices(&self, choices: &[String]) -> Result<Self, KindProblem> {
        match self {
            Self::SingleChoice(_) | Self::MultipleChoice(_) => {
                Self::parse(self.type_name(), choices, None)
            }
            Self::Text
            | Self::LongText
            | Self::Integer
            | Self::Decimal
            | Self::Checkbox
            | Self::Date
            | Self::Pattern(_) => Err(KindProblem::Kind(InvalidValue::new(format!(
                "a {} field has no options, and a field's kind never changes",
                self.type_name()
            )))),
        }
    }

    pub fn with_pattern(&self, pattern: &str) -> Result<Self, KindProblem> {
        match self {
            Self::Pattern(_) => Self::parse("pattern", &[], Some(pattern)),
            Self::Text
            | Self::LongText
            | Self::Integer
            | Self::Decimal
            | Self::Checkbox
            | Self::Date
            | Self::SingleChoice(_)
            | Self::MultipleChoice(_) => Err(KindProblem::Kind(InvalidValue::new(format!(
                "a {} field has no pattern, and a field's kind never changes",
                self.type_name()
            )))),
        }
    }

    /// Whether values of this kind are ordered (`<`, `>` in a filter, an order by).
    pub fn is_ordered(&self) -> bool {
        matches!(self, Self::Integer | Self::Decimal | Self::Date)
    }
}

/// Which part of a field's kind was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KindProblem {
    Kind(InvalidValue),
    /// The options, and the index of the one refused when one is.
    Choices(Option<usize>, InvalidValue),
    Pattern(InvalidValue),
}

/// A field of an account's catalogue, as its admins defined it.
#[derive(Clone, Debug)]
pub struct CustomField {
    pub id: Uuid,
    pub account_id: Uuid,
    pub key: FieldKey,
    pub title: String,
    pub description: String,
    pub kind: FieldKind,
    pub customer_visible: bool,
    pub customer_editable: bool,
    pub required_to_solve: bool,
    pub position: i32,
    pub retired_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl CustomField {
    pub fn is_retired(&self) -> bool {
        self.retired_at.is_some()
    }
}

/// An account's fields, read once per write that carries values (one query), in the order
/// they are shown.
#[derive(Clone, Debug, Default)]
pub struct Catalogue(Vec<CustomField>);

impl Catalogue {
    pub fn new(mut fields: Vec<CustomField>) -> Self {
        fields.sort_by(|a, b| (a.position, &a.key).cmp(&(b.position, &b.key)));
        Self(fields)
    }

    /// The field with this key, retired or not.
    pub fn find(&self, key: &str) -> Option<&CustomField> {
        self.0.iter().find(|field| field.key.as_str() == key)
    }

    pub fn fields(&self) -> &[CustomField] {
        &self.0
    }
}

/// The custom field values a ticket carries, by key, as stored (each of
/// [`FieldValue::to_json`]'s shape when it was written). Read back as stored and never checked
/// again: a field changed or retired since leaves its values readable.
pub type StoredValues = serde_json::Map<String, serde_json::Value>;

/// Why a value sent for a key was refused: the key is not a field to write, or the value is
/// not of its field's type.
pub type ValueProblems = Vec<(String, InvalidValue)>;

impl Catalogue {
    /// The values a customer sees: those of fields that are `customer_visible`.
    pub fn visible_to_customers(&self, values: StoredValues) -> StoredValues {
        values
            .into_iter()
            .filter(|(key, _)| self.find(key).is_some_and(|field| field.customer_visible))
            .collect()
    }

    /// The fields customers see (`customer_visible`), retired ones included.
    pub fn seen_by_customers(self) -> Self {
        Self(
            self.0
                .into_iter()
                .filter(|field| field.customer_visible)
                .collect(),
        )
    }

    /// The live field `key` a caller may write (a customer: only a `customer_editable` one).
    pub fn writable(&self, key: &str, customer: bool) -> Result<&CustomField, InvalidValue> {
        let field = self
            .find(key)
            .filter(|field| !customer || field.customer_visible)
            .ok_or_else(|| {
                InvalidValue::new(format!(
                    "the account has no custom field with the key {key:?}"
                ))
            })?;
        if field.is_retired() {
            return Err(InvalidValue::new(format!(
                "the custom field {key:?} is retired: its values stay readable, no new ones are \
                 written"
            )));
        }
        if customer && !field.customer_editable {
            return Err(InvalidValue::new(format!(
                "the custom field {key:?} is set by agents"
            )));
        }
        Ok(field)
    }

    /// Checks each value sent (`raw`, by key) against its field: `Ok` maps each key to its
    /// stored JSON, `None` for null (no value). Every refused key is reported, by key.
    pub fn check_values<'a>(
        &self,
        raw: impl IntoIterator<Item = (&'a str, &'a RawValue)>,
        customer: bool,
    ) -> Result<Vec<(String, Option<serde_json::Value>)>, ValueProblems> {
        let mut checked = Vec::new();
        let mut problems = Vec::new();
        for (key, value) in raw {
            match self
                .writable(key, customer)
                .and_then(|field| parse_value(&field.kind, value))
            {
                Ok(value) => checked.push((key.to_owned(), value.map(|value| value.to_json()))),
                Err(problem) => problems.push((key.to_owned(), problem)),
            }
        }
        if problems.is_empty() {
            Ok(checked)
        } else {
            problems.sort_by(|a, b| a.0.cmp(&b.0));
            Err(problems)
        }
    }

    /// The live fields required to solve a ticket that `values` has no value for.
    pub fn missing_to_solve(&self, values: &StoredValues) -> Vec<&CustomField> {
        self.0
            .iter()
            .filter(|field| {
                field.required_to_solve
                    && !field.is_retired()
                    && values
                        .get(field.key.as_str())
                        .is_none_or(serde_json::Value::is_null)
            })
            .collect()
    }
}

/// A field's title: one line, 1 to [`MAX_TITLE_CHARS`] characters, trimmed.
pub fn parse_title(raw: &str) -> Result<String, InvalidValue> {
    let title = raw.trim();
    if title.is_empty()
        || title.chars().count() > MAX_TITLE_CHARS
        || title.chars().any(char::is_control)
    {
        return Err(InvalidValue::new(format!(
            "a title is one line of 1 to {MAX_TITLE_CHARS} characters"
        )));
    }
    Ok(title.to_owned())
}

/// A field's description (help for whoever fills it in): at most [`MAX_DESCRIPTION_CHARS`].
pub fn parse_description(raw: &str) -> Result<String, InvalidValue> {
    if raw.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(InvalidValue::new(format!(
            "at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(raw.trim().to_owned())
}

/// Where a field is shown among its account's fields: 0 to [`MAX_POSITION`].
pub fn parse_position(raw: i32) -> Result<i32, InvalidValue> {
    if !(0..=MAX_POSITION).contains(&raw) {
        return Err(InvalidValue::new(format!("must be 0 to {MAX_POSITION}")));
    }
    Ok(raw)
}

/// The options of a choice field: each a value as stored (a key-like word), distinct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choices(Vec<String>);

impl Choices {
    /// The options in their order; the error names the first refused one by its index.
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, (Option<usize>, InvalidValue)> {
        if raw.is_empty() {
            return Err((None, InvalidValue::new("a choice field needs options")));
        }
        if raw.len() > MAX_OPTIONS {
            return Err((
                None,
                InvalidValue::new(format!(
                    "a choice field has at most {MAX_OPTIONS} options, this one {}",
                    raw.len()
                )),
            ));
        }
        let mut seen = BTreeSet::new();
        let mut options = Vec::with_capacity(raw.len());
        for (index, option) in raw.iter().enumerate() {
            let option = option.as_ref();
            FieldKey::parse(option).map_err(|_| {
                (
                    Some(index),
                    InvalidValue::new(
                        "an option is stored as 1 to 40 lower-case letters, digits and _, \
                         starting with a letter (such as pro_plan)",
                    ),
                )
            })?;
            // An option listed twice is kept once, where it first appears: the list is a set.
            if seen.insert(option) {
                options.push(option.to_owned());
            }
        }
        Ok(Self(options))
    }

    pub fn contains(&self, option: &str) -> bool {
        self.0.iter().any(|one| one == option)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    fn refuse(&self, given: &str) -> InvalidValue {
        let shown: Vec<&str> = self.0.iter().take(10).map(String::as_str).collect();
        let more = if self.0.len() > shown.len() {
            ", ..."
        } else {
            ""
        };
        InvalidValue::new(format!(
            "{given:?} is not an option of this field ({}{more})",
            shown.join(", ")
        ))
    }
}

/// A pattern field's regular expression, matched against the whole value.
#[derive(Clone, Debug)]
pub struct FieldPattern {
    source: String,
    whole: Regex,
}

impl FieldPattern {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.is_empty() || raw.chars().count() > MAX_PATTERN_CHARS {
            return Err(InvalidValue::new(format!(
                "a pattern is 1 to {MAX_PATTERN_CHARS} characters"
            )));
        }
        let whole = regex::RegexBuilder::new(&format!("^(?:{raw})$"))
            .size_limit(1 << 20)
            .build()
            .map_err(|error| InvalidValue::new(format!("not a regular expression: {error}")))?;
        Ok(Self {
            source: raw.to_owned(),
            whole,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl PartialEq for FieldPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// A value as it arrives, before its field's type is known (the JSON-like shape of
/// `google.protobuf.Value`, without the wire type).
#[derive(Clone, Debug, PartialEq)]
pub enum RawValue {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    List(Vec<RawValue>),
}

impl RawValue {
    fn describe(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Number(_) => "a number",
            Self::Text(_) => "a string",
            Self::List(_) => "a list",
        }
    }
}

/// A field's value, checked against its definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    Text(String),
    Integer(i64),
    /// A decimal in its canonical text (`-12.5`, `0.25`): no exponent, no trailing zeros.
    Decimal(String),
    Checkbox(bool),
    Date(NaiveDate),
    Choice(String),
    Choices(BTreeSet<String>),
}

impl FieldValue {
    /// The stored JSON: a string for text, pattern, decimal (exact), date (`YYYY-MM-DD`) and
    /// single choice; a number for an integer; a boolean for a checkbox; an array of strings for
    /// a multiple choice, sorted.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as Json;
        match self {
            Self::Text(text) | Self::Decimal(text) | Self::Choice(text) => Json::from(text.clone()),
            Self::Integer(number) => Json::from(*number),
            Self::Checkbox(checked) => Json::from(*checked),
            Self::Date(date) => Json::from(date.format("%Y-%m-%d").to_string()),
            Self::Choices(options) => Json::from(options.iter().cloned().collect::<Vec<_>>()),
        }
    }
}

/// A value a filter compares `kind`'s values with, written as text (`custom_fields.seats = 12`),
/// in the stored shape. Typed by the kind only: a choice or pattern field's current options and
/// pattern do not restrict it, since tickets keep values written under older definitions.
pub fn filter_value(kind: &FieldKind, text: &str) -> Result<serde_json::Value, InvalidValue> {
    let stored = |raw: RawValue| {
        parse_value(kind, &raw)?
            .map(|value| value.to_json())
            .ok_or_else(|| InvalidValue::new("expected a value"))
    };
    match kind {
        FieldKind::Checkbox => match text {
            "true" => stored(RawValue::Bool(true)),
            "false" => stored(RawValue::Bool(false)),
            _ => Err(InvalidValue::new(
                "this checkbox field compares with true or false",
            )),
        },
        FieldKind::Integer | FieldKind::Decimal | FieldKind::Date => {
            stored(RawValue::Text(text.to_owned()))
        }
        FieldKind::Text
        | FieldKind::LongText
        | FieldKind::SingleChoice(_)
        | FieldKind::MultipleChoice(_)
        | FieldKind::Pattern(_) => {
            if text.is_empty() {
                return Err(InvalidValue::new("expected a value, not an empty text"));
            }
            Ok(serde_json::Value::from(text))
        }
    }
}

/// Parses `raw` as a value of `kind`. `Ok(None)` for null (clears the field).
pub fn parse_value(kind: &FieldKind, raw: &RawValue) -> Result<Option<FieldValue>, InvalidValue> {
    if *raw == RawValue::Null {
        return Ok(None);
    }
    let wrong = |expected: &str| {
        InvalidValue::new(format!(
            "this {} field takes {expected}, not {}",
            kind.type_name(),
            raw.describe()
        ))
    };
    let value = match kind {
        FieldKind::Text => {
            let RawValue::Text(text) = raw else {
                return Err(wrong("a string"));
            };
            text_within(text, MAX_TEXT_CHARS, true)?;
            FieldValue::Text(text.clone())
        }
        FieldKind::LongText => {
            let RawValue::Text(text) = raw else {
                return Err(wrong("a string"));
            };
            text_within(text, MAX_LONG_TEXT_CHARS, false)?;
            FieldValue::Text(text.clone())
        }
        FieldKind::Pattern(pattern) => {
            let RawValue::Text(text) = raw else {
                return Err(wrong("a string"));
            };
            text_within(text, MAX_TEXT_CHARS, true)?;
            if !pattern.whole.is_match(text) {
                return Err(InvalidValue::new(format!(
                    "{text:?} does not match this field's pattern {}",
                    pattern.source
                )));
            }
            FieldValue::Text(text.clone())
        }
        FieldKind::Integer => FieldValue::Integer(match raw {
            RawValue::Number(number) => integer_of(*number)?,
            RawValue::Text(text) => text
                .parse::<i64>()
                .ok()
                .filter(|number| number.abs() <= MAX_SAFE_INTEGER)
                .ok_or_else(|| {
                    InvalidValue::new(format!(
                        "{text:?} is not a whole number between -{MAX_SAFE_INTEGER} and \
                         {MAX_SAFE_INTEGER}"
                    ))
                })?,
            RawValue::Null | RawValue::Bool(_) | RawValue::List(_) => {
                return Err(wrong("a whole number"));
            }
        }),
        FieldKind::Decimal => FieldValue::Decimal(match raw {
            RawValue::Number(number) if number.is_finite() => {
                canonical_decimal(&number.to_string())?
            }
            RawValue::Text(text) => canonical_decimal(text)?,
            RawValue::Null | RawValue::Bool(_) | RawValue::Number(_) | RawValue::List(_) => {
                return Err(wrong("a decimal number"));
            }
        }),
        FieldKind::Checkbox => {
            let RawValue::Bool(checked) = raw else {
                return Err(wrong("true or false"));
            };
            FieldValue::Checkbox(*checked)
        }
        FieldKind::Date => {
            let RawValue::Text(text) = raw else {
                return Err(wrong("a date such as \"2026-11-28\""));
            };
            FieldValue::Date(
                NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .filter(|_| text.len() == 10)
                    .ok_or_else(|| {
                        InvalidValue::new(format!("{text:?} is not a date such as \"2026-11-28\""))
                    })?,
            )
        }
        FieldKind::SingleChoice(choices) => {
            let RawValue::Text(text) = raw else {
                return Err(wrong("one of its options"));
            };
            if !choices.contains(text) {
                return Err(choices.refuse(text));
            }
            FieldValue::Choice(text.clone())
        }
        FieldKind::MultipleChoice(choices) => {
            let RawValue::List(items) = raw else {
                return Err(wrong("a list of its options"));
            };
            let mut chosen = BTreeSet::new();
            for item in items {
                let RawValue::Text(text) = item else {
                    return Err(InvalidValue::new(format!(
                        "this multiple_choice field lists options, not {}",
                        item.describe()
                    )));
                };
                if !choices.contains(text) {
                    return Err(choices.refuse(text));
                }
                chosen.insert(text.clone());
            }
            if chosen.is_empty() {
                return Ok(None);
            }
            FieldValue::Choices(chosen)
        }
    };
    Ok(Some(value))
}

fn text_within(text: &str, limit: usize, one_line: bool) -> Result<(), InvalidValue> {
    let length = text.chars().count();
    if length > limit {
        return Err(InvalidValue::new(format!(
            "at most {limit} characters, this value is {length}"
        )));
    }
    if one_line && text.chars().any(char::is_control) {
        return Err(InvalidValue::new(
            "one line of text: no line breaks or control characters (a long_text field takes them)",
        ));
    }
    if text.trim().is_empty() {
        return Err(InvalidValue::new(
            "blank text: send null to clear the field",
        ));
    }
    Ok(())
}

fn integer_of(number: f64) -> Result<i64, InvalidValue> {
    if number.fract() != 0.0 || !number.is_finite() || number.abs() > MAX_SAFE_INTEGER as f64 {
        return Err(InvalidValue::new(format!(
            "{number} is not a whole number between -{MAX_SAFE_INTEGER} and {MAX_SAFE_INTEGER}"
        )));
    }
    // Exact: the value is whole and within 2^53.
    Ok(number as i64)
}

/// `raw` as a canonical decimal: an optional `-`, digits, and a fraction without trailing
/// zeros; at most 18 digits before the point and 9 after.
fn canonical_decimal(raw: &str) -> Result<String, InvalidValue> {
    let refuse = || {
        InvalidValue::new(format!(
            "{raw:?} is not a decimal number such as \"12.50\" (at most 18 digits before the \
             point and 9 after)"
        ))
    };
    let (negative, unsigned) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || unsigned.ends_with('.') || !digits(whole) || !digits(fraction) {
        return Err(refuse());
    }
    let whole = whole.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    if whole.len() > 18 || fraction.len() > 9 {
        return Err(refuse());
    }
    let whole = if whole.is_empty() { "0" } else { whole };
    let zero = whole == "0" && fraction.is_empty();
    let sign = if negative && !zero { "-" } else { "" };
    Ok(if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> RawValue {
        RawValue::Text(value.to_owned())
    }

    fn choices(options: &[&str]) -> Choices {
        Choices::parse(options).unwrap()
    }

    #[test]
    fn a_kind_takes_options_or_a_pattern_only_when_its_type_has_them() {
        let options = vec!["free".to_owned(), "pro".to_owned()];
        assert!(matches!(
            FieldKind::parse("single_choice", &options, None),
            Ok(FieldKind::SingleChoice(_))
        ));
        assert!(matches!(
            FieldKind::parse("single_choice", &[], None),
            Err(KindProblem::Choices(None, _))
        ));
        assert!(matches!(
            FieldKind::parse("text", &options, None),
            Err(KindProblem::Kind(_))
        ));
        assert!(matches!(
            FieldKind::parse("integer", &[], Some("[0-9]+")),
            Err(KindProblem::Kind(_))
        ));
        let twice = vec!["pro".to_owned(), "free".to_owned(), "pro".to_owned()];
        assert_eq!(
            FieldKind::parse("single_choice", &twice, None)
                .unwrap()
                .choices(),
            ["pro", "free"]
        );
        assert!(matches!(
            FieldKind::parse("colour", &[], None),
            Err(KindProblem::Kind(_))
        ));
        let order = FieldKind::parse("pattern", &[], Some("ORD-[0-9]{6}")).unwrap();
        assert_eq!(order.pattern(), Some("ORD-[0-9]{6}"));
        assert!(order.with_choices(&options).is_err());
        let single = FieldKind::parse("single_choice", &options, None).unwrap();
        let grown = single.with_choices(&["free".into(), "pro".into(), "gold".into()]);
        assert_eq!(grown.unwrap().choices().len(), 3);
        for name in FieldKind::NAMES {
            let kind = FieldKind::parse(
                name,
                if name.ends_with("choice") {
                    &options
                } else {
                    &[]
                },
                (name == "pattern").then_some("x"),
            )
            .unwrap();
            assert_eq!(kind.type_name(), name);
        }
    }

    #[test]
    fn a_key_is_a_lower_case_word_starting_with_a_letter() {
        assert!(FieldKey::parse("order_number").is_ok());
        for bad in ["", "Order", "1st", "a-b", "a.b", &"k".repeat(41)] {
            assert!(FieldKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_type_takes_its_own_shape_and_names_what_it_wanted() {
        let refusal = parse_value(&FieldKind::Integer, &text("ten")).unwrap_err();
        assert!(
            refusal.description().contains("not a whole number"),
            "{refusal}"
        );
        let refusal = parse_value(&FieldKind::Checkbox, &text("yes")).unwrap_err();
        assert_eq!(
            refusal.description(),
            "this checkbox field takes true or false, not a string"
        );
        assert_eq!(
            parse_value(&FieldKind::Checkbox, &RawValue::Bool(true)).unwrap(),
            Some(FieldValue::Checkbox(true))
        );
        assert_eq!(
            parse_value(&FieldKind::Text, &RawValue::Null).unwrap(),
            None
        );
    }

    #[test]
    fn integers_are_whole_and_exact_in_json() {
        let kind = FieldKind::Integer;
        assert_eq!(
            parse_value(&kind, &RawValue::Number(42.0)).unwrap(),
            Some(FieldValue::Integer(42))
        );
        assert_eq!(
            parse_value(&kind, &text("-7")).unwrap(),
            Some(FieldValue::Integer(-7))
        );
        assert!(parse_value(&kind, &RawValue::Number(1.5)).is_err());
        assert!(parse_value(&kind, &RawValue::Number(9.1e15)).is_err());
        assert!(parse_value(&kind, &text("9007199254740992")).is_err());
    }

    #[test]
    fn decimals_are_stored_exactly_in_one_canonical_form() {
        let kind = FieldKind::Decimal;
        let canonical = |raw: &RawValue| match parse_value(&kind, raw).unwrap() {
            Some(FieldValue::Decimal(text)) => text,
            other => panic!("{other:?}"),
        };
        assert_eq!(canonical(&text("012.500")), "12.5");
        assert_eq!(canonical(&text("-0.0")), "0");
        assert_eq!(canonical(&RawValue::Number(0.25)), "0.25");
        assert_eq!(canonical(&text("3")), "3");
        for bad in [
            "1e3",
            ".5",
            "1.",
            "--1",
            "1.0000000001",
            "1234567890123456789",
        ] {
            assert!(parse_value(&kind, &text(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_are_calendar_days() {
        assert_eq!(
            parse_value(&FieldKind::Date, &text("2026-02-28")).unwrap(),
            Some(FieldValue::Date(
                NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()
            ))
        );
        for bad in [
            "2026-02-30",
            "2026-2-1",
            "28/02/2026",
            "2026-02-28T00:00:00Z",
        ] {
            assert!(parse_value(&FieldKind::Date, &text(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn choices_take_only_their_options_and_a_multiple_choice_is_a_set() {
        let single = FieldKind::SingleChoice(choices(&["free", "pro"]));
        assert!(parse_value(&single, &text("pro")).is_ok());
        let refusal = parse_value(&single, &text("gold")).unwrap_err();
        assert_eq!(
            refusal.description(),
            "\"gold\" is not an option of this field (free, pro)"
        );
        let multiple = FieldKind::MultipleChoice(choices(&["api", "ui", "billing"]));
        let value = parse_value(
            &multiple,
            &RawValue::List(vec![text("ui"), text("api"), text("ui")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(value.to_json(), serde_json::json!(["api", "ui"]));
        assert_eq!(
            parse_value(&multiple, &RawValue::List(vec![])).unwrap(),
            None
        );
        assert_eq!(
            Choices::parse(&["a", "b", "a"]).unwrap().as_slice(),
            ["a", "b"]
        );
        assert!(Choices::parse::<&str>(&[]).is_err());
    }

    #[test]
    fn text_is_bounded_one_line_unless_long_and_pattern_matches_whole() {
        assert!(parse_value(&FieldKind::Text, &text("a\nb")).is_err());
        assert!(parse_value(&FieldKind::LongText, &text("a\nb")).is_ok());
        assert!(parse_value(&FieldKind::Text, &text(&"x".repeat(MAX_TEXT_CHARS + 1))).is_err());
        assert!(parse_value(&FieldKind::Text, &text("  ")).is_err());
        let order = FieldKind::Pattern(FieldPattern::parse("ORD-[0-9]{6}").unwrap());
        assert!(parse_value(&order, &text("ORD-123456")).is_ok());
        let refusal = parse_value(&order, &text("xORD-123456")).unwrap_err();
        assert!(
            refusal.description().contains("does not match"),
            "{refusal}"
        );
        assert!(FieldPattern::parse("(unclosed").is_err());
    }
}
