//! The file of an import (ImportTickets): NDJSON or CSV read into rows, and each row validated
//! with the very parsers CreateTicket uses (`TicketSubject`, `TicketDescription`,
//! `TicketPriority`, `Email`, `UserId`, `TagSet`, the group id and the account's catalogue of
//! custom fields), so a row is accepted exactly when the same ticket sent by an agent to
//! CreateTicket would pass its field checks. docs/operations.md.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{
    Catalogue, Email, FieldKey, FieldKind, InvalidValue, RawValue, RowError, StoredValues, TagSet,
    TicketDescription, TicketPriority, TicketSubject, UserId, optional_uuid,
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

/// The columns a row may name besides custom fields; the first three are required.
pub const IMPORT_COLUMNS: [&str; 7] = [
    "subject",
    "description",
    "requester_email",
    "priority",
    "assignee_id",
    "group_id",
    "tags",
];

/// How a CSV header names a custom field's column (`custom_fields.plan`), as UpdateTicket's
/// field mask names it; NDJSON has one `custom_fields` object instead.
const FIELD_COLUMN_PREFIX: &str = "custom_fields.";

/// A file read into rows, with the custom fields its CSV header names (checked against the
/// account's catalogue when the import runs: a column for no field the importer may write makes
/// the whole file wrong, as an unknown column does).
#[derive(Clone, Debug, PartialEq)]
pub struct ImportFile {
    pub rows: Vec<ImportRow>,
    pub field_columns: Vec<String>,
}

impl ImportFile {
    /// Fails naming the first header column whose custom field the importer may not write:
    /// none of the account's, or retired.
    pub fn check_field_columns(&self, catalogue: &Catalogue) -> Result<(), InvalidValue> {
        for key in &self.field_columns {
            catalogue.writable(key, false).map_err(|problem| {
                InvalidValue::new(format!(
                    "is not a CSV of this account's tickets: the header names                      `{FIELD_COLUMN_PREFIX}{key}`, and {}",
                    problem.description()
                ))
            })?;
        }
        Ok(())
    }
}

/// How many columns are required (the first of [`IMPORT_COLUMNS`]).
const REQUIRED_COLUMNS: usize = 3;

/// One row of the file, as read: its number in the file and its cells, or why it does not read
/// as a row at all.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportRow {
    /// The line (NDJSON) or record (CSV, the header being 1).
    pub number: i64,
    pub cells: Result<RowCells, RowError>,
}

/// A row's cells: the ticket's own columns as text, and its custom field values by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowCells {
    pub columns: BTreeMap<String, String>,
    pub custom_fields: BTreeMap<String, FieldCell>,
}

/// A custom field's cell: CSV has only text, which the field's kind reads; NDJSON sends JSON.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldCell {
    Text(String),
    Value(RawValue),
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
    pub group: Option<Uuid>,
    pub tags: TagSet,
    /// The values set, in their stored shape (a cleared or empty cell sets nothing).
    pub custom_fields: StoredValues,
}

/// Reads `content` as `format` into rows. An error means the file is not of the format at all:
/// NDJSON whose first non-blank line is no JSON object, CSV that does not parse or whose header
/// lacks a required column or names an unknown one.
pub fn read_rows(format: ImportFormat, content: &str) -> Result<ImportFile, InvalidValue> {
    match format {
        ImportFormat::Ndjson => Ok(ImportFile {
            rows: read_ndjson(content)?,
            field_columns: Vec::new(),
        }),
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
            Ok(serde_json::Value::Object(object)) => ndjson_cells(number, object),
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
        rows.push(ImportRow {
            number,
            cells: columns,
        });
    }
    Ok(rows)
}

fn ndjson_cells(
    number: i64,
    object: serde_json::Map<String, serde_json::Value>,
) -> Result<RowCells, RowError> {
    let mut cells = RowCells::default();
    for (key, value) in object {
        if key == "custom_fields" {
            cells.custom_fields = ndjson_field_values(number, value)?;
            continue;
        }
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
        cells.columns.insert(key, text);
    }
    Ok(cells)
}

