//! Import rules checked on the source (docs/architecture.md, "Imports point down"): every room
//! of `src/` (a top-level module) belongs to one layer and imports only rooms of lower layers, so
//! imports point down and no circle can form; `errors` is a leaf every room may import, so it
//! imports nothing of ours but `domain`. The layer order is written once, in the table of
//! docs/architecture.md between its `layers` markers; this test reads it from there. Comments,
//! strings and unit tests are not imports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::repository_root;
use crate::support::source::{code_only, rust_files};

/// What `errors` may name of the crate, besides itself: module paths, by their segments.
const ERRORS_MAY_IMPORT: &[&[&str]] = &[&["errors"], &["domain"]];

#[test]
fn errors_imports_only_domain() {
    let root = repository_root();
    let mut files = Vec::new();
    rust_files(&root.join("src/errors"), &mut files);
    assert!(!files.is_empty(), "src/errors/ has no source");
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
        "errors may import only crate::domain: {outside:#?}"
    );
}

/// The layer of each room, read from docs/architecture.md: the rows `| N | `room`, `room` |`
/// of the table between `<!-- layers -->` and `<!-- /layers -->`, lowest first.
fn layers() -> BTreeMap<String, usize> {
    let architecture = std::fs::read_to_string(repository_root().join("docs/architecture.md"))
        .expect("docs/architecture.md");
    let table = architecture
        .split_once("<!-- layers -->")
        .and_then(|(_, rest)| rest.split_once("<!-- /layers -->"))
        .map(|(table, _)| table)
        .expect("docs/architecture.md has no table between <!-- layers --> and <!-- /layers -->");
    layers_of(table)
}

fn layers_of(table: &str) -> BTreeMap<String, usize> {
    let mut layers = BTreeMap::new();
    for row in table.lines().filter(|line| line.starts_with('|')) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let Some(Ok(layer)) = cells.first().map(|cell| cell.parse::<usize>()) else {
            continue;
        };
        for room in cells[1].split(',') {
            let room = room.trim().trim_matches('`');
            let earlier = layers.insert(room.to_owned(), layer);
            assert!(earlier.is_none(), "`{room}` is in two layers");
        }
    }
    assert!(!layers.is_empty(), "the layers table has no rows");
    layers
}

/// The imports of `src/` that do not point down: each as `file: crate::path`, with the rooms
/// that are in no layer.
fn upward_imports(src: &Path, layers: &BTreeMap<String, usize>) -> (Vec<String>, Vec<String>) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut unplaced = Vec::new();
    let mut upward = Vec::new();
    for file in &files {
        let module = module_of(src, file);
        let Some(room) = module
            .first()
            .filter(|room| !["lib", "main"].contains(&room.as_str()))
        else {
            continue;
        };
        let Some(&layer) = layers.get(room) else {
            unplaced.push(room.clone());
            continue;
        };
        let source = std::fs::read_to_string(file).unwrap();
        // Unit tests may reach anywhere: they are not part of the layering.
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        for path in crate_paths(code, &module) {
            let Some(target) = path.first().filter(|target| *target != room) else {
                continue;
            };
            match layers.get(target) {
                Some(&target_layer) if target_layer < layer => {}
                Some(_) => upward.push(format!(
                    "{} (layer {layer}): crate::{} (layer {})",
                    file.strip_prefix(src.parent().unwrap()).unwrap().display(),
                    path.join("::"),
                    layers[target]
                )),
                // `crate::*`, the crate root, a macro at the root: not a room of a layer.
                None => {}
            }
        }
    }
    unplaced.sort();
    unplaced.dedup();
    (unplaced, upward)
}

#[test]
fn every_room_imports_only_rooms_of_lower_layers() {
    let (unplaced, upward) = upward_imports(&repository_root().join("src"), &layers());
    assert!(
        unplaced.is_empty(),
        "rooms in no layer (add them to docs/architecture.md's layers table): {unplaced:?}"
    );
    assert!(
        upward.is_empty(),
        "imports of a room of the same or a higher layer: {upward:#?}"
    );
}

/// The rooms that hold a circle today, each with the modules in it: the circle check below
/// passes over them, and fails once one of them has none any more (remove it here then).
/// None today: `api/tickets/` holds ExportTickets' stream beside its handlers.
const ROOMS_WITH_A_CIRCLE: &[(&str, &[&str])] = &[];

