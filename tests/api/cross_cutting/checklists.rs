//! The checklists of docs/architecture.md ("Adding a resource", "Adding a background task",
//! "Adding an outside provider", "Adding an event type"): each step the compiler does not catch
//! is checked here on the source, the migrations and the docs, so that forgetting it fails with
//! the step it forgot. The steps the compiler or a behaviour test already catches are named in
//! the checklists themselves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use supportdesk::domain::EventType;

use crate::support::repository_root;
use crate::support::source::{code_only, rust_files};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The section of a markdown document under `heading` (a whole line), up to the next heading
/// of the same or a higher level.
fn section<'a>(document: &'a str, heading: &str) -> &'a str {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let start = document
        .lines()
        .scan(0, |offset, line| {
            let at = *offset;
            *offset += line.len() + 1;
            Some((at, line))
        })
        .find(|(_, line)| *line == heading)
        .map(|(at, line)| at + line.len() + 1)
        .unwrap_or_else(|| panic!("no heading {heading:?}"));
    let rest = &document[start..];
    let end = rest
        .lines()
        .scan(0, |offset, line| {
            let at = *offset;
            *offset += line.len() + 1;
            Some((at, line))
        })
        .find(|(_, line)| {
            let hashes = line.chars().take_while(|c| *c == '#').count();
            hashes > 0 && hashes <= level && line[hashes..].starts_with(' ')
        })
        .map_or(rest.len(), |(at, _)| at);
    &rest[..end]
}

/// The first cells of a markdown table's rows that are written as code (`` `name` ``).
fn first_column_names(table: &str) -> BTreeSet<String> {
    table
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Each file of `src/jobs/` that declares a task, with the task's name (`pub const NAME`).
fn declared_tasks() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&repository_root().join("src/jobs"), &mut files);
    let mut tasks: Vec<(String, String)> = files
        .iter()
        .filter_map(|file| {
            let source = read(file);
            let line = source
                .lines()
                .find(|line| line.starts_with("pub const NAME: &str = \""))?;
            let name = line.split('"').nth(1)?.to_owned();
            let module = file.file_stem()?.to_str()?.to_owned();
            Some((module, name))
        })
        .collect();
    tasks.sort();
    assert!(
        tasks.len() >= 10,
        "src/jobs/ declares only {tasks:?}: the NAME convention changed?"
    );
    tasks
}

#[test]
fn every_background_task_declared_in_jobs_has_its_row_in_the_tasks_table() {
    let architecture = read(&repository_root().join("docs/architecture.md"));
    let documented = first_column_names(section(&architecture, "## Background tasks"));
    let declared: BTreeSet<String> = declared_tasks().into_iter().map(|(_, name)| name).collect();
    assert_eq!(
        declared, documented,
        "the tasks declared in src/jobs/ (left) and the rows of docs/architecture.md's \
         \"Background tasks\" table (right) differ: a new task needs its row (step 4 of \
         \"Adding a background task\")"
    );
}

#[test]
fn every_background_task_declared_in_jobs_is_built_by_the_application() {
    let wiring = code_only(&read(&repository_root().join("src/app/tasks.rs")));
    let unbuilt: Vec<String> = declared_tasks()
        .into_iter()
        .filter(|(module, _)| !wiring.contains(&format!("jobs::{module}::task(")))
        .map(|(module, name)| format!("{name} (src/jobs/{module}.rs)"))
        .collect();
    assert!(
        unbuilt.is_empty(),
        "declared in src/jobs/ but never built by src/app/tasks.rs, so they never run: {unbuilt:?} \
         (step 3 of \"Adding a background task\")"
    );
}

#[test]
fn every_event_type_has_its_row_in_the_webhooks_catalogue() {
    let webhooks = read(&repository_root().join("docs/webhooks.md"));
    let documented = first_column_names(section(&webhooks, "## The catalogue"));
    let catalogue: BTreeSet<String> = EventType::ALL
        .iter()
        .map(|kind| kind.as_str().to_owned())
        .collect();
    assert_eq!(
        catalogue, documented,
        "EventType::ALL (left) and docs/webhooks.md's catalogue (right) differ (step 3 of \
         \"Adding an event type\")"
    );
}

/// The SQL that writes events: the migrations (triggers) and the statements of `db/models/`.
fn sql_writing_events() -> String {
    let root = repository_root();
    let mut sql = String::new();
    for entry in std::fs::read_dir(root.join("migrations")).unwrap() {
        let up = entry.unwrap().path().join("up.sql");
        if up.exists() {
            sql.push_str(&read(&up));
        }
    }
    let mut models = Vec::new();
    rust_files(&root.join("src/db/models"), &mut models);
    for file in models {
        sql.push_str(&read(&file));
    }
    sql
}