/// An NDJSON row's `custom_fields`: an object (or null) of values as CreateTicket takes them.
fn ndjson_field_values(
    number: i64,
    value: serde_json::Value,
) -> Result<BTreeMap<String, FieldCell>, RowError> {
    let object = match value {
        serde_json::Value::Object(object) => object,
        serde_json::Value::Null => return Ok(BTreeMap::new()),
        serde_json::Value::Bool(_)
        | serde_json::Value::Number(_)
        | serde_json::Value::String(_)
        | serde_json::Value::Array(_) => {
            return Err(row_error(
                number,
                "custom_fields",
                "must be an object of values by field key",
            ));
        }
    };
    object
        .into_iter()
        .map(|(key, value)| match raw_value(value) {
            Some(raw) => Ok((key, FieldCell::Value(raw))),
            None => Err(row_error(
                number,
                &format!("{FIELD_COLUMN_PREFIX}{key}"),
                "must be a string, a number, true or false, a list or null",
            )),
        })
        .collect()
}

/// A JSON value as the value CreateTicket's `google.protobuf.Value` would carry; `None` for an
/// object, which no field takes.
fn raw_value(value: serde_json::Value) -> Option<RawValue> {
    Some(match value {
        serde_json::Value::Null => RawValue::Null,
        serde_json::Value::Bool(checked) => RawValue::Bool(checked),
        serde_json::Value::Number(number) => RawValue::Number(number.as_f64()?),
        serde_json::Value::String(text) => RawValue::Text(text),
        serde_json::Value::Array(items) => RawValue::List(
            items
                .into_iter()
                .map(raw_value)
                .collect::<Option<Vec<_>>>()?,
        ),
        serde_json::Value::Object(_) => return None,
    })
}

fn read_csv(content: &str) -> Result<ImportFile, InvalidValue> {
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
    let mut field_columns = Vec::new();
    for name in &names {
        if let Some(key) = name.strip_prefix(FIELD_COLUMN_PREFIX)
            && FieldKey::parse(key).is_ok()
        {
            field_columns.push(key.to_owned());
            continue;
        }
        if !IMPORT_COLUMNS.contains(&name.as_str()) {
            return Err(InvalidValue::new(format!(
                "is not a CSV of tickets: the header names `{name}`, {}",
                not_a_column()
            )));
        }
    }
    if let Some(twice) = names
        .iter()
        .enumerate()
        .find_map(|(index, name)| names[..index].contains(name).then_some(name))
    {
        return Err(InvalidValue::new(format!(
            "is not a CSV of tickets: the header names `{twice}` twice"
        )));
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
            Ok(record) => Ok(csv_cells(&names, &record)),
            Err(error) if rows.is_empty() => {
                return Err(InvalidValue::new(format!("is not CSV: {error}")));
            }
            Err(error) => Err(row_error(
                number,
                "row",
                &format!("does not parse: {error}"),
            )),
        };
        rows.push(ImportRow {
            number,
            cells: columns,
        });
    }
    Ok(ImportFile {
        rows,
        field_columns,
    })
}

fn csv_cells(names: &[String], record: &csv::StringRecord) -> RowCells {
    let mut cells = RowCells::default();
    for (name, text) in names.iter().zip(record.iter()) {
        match name.strip_prefix(FIELD_COLUMN_PREFIX) {
            Some(key) => {
                cells
                    .custom_fields
                    .insert(key.to_owned(), FieldCell::Text(text.to_owned()));
            }
            None => {
                cells.columns.insert(name.clone(), text.to_owned());
            }
        }
    }
    cells
}

fn not_a_column() -> String {
    format!(
        "which is not a column: {}, or custom fields (CSV: a column \
         {FIELD_COLUMN_PREFIX}<key> each; NDJSON: one custom_fields object)",
        IMPORT_COLUMNS.join(", ")
    )
}

