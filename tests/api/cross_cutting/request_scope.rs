//! The request scope's rule, checked on the source (docs/architecture.md, "The request scope"):
//! a function `service/` offers takes the request's scope (`&RequestScope`) or, for a write, its
//! `&KeyedWrite`, never the caller, the budget and the idempotency key apart; and no transport
//! type (admission's prefetched cache entry) reaches `service/` or `api/`: the cache reads it
//! from the scope. Comments and strings are not code.

use std::path::Path;

use crate::support::repository_root;
use crate::support::source::{code_only, rust_files};

/// What the parameters of a function `service/` offers must not name, and what to take instead.
const NOT_A_SERVICE_PARAMETER: &[(&str, &str)] = &[
    (
        "caller: &Caller",
        "take `scope: &RequestScope`, or the `&KeyedWrite` of a write",
    ),
    ("budget: Duration", "read what is left with `remaining()`"),
    ("Option<&Idempotent<", "take the `&KeyedWrite` of the write"),
    ("ValidUntil", "read it with `scope.valid_until()`"),
];

/// Transport types that stay between admission and the cache.
const TRANSPORT_TYPES: &[&str] = &["PrefetchedEntry"];

#[test]
fn service_functions_take_the_request_scope_not_its_parts() {
    let root = repository_root();
    let mut misfits = Vec::new();
    for file in sources(&root, "src/service") {
        let code = code_only(&std::fs::read_to_string(&file).unwrap());
        for (name, parameters) in offered_functions(&code) {
            for (part, instead) in NOT_A_SERVICE_PARAMETER {
                if parameters.contains(part) {
                    misfits.push(format!(
                        "{}: `{name}` takes `{part}`: {instead}",
                        file.strip_prefix(&root).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        misfits.is_empty(),
        "service functions take the request's scope, not its parts: {misfits:#?}"
    );
}

#[test]
fn no_transport_type_reaches_a_service_or_a_handler() {
    let root = repository_root();
    let mut found = Vec::new();
    for file in sources(&root, "src/service")
        .into_iter()
        .chain(sources(&root, "src/api"))
    {
        let code = code_only(&std::fs::read_to_string(&file).unwrap());
        for name in TRANSPORT_TYPES {
            if code.contains(name) {
                found.push(format!(
                    "{}: {name}",
                    file.strip_prefix(&root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the cache reads what admission prefetched from the scope: {found:#?}"
    );
}

fn sources(root: &Path, dir: &str) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    rust_files(&root.join(dir), &mut files);
    assert!(!files.is_empty(), "{dir} has no source");
    files
}

/// The functions `code` offers outside `service/` (`pub`, `pub(crate)`), each with the text of
/// its parameter list.
fn offered_functions(code: &str) -> Vec<(String, String)> {
    let mut functions = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("pub") {
        let after = &rest[at + 3..];
        let after = match after.strip_prefix('(') {
            // Within `service/` (`pub(super)`, `pub(in ..)`): a helper, not an offer.
            Some(reach) => match reach.split_once(')') {
                Some(("crate", after)) => after,
                _ => "",
            },
            None => after,
        };
        let after = after.trim_start();
        let after = after.strip_prefix("async").unwrap_or(after).trim_start();
        rest = &rest[at + 3..];
        let Some(signature) = after.strip_prefix("fn ") else {
            continue;
        };
        let Some((name, parameters)) = signature.split_once('(') else {
            continue;
        };
        let name = name.split('<').next().unwrap_or(name).trim().to_owned();
        let mut depth = 1;
        let end = parameters
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(parameters.len(), |(index, _)| index);
        functions.push((name, parameters[..end].to_owned()));
    }
    functions
}