/// The circles inside each room of `src/`: the modules of a room (its files and folders) that
/// import each other, directly or through others of the room, each circle as `room: {a, b}`.
/// A room's own `mod.rs` is no module of it here: it declares the others.
fn circles_inside_rooms(src: &Path) -> BTreeMap<String, Vec<BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut imports: BTreeSet<(String, String, String)> = BTreeSet::new();
    for file in &files {
        let module = module_of(src, file);
        let [room, from, ..] = module.as_slice() else {
            continue;
        };
        modules
            .entry(room.clone())
            .or_default()
            .insert(from.clone());
        let source = std::fs::read_to_string(file).unwrap();
        // Unit tests may reach anywhere: they are not part of the layering.
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        for path in crate_paths(code, &module) {
            if let [target_room, to, ..] = path.as_slice()
                && target_room == room
                && to != from
            {
                imports.insert((room.clone(), from.clone(), to.clone()));
            }
        }
    }
    let mut circles = BTreeMap::new();
    for (room, members) in &modules {
        let reach = |start: &String| -> BTreeSet<String> {
            let mut seen = BTreeSet::new();
            let mut next = vec![start.clone()];
            while let Some(module) = next.pop() {
                for (_, _, to) in imports
                    .iter()
                    .filter(|(r, from, _)| r == room && *from == module)
                {
                    if members.contains(to) && seen.insert(to.clone()) {
                        next.push(to.clone());
                    }
                }
            }
            seen
        };
        let reached: BTreeMap<&String, BTreeSet<String>> = members
            .iter()
            .map(|module| (module, reach(module)))
            .collect();
        let mut found: Vec<BTreeSet<String>> = Vec::new();
        for module in members
            .iter()
            .filter(|module| reached[module].contains(*module))
        {
            let circle: BTreeSet<String> = reached[module]
                .iter()
                .filter(|other| reached[other].contains(module))
                .cloned()
                .collect();
            if !found.contains(&circle) {
                found.push(circle);
            }
        }
        if !found.is_empty() {
            circles.insert(room.clone(), found);
        }
    }
    circles
}

#[test]
fn no_two_modules_inside_a_room_import_each_other() {
    let circles = circles_inside_rooms(&repository_root().join("src"));
    let known: BTreeMap<String, Vec<BTreeSet<String>>> = ROOMS_WITH_A_CIRCLE
        .iter()
        .map(|(room, members)| {
            let circle = members.iter().map(|&module| module.to_owned()).collect();
            ((*room).to_owned(), vec![circle])
        })
        .collect();
    let new: BTreeMap<&String, &Vec<BTreeSet<String>>> = circles
        .iter()
        .filter(|(room, found)| known.get(*room) != Some(*found))
        .collect();
    assert!(
        new.is_empty(),
        "modules of one room that import each other (a circle: put what they share in a module \
         both import, or one below the other): {new:?}"
    );
    let gone: Vec<&String> = known
        .keys()
        .filter(|room| !circles.contains_key(*room))
        .collect();
    assert!(
        gone.is_empty(),
        "rooms listed in ROOMS_WITH_A_CIRCLE with no circle any more (remove them): {gone:?}"
    );
}

