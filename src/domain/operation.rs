//! Long-running operations (AIP-151) as the service keeps them: their name, kind and state, the
//! filter ListOperations accepts, and the stored view of one operation (progress, row errors,
//! outcome). docs/operations.md.

use std::fmt;

use chrono::{DateTime, Utc};

use super::{AccountId, InvalidValue, OperationId};

/// The prefix of every operation's name: `operations/<uuid>`.
pub const OPERATION_NAME_PREFIX: &str = "operations/";

impl OperationId {
    /// Parses an operation's resource name, `operations/<uuid>`.
    pub fn parse_name(raw: &str) -> Result<Self, InvalidValue> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(InvalidValue::new("is required"));
        }
        let Some(id) = raw.strip_prefix(OPERATION_NAME_PREFIX) else {
            return Err(InvalidValue::new(
                "must be an operation name: operations/<uuid>",
            ));
        };
        Self::parse(id)
    }

    /// The operation's resource name.
    pub fn name(&self) -> String {
        format!("{OPERATION_NAME_PREFIX}{self}")
    }
}

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationKind {
    /// ImportTickets.
    ImportTickets,
}

impl OperationKind {
    pub const ALL: [Self; 1] = [Self::ImportTickets];

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImportTickets => "import_tickets",
        }
    }

    /// As a filter names it: `IMPORT_TICKETS`.
    pub fn filter_name(self) -> &'static str {
        match self {
            Self::ImportTickets => "IMPORT_TICKETS",
        }
    }

    pub fn from_stored(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }
}

/// Where an operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationState {
    /// Accepted, waiting for a worker.
    Queued,
    /// A worker holds its lease.
    Running,
    /// Done with a response.
    Succeeded,
    /// Done with an error.
    Failed,
    /// Done: stopped at a batch boundary on request.
    Cancelled,
}

impl OperationState {
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// As a filter names it: `RUNNING`.
    pub fn filter_name(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn from_stored(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == raw)
    }

    /// Whether the operation is finished (`done` in the API).
    pub fn is_done(self) -> bool {
        match self {
            Self::Queued | Self::Running => false,
            Self::Succeeded | Self::Failed | Self::Cancelled => true,
        }
    }
}

impl fmt::Display for OperationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.filter_name())
    }
}

/// ListOperations' filter (AIP-160, the subset the service needs): terms joined by `AND`, each
/// `state = <STATE>`, `kind = <KIND>` or `done = true|false`; values may be quoted; a field at
/// most once. Empty: every operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperationFilter {
    pub state: Option<OperationState>,
    pub kind: Option<OperationKind>,
    pub done: Option<bool>,
}

impl OperationFilter {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let mut filter = Self::default();
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(filter);
        }
        let words: Vec<&str> = raw.split_whitespace().collect();
        // Re-joined without spaces around `=`: `state=RUNNING AND kind = "IMPORT_TICKETS"`.
        let normalised = words
            .join(" ")
            .replace(" = ", "=")
            .replace(" =", "=")
            .replace("= ", "=");
        for term in normalised.split(" AND ") {
            let Some((field, value)) = term.split_once('=') else {
                return Err(InvalidValue::new(format!(
                    "`{term}` is not `field = value` (fields: state, kind, done; joined by AND)"
                )));
            };
            let value = value.trim().trim_matches('"');
            let duplicate = || InvalidValue::new(format!("names `{field}` twice"));
            match field.trim() {
                "state" => {
                    let state = OperationState::ALL
                        .into_iter()
                        .find(|state| state.filter_name().eq_ignore_ascii_case(value))
                        .ok_or_else(|| {
                            InvalidValue::new(format!(
                                "`{value}` is not a state: QUEUED, RUNNING, SUCCEEDED, FAILED \
                                 or CANCELLED"
                            ))
                        })?;
                    if filter.state.replace(state).is_some() {
                        return Err(duplicate());
                    }
                }
                "kind" => {
                    let kind = OperationKind::ALL
                        .into_iter()
                        .find(|kind| kind.filter_name().eq_ignore_ascii_case(value))
                        .ok_or_else(|| {
                            InvalidValue::new(format!("`{value}` is not a kind: IMPORT_TICKETS"))
                        })?;
                    if filter.kind.replace(kind).is_some() {
                        return Err(duplicate());
                    }
                }
                "done" => {
                    let done = match value {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(InvalidValue::new(format!(
                                "`{other}` is not true or false"
                            )));
                        }
                    };
                    if filter.done.replace(done).is_some() {
                        return Err(duplicate());
                    }
                }
                other => {
                    return Err(InvalidValue::new(format!(
                        "`{other}` is not a field of the filter: state, kind or done"
                    )));
                }
            }
        }
        Ok(filter)
    }

    /// A stable text of the filter, which binds page tokens to it.
    pub fn fingerprint(&self) -> String {
        format!(
            "state={};kind={};done={}",
            self.state.map_or("", OperationState::filter_name),
            self.kind.map_or("", OperationKind::filter_name),
            self.done
                .map_or("", |done| if done { "true" } else { "false" }),
        )
    }

    /// The stored states the filter admits.
    pub fn states(&self) -> Vec<OperationState> {
        OperationState::ALL
            .into_iter()
            .filter(|state| self.state.is_none_or(|wanted| wanted == *state))
            .filter(|state| self.done.is_none_or(|done| done == state.is_done()))
            .collect()
    }
}