fn row_error(row: i64, field: &str, reason: &str) -> RowError {
    RowError {
        row,
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

impl ImportRow {
    /// The ticket the row describes, or every refused field (in column order, custom fields
    /// last), checked as CreateTicket checks an agent's ticket against the account's
    /// `catalogue` of custom fields.
    pub fn validate(&self, catalogue: &Catalogue) -> Result<ImportTicket, Vec<RowError>> {
        let cells = self.cells.as_ref().map_err(|error| vec![error.clone()])?;
        let number = self.number;
        let text = |name: &str| cells.columns.get(name).map_or("", String::as_str);
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
        let group = optional_uuid(text("group_id").trim());
        check("group_id", group.as_ref().map(|_| ()).map_err(Clone::clone));
        let tags = import_tags(text("tags"));
        check("tags", tags.as_ref().map(|_| ()).map_err(Clone::clone));
        let custom_fields = field_values(&cells.custom_fields, catalogue);
        if let Err(problems) = &custom_fields {
            for (key, problem) in problems {
                errors.push(row_error(
                    number,
                    &format!("{FIELD_COLUMN_PREFIX}{key}"),
                    problem.description(),
                ));
            }
        }
        match (
            subject,
            description,
            requester_email,
            priority,
            assignee,
            group,
            tags,
            custom_fields,
        ) {
            (
                Ok(subject),
                Ok(description),
                Ok(requester_email),
                Ok(priority),
                Ok(assignee),
                Ok(group),
                Ok(tags),
                Ok(custom_fields),
            ) => Ok(ImportTicket {
                row: number,
                subject,
                description,
                priority,
                requester_email,
                assignee,
                group,
                tags,
                custom_fields,
            }),
            _ => Err(errors),
        }
    }
}

/// A row's custom field values checked as CreateTicket checks an agent's: a key of no live field
/// of the account, or a value not of its field's type, is refused by key.
fn field_values(
    cells: &BTreeMap<String, FieldCell>,
    catalogue: &Catalogue,
) -> Result<StoredValues, Vec<(String, InvalidValue)>> {
    let raw: Vec<(&str, RawValue)> = cells
        .iter()
        .map(|(key, cell)| {
            let raw = match (cell, catalogue.find(key)) {
                (FieldCell::Value(raw), _) => raw.clone(),
                (FieldCell::Text(text), Some(field)) => typed_cell(&field.kind, text),
                // The catalogue refuses the key; the value is never read.
                (FieldCell::Text(_), None) => RawValue::Null,
            };
            (key.as_str(), raw)
        })
        .collect();
    Ok(catalogue
        .check_values(raw.iter().map(|(key, raw)| (*key, raw)), false)?
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| (key, value)))
        .collect())
}

