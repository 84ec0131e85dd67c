//! Import rules checked on the source (docs/architecture.md, "The layers"): every top-level
//! module imports only modules of lower layers, so imports point down and no circle can form;
//! and `errors` is a leaf that every module may import, so it imports nothing of ours but
//! `domain` and `wire::headers`.

use std::path::Path;

use crate::support::repository_root;
use crate::support::source::{code_only, rust_files};

/// What `errors` may name of the crate, besides itself: module paths, by their segments.
const ERRORS_MAY_IMPORT: &[&[&str]] = &[&["errors"], &["domain"], &["wire", "headers"]];

#[test]
fn errors_imports_only_domain_and_wire_headers() {
    let root = repository_root();
    let mut files = vec![root.join("src/errors.rs")];
    rust_files(&root.join("src/errors"), &mut files);
    let mut outside = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        let module = module_of(&root.join("src"), file);
        for path in crate_paths(&source, &module) {
            let allowed = ERRORS_MAY_IMPORT.iter().any(|allowed| {
                allowed.len() <= path.len() && allowed.iter().zip(&path).all(|(a, p)| a == p)
            });
            if !allowed {
                outside.push(format!(
                    "{}: crate::{}",
                    file.strip_prefix(&root).unwrap().display(),
                    path.join("::")
                ));
            }
        }
    }
    assert!(
        outside.is_empty(),
        "errors may import only crate::domain and crate::wire::headers: {outside:#?}"
    );
}

/// The layers of the crate's top-level modules (and of the modules of `wire`, `app`, `cli` and `redis`,
/// rooms whose parts sit at different heights: the header names below `errors`, the codec above
/// it), lowest first: a module may import only modules of lower layers. docs/architecture.md's
/// table says the same.
const LAYERS: &[&[&str]] = &[
    &[
        "domain",
        "wire",
        "app",
        "redis",
        "wire::proto",
        "wire::http_rule",
        "wire::headers",
        "bulkhead",
        "breaker",
        "retry",
        "worker_pool",
    ],
    &[
        "errors",
        "configuration",
        "app::metrics",
        "app::traces",
        "wire::methods",
        "cli::client",
    ],
    &[
        "wire::codec",
        "wire::openapi",
        "db",
        "redis::keys",
        "redis::admission",
        "redis::backoff",
        "redis::connection",
        "app::telemetry",
        "billing",
        "notifications",
        "storage",
    ],
    &["auth", "app::health", "redis::ticket_cache"],
    &["rate_limit", "idempotency"],
    &["service"],
    &["middleware", "jobs", "cli::seed"],
    &["api", "app::lifecycle"],
    &["app::startup"],
    &["cli"],
];

/// The rooms whose modules are layered one by one.
const ROOMS: &[&str] = &["wire", "app", "cli", "redis"];

/// The name a module path is layered under: its top-level module, or for a room, its module
/// inside the room.
fn layer_key(path: &[String]) -> Option<String> {
    match path {
        [room, inner, ..] if ROOMS.contains(&room.as_str()) => Some(format!("{room}::{inner}")),
        [top, ..] => Some(top.clone()),
        [] => None,
    }
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn every_module_imports_only_modules_of_lower_layers() {
    let root = repository_root();
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut unplaced = Vec::new();
    let mut upward = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(top) = layer_key(&module).filter(|top| !["lib", "main"].contains(&top.as_str()))
        else {
            continue;
        };
        let Some(layer) = layer_of(&top) else {
            unplaced.push(top.clone());
            continue;
        };
        let source = std::fs::read_to_string(file).unwrap();
        // Unit tests may reach anywhere: they are not part of the layering.
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        for path in crate_paths(code, &module) {
            let Some(target) = layer_key(&path).filter(|target| *target != top) else {
                continue;
            };
            match layer_of(&target) {
                Some(target_layer) if target_layer < layer => {}
                Some(_) => upward.push(format!(
                    "{}: crate::{}",
                    file.strip_prefix(&root).unwrap().display(),
                    path.join("::")
                )),
                // `crate::*`, the crate root: not a module of a layer.
                None => {}
            }
        }
    }
    unplaced.sort();
    unplaced.dedup();
    assert!(
        unplaced.is_empty(),
        "modules in no layer (add them to LAYERS and docs/architecture.md): {unplaced:?}"
    );
    assert!(
        upward.is_empty(),
        "imports of a module of the same or a higher layer: {upward:#?}"
    );
}