#[test]
fn every_event_type_is_written_by_a_trigger_or_a_statement_of_db_models() {
    let sql = sql_writing_events();
    let never_written: Vec<&str> = EventType::ALL
        .iter()
        .map(|kind| kind.as_str())
        .filter(|name| !sql.contains(&format!("'{name}'")))
        .collect();
    assert!(
        never_written.is_empty(),
        "event types no migration's trigger and no statement of src/db/models/ writes, so no \
         subscriber ever receives them: {never_written:?} (step 2 of \"Adding an event type\")"
    );
}

/// The tables of `src/db/schema.rs`, each with its columns.
fn schema_tables() -> Vec<(String, Vec<String>)> {
    let schema = read(&repository_root().join("src/db/schema.rs"));
    let mut tables = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in schema.lines() {
        let trimmed = line.trim();
        if line.starts_with("    ")
            && !line.starts_with("     ")
            && trimmed.ends_with('{')
            && let Some((name, _)) = trimmed.split_once(" (")
        {
            current = Some((name.to_owned(), Vec::new()));
            continue;
        }
        if let Some((_, columns)) = current.as_mut() {
            if let Some((column, _)) = trimmed.split_once(" -> ") {
                columns.push(column.to_owned());
            } else if trimmed == "}" {
                tables.extend(current.take());
            }
        }
    }
    assert!(
        tables.len() >= 20,
        "read only {} tables from src/db/schema.rs",
        tables.len()
    );
    tables
}

/// The tables that belong to no one account, each with the reason.
const SHARED_TABLES: &[(&str, &str)] = &[
    ("accounts", "the tenants themselves"),
    (
        "idempotency_keys",
        "keyed by the caller (its credential, which names its account) and the RPC",
    ),
    (
        "reconciliation_runs",
        "a run compares the whole provider ledger; its findings are per account",
    ),
    (
        "revoked_sessions",
        "keyed by the session's id; the user it names belongs to an account",
    ),
    (
        "storage_deletions",
        "keyed by the object's key, which the attachment's row (of its account) named",
    ),
    (
        "webhook_endpoint_secrets",
        "reached only through its endpoint, which belongs to an account",
    ),
    (
        "webhook_event_quarantines",
        "a provider's event whose account is in doubt: it names the account the event claims \
         and the one the payment belongs to (named_account_id, payment_account_id)",
    ),
];

#[test]
fn every_table_belongs_to_an_account_or_says_why_it_is_shared() {
    let unscoped: BTreeSet<String> = schema_tables()
        .into_iter()
        .filter(|(_, columns)| !columns.iter().any(|column| column == "account_id"))
        .map(|(name, _)| name)
        .collect();
    let listed: BTreeSet<String> = SHARED_TABLES
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    assert_eq!(
        unscoped, listed,
        "the tables without an account_id column (left) and SHARED_TABLES (right) differ: a new \
         resource's table carries its account (step 2 of \"Adding a resource\"), or is listed \
         here with the reason it belongs to no account"
    );
}

#[test]
fn only_db_names_the_tables_of_the_schema() {
    let root = repository_root();
    let mut files: Vec<PathBuf> = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let outside: Vec<String> = files
        .iter()
        .filter(|file| !file.starts_with(root.join("src/db")))
        .filter(|file| code_only(&read(file)).contains("db::schema"))
        .map(|file| file.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(
        outside.is_empty(),
        "files outside src/db/ that query tables themselves: {outside:?}; a resource's queries \
         belong to its row type in src/db/models/ (step 3 of \"Adding a resource\")"
    );
}

/// The adapters of `src/providers/` that call out without a breaker and a bulkhead of their
/// own, each with the reason.
const PROVIDERS_WITHOUT_A_BREAKER: &[(&str, &str)] = &[(
    "webhook_client",
    "each customer's endpoint is its own party: the delivery workers isolate endpoints and \
     accounts by their places and a lane for failing endpoints (docs/webhooks.md, \"Isolation\"), \
     so one shared breaker would let one bad endpoint stop every account's deliveries",
)];

#[test]
fn every_outside_provider_is_called_through_a_breaker_and_a_bulkhead() {
    let providers = repository_root().join("src/providers");
    let mut found = Vec::new();
    let mut unguarded = Vec::new();
    for entry in std::fs::read_dir(&providers).expect("src/providers/") {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if name == "mod" {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else {
            files.push(path.clone());
        }
        let code: String = files.iter().map(|file| code_only(&read(file))).collect();
        let guarded = code.contains("CircuitBreaker::new(") && code.contains("Bulkhead::new(");
        let excused = PROVIDERS_WITHOUT_A_BREAKER
            .iter()
            .any(|(excused, _)| *excused == name);
        if guarded == excused {
            unguarded.push(format!(
                "{name} (guarded: {guarded}, listed as unguarded: {excused})"
            ));
        }
        found.push(name);
    }
    assert!(found.len() >= 4, "src/providers/ holds only {found:?}");
    assert!(
        unguarded.is_empty(),
        "a provider adapter calls out through its own CircuitBreaker and Bulkhead (step 2 of \
         \"Adding an outside provider\"), or is listed in PROVIDERS_WITHOUT_A_BREAKER with the \
         reason: {unguarded:?}"
    );
}