/// A CSV cell as the value it stands for in a field of `kind`: an empty cell is no value; a
/// checkbox reads true/false, yes/no or 1/0 in any case; a multiple choice lists its options
/// separated by commas or white space (options are key-like words, so none holds either); any
/// other kind reads the text as CreateTicket reads a string (numbers, decimals and dates are
/// parsed from it).
fn typed_cell(kind: &FieldKind, text: &str) -> RawValue {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return RawValue::Null;
    }
    match kind {
        FieldKind::Checkbox => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => RawValue::Bool(true),
            "false" | "no" | "0" => RawValue::Bool(false),
            _ => RawValue::Text(trimmed.to_owned()),
        },
        FieldKind::MultipleChoice(_) => RawValue::List(
            trimmed
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|option| !option.is_empty())
                .map(|option| RawValue::Text(option.to_owned()))
                .collect(),
        ),
        // Long text keeps its own spacing; one-line kinds are read trimmed.
        FieldKind::LongText => RawValue::Text(text.to_owned()),
        FieldKind::Text
        | FieldKind::Integer
        | FieldKind::Decimal
        | FieldKind::Date
        | FieldKind::SingleChoice(_)
        | FieldKind::Pattern(_) => RawValue::Text(trimmed.to_owned()),
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
        let rows = read_rows(ImportFormat::Csv, csv).expect("CSV").rows;
        let tags = |row: &ImportRow| {
            row.validate(&Catalogue::default())
                .map(|ticket| ticket.tags.to_strings())
        };
        assert_eq!(
            tags(&rows[0]),
            Ok(vec!["billing".into(), "refund".into(), "vip".into()])
        );
        assert_eq!(tags(&rows[1]), Ok(vec![]));
        let refused = rows[2]
            .validate(&Catalogue::default())
            .expect_err("a tag with a `!`");
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
        let rows = read_rows(ImportFormat::Ndjson, ndjson)
            .expect("NDJSON")
            .rows;
        assert_eq!(tags(&rows[0]), Ok(vec!["refund".into(), "vip".into()]));
        assert_eq!(tags(&rows[1]), Ok(vec!["bug".into(), "vip".into()]));
        let refused = rows[2]
            .validate(&Catalogue::default())
            .expect_err("a number among the tags");
        assert_eq!(refused[0].field, "tags");
    }

    fn field(key: &str, kind: FieldKind, retired: bool) -> crate::domain::CustomField {
        let now = chrono::Utc::now();
        crate::domain::CustomField {
            id: Uuid::now_v7(),
            account_id: Uuid::now_v7(),
            key: FieldKey::parse(key).expect("a key"),
            title: key.to_owned(),
            description: String::new(),
            kind,
            customer_visible: false,
            customer_editable: false,
            required_to_solve: false,
            position: 0,
            retired_at: retired.then_some(now),
            created_at: now,
            updated_at: now,
        }
    }

    fn catalogue() -> Catalogue {
        let options = |names: &[&str]| {
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>()
        };
        Catalogue::new(vec![
            field("seats", FieldKind::Integer, false),
            field("vip", FieldKind::Checkbox, false),
            field(
                "areas",
                FieldKind::parse("multiple_choice", &options(&["billing", "login"]), None)
                    .expect("a kind"),
                false,
            ),
            field("renewal", FieldKind::Date, false),
            field("legacy", FieldKind::Text, true),
        ])
    }

    #[test]
    fn csv_custom_field_columns_are_read_by_their_fields_kind() {
        let csv = "subject,description,requester_email,custom_fields.seats,custom_fields.vip,\
                   custom_fields.areas,custom_fields.renewal\n\
                   A,a,a@example.com,12,Yes,\"login, billing\",2026-12-01\n\
                   B,b,b@example.com,,,,\n\
                   C,c,c@example.com,twelve,maybe,refunds,2026-13-01\n";
        let file = read_rows(ImportFormat::Csv, csv).expect("CSV");
        assert_eq!(file.field_columns, ["seats", "vip", "areas", "renewal"]);
        assert_eq!(file.check_field_columns(&catalogue()), Ok(()));
        let first = file.rows[0].validate(&catalogue()).expect("a valid row");
        assert_eq!(
            serde_json::Value::Object(first.custom_fields),
            serde_json::json!({
                "seats": 12, "vip": true, "areas": ["billing", "login"], "renewal": "2026-12-01"
            })
        );
        let empty = file.rows[1].validate(&catalogue()).expect("empty cells");
        assert!(empty.custom_fields.is_empty());
        let refused = file.rows[2]
            .validate(&catalogue())
            .expect_err("four bad values");
        assert_eq!(
            refused
                .iter()
                .map(|error| (error.row, error.field.as_str()))
                .collect::<Vec<_>>(),
            [
                (4, "custom_fields.areas"),
                (4, "custom_fields.renewal"),
                (4, "custom_fields.seats"),
                (4, "custom_fields.vip"),
            ]
        );
    }

    #[test]
    fn a_csv_column_for_no_writable_field_makes_the_file_wrong() {
        for key in ["plan", "legacy"] {
            let csv = format!(
                "subject,description,requester_email,custom_fields.{key}\nA,a,a@example.com,x\n"
            );
            let file = read_rows(ImportFormat::Csv, &csv).expect("CSV");
            let problem = file
                .check_field_columns(&catalogue())
                .expect_err("no such field, or a retired one");
            assert!(
                problem
                    .description()
                    .contains(&format!("`custom_fields.{key}`")),
                "{}",
                problem.description()
            );
        }
        let twice = read_rows(
            ImportFormat::Csv,
            "subject,description,requester_email,custom_fields.vip,custom_fields.vip\n",
        )
        .expect_err("a column twice");
        assert!(twice.description().contains("twice"));
    }

    #[test]
    fn ndjson_custom_fields_are_an_object_checked_by_key_and_an_unknown_key_is_the_rows_error() {
        let ndjson = concat!(
            r#"{"subject":"A","description":"a","requester_email":"a@example.com","custom_fields":{"seats":3,"vip":false,"areas":["login"]}}"#,
            "\n",
            r#"{"subject":"B","description":"b","requester_email":"b@example.com","custom_fields":{"plan":"pro","seats":"3.5"}}"#,
            "\n",
            r#"{"subject":"C","description":"c","requester_email":"c@example.com","custom_fields":["seats"]}"#,
            "\n",
        );
        let rows = read_rows(ImportFormat::Ndjson, ndjson)
            .expect("NDJSON")
            .rows;
        let first = rows[0].validate(&catalogue()).expect("a valid row");
        assert_eq!(
            serde_json::Value::Object(first.custom_fields),
            serde_json::json!({"seats": 3, "vip": false, "areas": ["login"]})
        );
        let second = rows[1]
            .validate(&catalogue())
            .expect_err("two refused keys");
        assert_eq!(
            second
                .iter()
                .map(|error| error.field.as_str())
                .collect::<Vec<_>>(),
            ["custom_fields.plan", "custom_fields.seats"]
        );
        let third = rows[2].validate(&catalogue()).expect_err("not an object");
        assert_eq!(third[0].field, "custom_fields");
    }

    #[test]
    fn a_group_id_cell_is_empty_or_a_hyphenated_uuid() {
        let id = "0190c2a4-7f3e-7a4b-9c1d-2e3f4a5b6c7d";
        let csv = format!(
            "subject,description,requester_email,group_id\nA,a,a@example.com,{id}\n\
             B,b,b@example.com,\nC,c,c@example.com,billing\n"
        );
        let rows = read_rows(ImportFormat::Csv, &csv).expect("CSV").rows;
        let group = |row: &ImportRow| row.validate(&catalogue()).map(|ticket| ticket.group);
        assert_eq!(
            group(&rows[0]),
            Ok(Some(Uuid::parse_str(id).expect("a UUID")))
        );
        assert_eq!(group(&rows[1]), Ok(None));
        let refused = rows[2].validate(&catalogue()).expect_err("not a UUID");
        assert_eq!((refused[0].row, refused[0].field.as_str()), (4, "group_id"));
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
        let rows = read_rows(ImportFormat::Ndjson, content)
            .expect("NDJSON")
            .rows;
        assert_eq!(
            rows.iter().map(|row| row.number).collect::<Vec<_>>(),
            [1, 3, 4]
        );
        let first = rows[0]
            .validate(&Catalogue::default())
            .expect("a valid row");
        assert_eq!(first.subject.as_str(), "A");
        assert_eq!(first.priority, TicketPriority::Normal);
        let second = rows[1]
            .validate(&Catalogue::default())
            .expect_err("an empty subject");
        assert_eq!(second.len(), 1);
        assert_eq!((second[0].row, second[0].field.as_str()), (3, "subject"));
        let third = rows[2]
            .validate(&Catalogue::default())
            .expect_err("not JSON");
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
        let rows = read_rows(ImportFormat::Csv, content).expect("CSV").rows;
        assert_eq!(rows.len(), 2);
        let first = rows[0]
            .validate(&Catalogue::default())
            .expect("a valid row");
        assert_eq!(first.description.as_str(), "a, with a comma");
        assert_eq!(first.priority, TicketPriority::High);
        let errors = rows[1]
            .validate(&Catalogue::default())
            .expect_err("two bad fields");
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
        .expect("CSV")
        .rows;
        let errors = rows[0]
            .validate(&Catalogue::default())
            .expect_err("two fields of three");
        assert_eq!((errors[0].row, errors[0].field.as_str()), (2, "row"));
    }
}