/// The check itself, on sources that break the rule in each way a path can be written.
#[test]
fn the_errors_import_check_sees_every_way_of_naming_another_module() {
    let errors = ["errors".to_owned()];
    let paths = |source: &str| -> Vec<String> {
        crate_paths(source, &errors)
            .into_iter()
            .map(|path| path.join("::"))
            .collect()
    };
    assert_eq!(
        paths("use crate::codec::MalformedMessage;"),
        ["codec::MalformedMessage"]
    );
    assert_eq!(
        paths("use crate::{domain::Email, middleware::HTTP_STATUS_HEADER};"),
        ["domain::Email", "middleware::HTTP_STATUS_HEADER"]
    );
    assert_eq!(
        paths("use crate::wire::{headers, codec};"),
        ["wire::headers", "wire::codec"]
    );
    assert_eq!(
        paths("fn f(q: crate::configuration::RateQuota) { $crate::x::y(); }"),
        ["configuration::RateQuota", "x::y"]
    );
    assert_eq!(paths("use super::codec;"), ["codec"]);
    assert_eq!(paths("use crate::*;"), ["*"]);
    assert_eq!(paths("use crate as root;"), ["<the crate root>"]);
    assert_eq!(
        paths("mod tests { use super::*; use super::super::codec; }"),
        ["errors::*", "codec"]
    );
    // What is not a path of ours.
    assert!(paths("pub(crate) fn f() {} // crate::codec\n/* crate::x */").is_empty());
    assert!(
        paths(r##"const A: &str = "crate::codec"; const B: &str = r#"super::x"#;"##).is_empty()
    );
    assert!(paths("fn f<'a>(x: &'a str) -> char { let _ = x; 'c' }").is_empty());
}

/// `src/errors/reason.rs` is the module `errors::reason`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let mut module: Vec<String> = file
        .strip_prefix(src)
        .unwrap()
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if module.last().is_some_and(|last| last == "mod") {
        module.pop();
    }
    module
}

/// Every path into the crate that `source` (the file of `module`) names, made absolute (without
/// the leading `crate`): `crate::...`, `$crate::...` and `super::...`, use-groups expanded.
/// Comments, strings and character literals are not code and are skipped.
fn crate_paths(source: &str, module: &[String]) -> Vec<Vec<String>> {
    let tokens = tokens(&code_only(source));
    let mut paths = Vec::new();
    // The module each token is in: `module`, plus the inline `mod x { ... }` around it.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut index = 0;
    while index < tokens.len() {
        let token = tokens[index].as_str();
        match token {
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|(_, opened)| *opened == depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            "mod" if tokens.get(index + 2).is_some_and(|next| next == "{") => {
                inline.push((tokens[index + 1].clone(), depth + 1));
            }
            "crate" | "super" if index == 0 || tokens[index - 1] != "::" => {
                let visibility = token == "crate"
                    && index > 0
                    && tokens[index - 1] == "("
                    && tokens.get(index + 1).is_some_and(|next| next == ")");
                if !visibility {
                    let here: Vec<String> = module
                        .iter()
                        .cloned()
                        .chain(inline.iter().map(|(name, _)| name.clone()))
                        .collect();
                    let (named, next) = use_tree(&tokens, index);
                    for relative in named {
                        paths.push(absolute(&here, &relative));
                    }
                    index = next;
                    continue;
                }
            }
            _ => {}
        }
        index += 1;
    }
    paths
}

/// `relative` (starting with `crate` or `super`) as a path from the crate root.
fn absolute(here: &[String], relative: &[String]) -> Vec<String> {
    let mut segments = relative.iter().peekable();
    let mut path: Vec<String> = if segments.peek().is_some_and(|first| *first == "crate") {
        segments.next();
        Vec::new()
    } else {
        here.to_vec()
    };
    while segments.peek().is_some_and(|segment| *segment == "super") {
        segments.next();
        path.pop();
    }
    path.extend(segments.cloned());
    if path.is_empty() {
        path.push("<the crate root>".to_owned());
    }
    path
}

/// The paths of the use tree (or plain path) starting at `start`, and the index after it.
fn use_tree(tokens: &[String], start: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = vec![tokens[start].clone()];
    let mut index = start + 1;
    while tokens.get(index).is_some_and(|token| token == "::") {
        let Some(next) = tokens.get(index + 1) else {
            break;
        };
        if next == "{" {
            let mut paths = Vec::new();
            index += 2;
            while tokens.get(index).is_some_and(|token| token != "}") {
                if tokens[index] == "," {
                    index += 1;
                    continue;
                }
                let (inner, after) = use_tree(tokens, index);
                paths.extend(inner.into_iter().map(|tail| {
                    let mut path = prefix.clone();
                    path.extend(tail);
                    path
                }));
                index = after;
            }
            return (paths, index + 1);
        }
        prefix.push(next.clone());
        index += 2;
    }
    (vec![prefix], index)
}

/// Identifiers (and `*`), `::`, and every other punctuation character as a token of its own.
fn tokens(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        if c.is_alphanumeric() || c == '_' {
            let start = index;
            while index < chars.len() && (chars[index].is_alphanumeric() || chars[index] == '_') {
                index += 1;
            }
            tokens.push(chars[start..index].iter().collect());
            continue;
        }
        if c == ':' && chars.get(index + 1) == Some(&':') {
            tokens.push("::".to_owned());
            index += 2;
            continue;
        }
        if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
        index += 1;
    }
    tokens
}