/// One refused row of an import: its number in the file, the column, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowError {
    pub row: i64,
    pub field: String,
    pub reason: String,
}

/// How an operation that failed ended: a google.rpc.Code number and a message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperationFailure {
    pub code: i32,
    pub message: String,
}

/// An operation as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub id: OperationId,
    pub account_id: AccountId,
    pub kind: OperationKind,
    pub state: OperationState,
    pub rows_total: i64,
    pub rows_read: i64,
    pub rows_imported: i64,
    pub rows_failed: i64,
    /// The first refused rows, in file order.
    pub row_errors: Vec<RowError>,
    pub cancel_requested: bool,
    /// Set exactly when the state is FAILED.
    pub failure: Option<OperationFailure>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
}

impl Operation {
    /// `rows_read` of `rows_total`, 0 to 100 (100 for an empty file).
    pub fn percent(&self) -> i32 {
        if self.rows_total <= 0 {
            return if self.state.is_done() { 100 } else { 0 };
        }
        let percent = self.rows_read.saturating_mul(100) / self.rows_total;
        i32::try_from(percent.clamp(0, 100)).unwrap_or(100)
    }

    /// Whether more rows were refused than the stored errors report (a row may have several).
    pub fn row_errors_truncated(&self) -> bool {
        let mut rows: Vec<i64> = self.row_errors.iter().map(|error| error.row).collect();
        rows.dedup();
        usize::try_from(self.rows_failed).unwrap_or(usize::MAX) > rows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_name_is_the_prefix_and_a_uuid() {
        let id = OperationId::generate();
        assert_eq!(OperationId::parse_name(&id.name()), Ok(id));
        assert!(OperationId::parse_name(&id.to_string()).is_err());
        assert!(OperationId::parse_name("operations/x").is_err());
        assert!(OperationId::parse_name("").is_err());
    }

    #[test]
    fn a_filter_names_state_kind_and_done_joined_by_and() {
        let filter =
            OperationFilter::parse(r#"state = RUNNING AND kind="IMPORT_TICKETS""#).expect("valid");
        assert_eq!(filter.state, Some(OperationState::Running));
        assert_eq!(filter.kind, Some(OperationKind::ImportTickets));
        assert_eq!(filter.states(), [OperationState::Running]);
        let done = OperationFilter::parse("done = true").expect("valid");
        assert_eq!(
            done.states(),
            [
                OperationState::Succeeded,
                OperationState::Failed,
                OperationState::Cancelled
            ]
        );
        assert_eq!(OperationFilter::parse("").expect("empty").states().len(), 5);
    }

    #[test]
    fn a_filter_with_an_unknown_field_value_or_a_repeated_field_is_refused() {
        assert!(OperationFilter::parse("owner = me").is_err());
        assert!(OperationFilter::parse("state = DONE").is_err());
        assert!(OperationFilter::parse("state = RUNNING AND state = QUEUED").is_err());
        assert!(OperationFilter::parse("state RUNNING").is_err());
        assert!(OperationFilter::parse("done = maybe").is_err());
    }

    #[test]
    fn percent_is_rows_read_of_rows_total() {
        let now = Utc::now();
        let mut operation = Operation {
            id: OperationId::generate(),
            account_id: AccountId::generate(),
            kind: OperationKind::ImportTickets,
            state: OperationState::Running,
            rows_total: 200,
            rows_read: 50,
            rows_imported: 49,
            rows_failed: 1,
            row_errors: Vec::new(),
            cancel_requested: false,
            failure: None,
            created_at: now,
            updated_at: now,
            done_at: None,
        };
        assert_eq!(operation.percent(), 25);
        assert!(operation.row_errors_truncated());
        operation.rows_total = 0;
        assert_eq!(operation.percent(), 0);
    }
}