#[test]
fn the_circle_check_fails_on_two_modules_of_a_room_that_import_each_other() {
    let src = std::env::temp_dir().join(format!("circle-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(src.join("room/deep")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod room;\n").unwrap();
    std::fs::write(
        src.join("room/mod.rs"),
        "pub mod a;\npub mod b;\npub mod c;\npub mod deep;\n",
    )
    .unwrap();
    std::fs::write(src.join("room/a.rs"), "use crate::room::b::Thing;\n").unwrap();
    std::fs::write(src.join("room/b.rs"), "use super::deep::inner::Other;\n").unwrap();
    std::fs::write(src.join("room/deep/inner.rs"), "use crate::room::{a, c};\n").unwrap();
    // Only downward: `c` imports the room's root, which is no module of it.
    std::fs::write(src.join("room/c.rs"), "use crate::room::Shared;\n").unwrap();
    let circles = circles_inside_rooms(&src);
    std::fs::remove_dir_all(&src).unwrap();
    let expected: BTreeSet<String> = ["a", "b", "deep"].map(str::to_owned).into();
    assert_eq!(circles.get("room"), Some(&vec![expected]), "{circles:?}");
}

/// The longest a source file may be (docs/architecture.md): past it, a file holds more than one
/// thing, and is split by what its parts are about.
const MAX_FILE_LINES: usize = 1_000;

#[test]
fn no_source_file_is_longer_than_a_thousand_lines() {
    let root = repository_root();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let lines = std::fs::read_to_string(file).unwrap().lines().count();
            (lines > MAX_FILE_LINES)
                .then(|| format!("{}: {lines}", file.strip_prefix(&root).unwrap().display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines: {long:?}"
    );
}

#[test]
fn the_top_of_src_holds_only_lib_main_and_folders() {
    let loose: Vec<String> = std::fs::read_dir(repository_root().join("src"))
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| !["lib.rs", "main.rs"].contains(&name.as_str()))
        .collect();
    assert!(
        loose.is_empty(),
        "loose files at the top of src/: {loose:?}"
    );
}

#[test]
fn app_is_imported_by_nothing_but_the_command_line() {
    let layers = layers();
    let app = layers["app"];
    let above: Vec<&String> = layers
        .iter()
        .filter(|(_, layer)| **layer >= app)
        .map(|(room, _)| room)
        .collect();
    assert_eq!(above, ["app", "cli"], "only cli may sit above app");
}

#[test]
fn the_check_fails_on_an_import_that_climbs_and_on_a_room_in_no_layer() {
    let src = std::env::temp_dir().join(format!("imports-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(src.join("low")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod low;\npub mod high;\n").unwrap();
    std::fs::write(
        src.join("low/mod.rs"),
        "// crate::high in a comment is no import\nuse crate::high::Thing;\n",
    )
    .unwrap();
    std::fs::write(src.join("high.rs"), "use crate::low::Other;\n").unwrap();
    std::fs::write(src.join("stray.rs"), "").unwrap();
    let layers = layers_of("| 0 | `low` |\n| 1 | `high` |\n");
    let (unplaced, upward) = upward_imports(&src, &layers);
    std::fs::remove_dir_all(&src).unwrap();
    assert_eq!(unplaced, ["stray"]);
    assert_eq!(upward.len(), 1, "{upward:?}");
    assert!(
        upward[0].ends_with("low/mod.rs (layer 0): crate::high::Thing (layer 1)"),
        "{upward:?}"
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

/// The rooms above `db/` whose code may name a row type of `db/models/`: the handlers, and the
/// conversions beside the messages. They may name only the read models `db/models/mod.rs` lists
/// (docs/architecture.md, "The layers"); every other row stays below `service/`.
const ROOMS_NAMING_READ_MODELS: &[&str] = &["api", "wire"];

/// The read models `db/models/mod.rs` lists by name: the names in backquotes between "They are
/// exactly:" and "Any other row" of its `//!`.
fn listed_read_models(models_doc: &str) -> BTreeSet<String> {
    let start = models_doc
        .find("They are exactly:")
        .expect("db/models/mod.rs lists its read models after \"They are exactly:\"");
    let end = start
        + models_doc[start..]
            .find("Any other row")
            .expect("the list of read models ends before \"Any other row\"");
    models_doc[start..end]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Each name of `db::models` that the files of `rooms` under `src` name and `listed` does not
/// hold, with the file: a module (`db::models::ticket`) counts as a name, so `models::TicketRow`
/// through an imported module is seen too.
fn unlisted_rows(src: &Path, rooms: &[&str], listed: &BTreeSet<String>) -> Vec<String> {
    let mut unlisted = Vec::new();
    for room in rooms {
        let mut files = Vec::new();
        rust_files(&src.join(room), &mut files);
        for file in &files {
            let source = std::fs::read_to_string(file).unwrap();
            let module = module_of(src, file);
            for path in crate_paths(&source, &module) {
                if path.len() < 2 || path[0] != "db" || path[1] != "models" {
                    continue;
                }
                let name = path.last().expect("a path has segments");
                if !listed.contains(name) {
                    unlisted.push(format!("{}: crate::{}", file.display(), path.join("::")));
                }
            }
        }
    }
    unlisted
}

#[test]
fn api_and_wire_name_only_the_read_models_db_models_lists() {
    let root = repository_root();
    let doc = std::fs::read_to_string(root.join("src/db/models/mod.rs")).unwrap();
    let listed = listed_read_models(&doc);
    assert!(
        listed.contains("StoredEvent") && listed.contains("StoredCharge"),
        "the list was read: {listed:?}"
    );
    let unlisted = unlisted_rows(&root.join("src"), ROOMS_NAMING_READ_MODELS, &listed);
    assert!(
        unlisted.is_empty(),
        "rows of db/models/ that api/ or wire/ name but db/models/mod.rs does not list as read \
         models (convert them in service/ into domain types, or list them with the reason): \
         {unlisted:#?}"
    );
}

/// The check itself: a handler that imports a row type not on the list fails it, whichever
/// way it names it.
#[test]
fn the_read_model_check_fails_on_a_row_type_not_on_the_list() {
    let src = std::env::temp_dir().join(format!("read-models-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(src.join("api")).unwrap();
    std::fs::write(
        src.join("api/tickets.rs"),
        "use crate::db::models::{StoredEvent, TicketRow};\n\
         use crate::db::models::charge::StoredCharge;\n\
         fn f(row: crate::db::models::user::UserRow) {}\n\
         // crate::db::models::ApiKeyRow in a comment is no import\n",
    )
    .unwrap();
    let listed = listed_read_models(
        "//! They are exactly: `StoredEvent`, `StoredCharge`. Any other row stays below.",
    );
    let unlisted = unlisted_rows(&src, &["api"], &listed);
    std::fs::remove_dir_all(&src).unwrap();
    assert_eq!(unlisted.len(), 2, "{unlisted:?}");
    assert!(
        unlisted[0].ends_with("crate::db::models::TicketRow"),
        "{unlisted:?}"
    );
    assert!(
        unlisted[1].ends_with("crate::db::models::user::UserRow"),
        "{unlisted:?}"
    );
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
