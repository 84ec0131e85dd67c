//! The file of an import (ImportTickets): NDJSON or CSV read into rows, and each row validated
//! with the very parsers CreateTicket uses (`TicketSubject`, `TicketDescription`,
//! `TicketPriority`, `Email`, `UserId`), so a row is accepted exactly when the same ticket sent
//! by an agent to CreateTicket would pass its field checks. docs/operations.md.

use std::collections::BTreeMap;

use super::{
    Email, InvalidValue, RowError, TagSet, TicketDescription, TicketPriority, TicketSubject, UserId,
};

/// The formats an import reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    /// One JSON object per line; blank lines are skipped.
    Ndjson,
    /// RFC 4180 CSV with a header record.
    Csv,
}

impl ImportFormat {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::Csv => "csv",
        }
    }

    pub fn from_stored(raw: &str) -> Option<Self> {
        match raw {
            "ndjson" => Some(Self::Ndjson),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }
}

/// The columns a row may name; the first three are required.
pub const IMPORT_COLUMNS: [&str; 6] = [
    "subject",
    "description",
    "requester_email",
    "priority",
    "assignee_id",
    "tags",
];

/// How many columns are required (the first of [`IMPORT_COLUMNS`]).
const REQUIRED_COLUMNS: usize = 3;

/// One row of the file, as read: its number in the file and its columns' text, or why it does
/// not read as a row at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportRow {
    /// The line (NDJSON) or record (CSV, the header being 1).
    pub number: i64,
    pub columns: Result<BTreeMap<String, String>, RowError>,
}

/// A row that passed every field check: a ticket to insert, unless the database says otherwise
/// (an assignee who is no agent of the account, the requester's open-ticket limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportTicket {
    pub row: i64,
    pub subject: TicketSubject,
    pub description: TicketDescription,
    pub priority: TicketPriority,
    pub requester_email: Email,
    pub assignee: Option<UserId>,
    pub tags: TagSet,
}

/// Reads `content` as `format` into rows. An error means the file is not of the format at all:
/// NDJSON whose first non-blank line is no JSON object, CSV that does not parse or whose header
/// lacks a required column or names an unknown one.
pub fn read_rows(format: ImportFormat, content: &str) -> Result<Vec<ImportRow>, InvalidValue> {
    match format {
        ImportFormat::Ndjson => read_ndjson(content),
        ImportFormat::Csv => read_csv(content),
    }
}

fn read_ndjson(content: &str) -> Result<Vec<ImportRow>, InvalidValue> {
    let mut rows = Vec::new();
    for (index, line) in content.lines().enumerate() {
        let number = i64::try_from(index).unwrap_or(i64::MAX).saturating_add(1);
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<serde_json::Value>(line);
        let columns = match parsed {
            Ok(serde_json::Value::Object(object)) => ndjson_columns(number, object),
            Ok(_) | Err(_) if rows.is_empty() => {
                return Err(InvalidValue::new(format!(
                    "is not NDJSON: line {number} is not a JSON object"
                )));
            }
            Ok(_) => Err(row_error(number, "row", "is not a JSON object")),
            Err(error) => Err(row_error(
                number,
                "row",
                &format!("is not a JSON object: {error}"),
            )),
        };
        rows.push(ImportRow { number, columns });
    }
    Ok(rows)
}

fn ndjson_columns(
    number: i64,
    object: serde_json::Map<String, serde_json::Value>,
) -> Result<BTreeMap<String, String>, RowError> {
    let mut columns = BTreeMap::new();
    for (key, value) in object {
        if !IMPORT_COLUMNS.contains(&key.as_str()) {
            return Err(row_error(number, &key, &not_a_column()));
        }
        let text = match value {
            serde_json::Value::String(text) => text,
            serde_json::Value::Null => String::new(),
            // A tag holds no comma or space (domain/tag.rs): joined, the list reads back whole.
            serde_json::Value::Array(items) if key == "tags" => {
                let mut tags = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        serde_json::Value::String(tag) => tags.push(tag),
                        serde_json::Value::Null
                        | serde_json::Value::Bool(_)
                        | serde_json::Value::Number(_)
                        | serde_json::Value::Array(_)
                        | serde_json::Value::Object(_) => {
                            return Err(row_error(number, &key, "must be a list of strings"));
                        }
                    }
                }
                tags.join(",")
            }
            serde_json::Value::Bool(_)
            | serde_json::Value::Number(_)
            | serde_json::Value::Array(_)
            | serde_json::Value::Object(_) => {
                return Err(row_error(number, &key, "must be a string"));
            }
        };
        columns.insert(key, text);
    }
    Ok(columns)
}

