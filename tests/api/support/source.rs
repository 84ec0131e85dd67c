//! Reading our own source in tests: the code of a Rust file without its comments and literals,
//! and the Rust files under a directory.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively; none when `dir` does not exist.
pub(crate) fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// `source` with comments, string literals and character literals blanked out.
pub(crate) fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut code = String::with_capacity(source.len());
    let mut index = 0;
    while index < chars.len() {
        let rest = &chars[index..];
        if rest.starts_with(&['/', '/']) {
            while index < chars.len() && chars[index] != '\n' {
                index += 1;
            }
            continue;
        }
        if rest.starts_with(&['/', '*']) {
            let mut nesting = 0;
            while index < chars.len() {
                if chars[index..].starts_with(&['/', '*']) {
                    nesting += 1;
                    index += 2;
                } else if chars[index..].starts_with(&['*', '/']) {
                    nesting -= 1;
                    index += 2;
                    if nesting == 0 {
                        break;
                    }
                } else {
                    index += 1;
                }
            }
            code.push(' ');
            continue;
        }
        let identifier_before =
            index > 0 && (chars[index - 1].is_alphanumeric() || chars[index - 1] == '_');
        if c_is(rest, 'r') && !identifier_before {
            // A raw string: r"..." or r#"..."#.
            let hashes = rest[1..].iter().take_while(|c| **c == '#').count();
            if rest.get(1 + hashes) == Some(&'"') {
                let closing: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                index += 2 + hashes;
                while index < chars.len() && !chars[index..].starts_with(&closing) {
                    index += 1;
                }
                index += closing.len();
                code.push_str("\"\"");
                continue;
            }
        }
        if c_is(rest, '"') {
            index += 1;
            while index < chars.len() && chars[index] != '"' {
                index += if chars[index] == '\\' { 2 } else { 1 };
            }
            index += 1;
            code.push_str("\"\"");
            continue;
        }
        if c_is(rest, '\'') {
            // A character literal ('x', '\n', '\u{1F600}'); otherwise a lifetime or a label.
            let end = if rest.get(1) == Some(&'\\') {
                rest.iter()
                    .skip(3)
                    .position(|c| *c == '\'')
                    .map(|at| at + 4)
            } else if rest.get(2) == Some(&'\'') {
                Some(3)
            } else {
                None
            };
            if let Some(end) = end {
                index += end;
                code.push_str("' '");
                continue;
            }
        }
        code.push(chars[index]);
        index += 1;
    }
    code
}

fn c_is(rest: &[char], expected: char) -> bool {
    rest.first() == Some(&expected)
}