fn read_csv(content: &str) -> Result<Vec<ImportRow>, InvalidValue> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(content.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(header)) => header,
        Some(Err(error)) => {
            return Err(InvalidValue::new(format!("is not CSV: {error}")));
        }
        None => return Err(InvalidValue::new("is not CSV: it has no header record")),
    };
    let names: Vec<String> = header.iter().map(|name| name.trim().to_owned()).collect();
    for name in &names {
        if !IMPORT_COLUMNS.contains(&name.as_str()) {
            return Err(InvalidValue::new(format!(
                "is not a CSV of tickets: the header names `{name}`, {}",
                not_a_column()
            )));
        }
    }
    for required in &IMPORT_COLUMNS[..REQUIRED_COLUMNS] {
        if !names.iter().any(|name| name == required) {
            return Err(InvalidValue::new(format!(
                "is not a CSV of tickets: the header has no `{required}` column"
            )));
        }
    }
    let mut rows = Vec::new();
    for (index, record) in records.enumerate() {
        // The header is record 1.
        let number = i64::try_from(index).unwrap_or(i64::MAX).saturating_add(2);
        let columns = match record {
            Ok(record) if record.iter().all(|field| field.trim().is_empty()) => continue,
            Ok(record) if record.len() != names.len() => Err(row_error(
                number,
                "row",
                &format!(
                    "has {} fields; the header names {}",
                    record.len(),
                    names.len()
                ),
            )),
            Ok(record) => Ok(names
                .iter()
                .cloned()
                .zip(record.iter().map(str::to_owned))
                .collect()),
            Err(error) if rows.is_empty() => {
                return Err(InvalidValue::new(format!("is not CSV: {error}")));
            }
            Err(error) => Err(row_error(
                number,
                "row",
                &format!("does not parse: {error}"),
            )),
        };
        rows.push(ImportRow { number, columns });
    }
    Ok(rows)
}

fn not_a_column() -> String {
    format!("which is not a column: {}", IMPORT_COLUMNS.join(", "))
}

fn row_error(row: i64, field: &str, reason: &str) -> RowError {
    RowError {
        row,
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

impl ImportRow {
    /// The ticket the row describes, or every refused field (in column order), checked as
    /// CreateTicket checks an agent's ticket.
    pub fn validate(&self) -> Result<ImportTicket, Vec<RowError>> {
        let columns = self.columns.as_ref().map_err(|error| vec![error.clone()])?;
        let number = self.number;
        let text = |name: &str| columns.get(name).map_or("", String::as_str);
        let mut errors = Vec::new();
        let mut check = |field: &str, result: Result<(), InvalidValue>| {
            if let Err(problem) = result {
                errors.push(row_error(number, field, problem.description()));
            }
        };
        let subject = TicketSubject::parse(text("subject"));
        check(
            "subject",
            subject.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let description = TicketDescription::parse(text("description"));
        check(
            "description",
            description.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let requester_email = match text("requester_email").trim() {
            "" => Err(InvalidValue::new("an email address is required")),
            raw => Email::parse(raw),
        };
        check(
            "requester_email",
            requester_email.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let priority = match text("priority").trim() {
            "" => Ok(TicketPriority::Normal),
            raw => TicketPriority::parse(&raw.to_ascii_lowercase()),
        };
        check(
            "priority",
            priority.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let assignee = match text("assignee_id").trim() {
            "" => Ok(None),
            raw => UserId::parse(raw).map(Some),
        };
        check(
            "assignee_id",
            assignee.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let tags = import_tags(text("tags"));
        check("tags", tags.as_ref().map(|_| ()).map_err(Clone::clone));
        match (
            subject,
            description,
            requester_email,
            priority,
            assignee,
            tags,
        ) {
            (
                Ok(subject),
                Ok(description),
                Ok(requester_email),
                Ok(priority),
                Ok(assignee),
                Ok(tags),
            ) => Ok(ImportTicket {
                row: number,
                subject,
                description,
                priority,
                requester_email,
                assignee,
                tags,
            }),
            _ => Err(errors),
        }
    }
}

/// A row's `tags`: separated by commas or white space (NDJSON's list arrives joined by commas),
/// each normalized as AddTicketTags normalizes it, at most as many as a ticket carries.
fn import_tags(text: &str) -> Result<TagSet, InvalidValue> {
    let raw: Vec<&str> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .collect();
    TagSet::parse(&raw).map_err(|(index, problem)| match index {
        Some(index) => InvalidValue::new(format!("tag {:?}: {problem}", raw[index])),
        None => problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_split_at_commas_or_spaces_and_normalized_in_csv_and_ndjson_alike() {
        let csv = "subject,description,requester_email,tags\n\
                   A,a,a@example.com,\"VIP, refund  billing\"\n\
                   B,b,b@example.com,\n\
                   C,c,c@example.com,\"ok not!ok\"\n";
        let rows = read_rows(ImportFormat::Csv, csv).expect("CSV");
        let tags = |row: &ImportRow| row.validate().map(|ticket| ticket.tags.to_strings());
        assert_eq!(
            tags(&rows[0]),
            Ok(vec!["billing".into(), "refund".into(), "vip".into()])
        );
        assert_eq!(tags(&rows[1]), Ok(vec![]));
        let refused = rows[2].validate().expect_err("a tag with a `!`");
        assert_eq!((refused[0].row, refused[0].field.as_str()), (4, "tags"));
        assert!(
            refused[0].reason.starts_with("tag \"not!ok\""),
            "{}",
            refused[0].reason
        );

        let ndjson = concat!(
            r#"{"subject":"A","description":"a","requester_email":"a@example.com","tags":["VIP","refund"]}"#,
            "\n",
            r#"{"subject":"B","description":"b","requester_email":"b@example.com","tags":"vip bug"}"#,
            "\n",
            r#"{"subject":"C","description":"c","requester_email":"c@example.com","tags":[1]}"#,
            "\n",
        );
        let rows = read_rows(ImportFormat::Ndjson, ndjson).expect("NDJSON");
        assert_eq!(tags(&rows[0]), Ok(vec!["refund".into(), "vip".into()]));
        assert_eq!(tags(&rows[1]), Ok(vec!["bug".into(), "vip".into()]));
        let refused = rows[2].validate().expect_err("a number among the tags");
        assert_eq!(refused[0].field, "tags");
    }

    #[test]
    fn ndjson_rows_are_numbered_by_line_and_blank_lines_are_skipped() {
        let content = concat!(
            r#"{"subject":"A","description":"a","requester_email":"a@example.com"}"#,
            "\n\n",
            r#"{"subject":"","description":"b","requester_email":"b@example.com","priority":"urgent"}"#,
            "\n",
            "not json\n",
        );
        let rows = read_rows(ImportFormat::Ndjson, content).expect("NDJSON");
        assert_eq!(
            rows.iter().map(|row| row.number).collect::<Vec<_>>(),
            [1, 3, 4]
        );
        let first = rows[0].validate().expect("a valid row");
        assert_eq!(first.subject.as_str(), "A");
        assert_eq!(first.priority, TicketPriority::Normal);
        let second = rows[1].validate().expect_err("an empty subject");
        assert_eq!(second.len(), 1);
        assert_eq!((second[0].row, second[0].field.as_str()), (3, "subject"));
        let third = rows[2].validate().expect_err("not JSON");
        assert_eq!((third[0].row, third[0].field.as_str()), (4, "row"));
    }

    #[test]
    fn a_file_whose_first_line_is_no_json_object_is_not_ndjson() {
        assert!(read_rows(ImportFormat::Ndjson, "subject,description\nA,a\n").is_err());
        assert!(read_rows(ImportFormat::Ndjson, "[1,2]\n").is_err());
    }

    #[test]
    fn csv_rows_are_numbered_by_record_with_the_header_as_one() {
        let content = "subject,description,requester_email,priority\n\
                       A,\"a, with a comma\",a@example.com,high\n\
                       B,b,not-an-email,loud\n";
        let rows = read_rows(ImportFormat::Csv, content).expect("CSV");
        assert_eq!(rows.len(), 2);
        let first = rows[0].validate().expect("a valid row");
        assert_eq!(first.description.as_str(), "a, with a comma");
        assert_eq!(first.priority, TicketPriority::High);
        let errors = rows[1].validate().expect_err("two bad fields");
        assert_eq!(
            errors
                .iter()
                .map(|error| (error.row, error.field.as_str()))
                .collect::<Vec<_>>(),
            [(3, "requester_email"), (3, "priority")]
        );
    }

    #[test]
    fn a_csv_whose_header_lacks_a_required_column_or_names_an_unknown_one_is_refused() {
        let missing = read_rows(ImportFormat::Csv, "subject,description\nA,a\n")
            .expect_err("no requester_email");
        assert!(missing.description().contains("requester_email"));
        let unknown = read_rows(
            ImportFormat::Csv,
            "subject,description,requester_email,colour\nA,a,a@example.com,red\n",
        )
        .expect_err("an unknown column");
        assert!(unknown.description().contains("colour"));
        assert!(read_rows(ImportFormat::Csv, "").is_err());
    }

    #[test]
    fn a_csv_row_with_another_number_of_fields_is_a_row_error() {
        let rows = read_rows(
            ImportFormat::Csv,
            "subject,description,requester_email\nA,a\n",
        )
        .expect("CSV");
        let errors = rows[0].validate().expect_err("two fields of three");
        assert_eq!((errors[0].row, errors[0].field.as_str()), (2, "row"));
    }
}
