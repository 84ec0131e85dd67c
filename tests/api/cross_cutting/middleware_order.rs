//! The middleware order is written once, in the code: the numbered list of the `//!` doc of
//! `src/middleware/mod.rs`, beside the `ServiceBuilder` chain it describes. README and
//! docs/architecture.md repeat it between `middleware order` markers (`<!-- middleware order -->`
//! in Markdown, `%% middleware order` in a mermaid diagram); this checks that each repeats it as
//! the code has it. The names are read from the code, so a layer added or renamed there only
//! needs the docs to follow.

use crate::support::repository_root;

/// The documents that repeat the order, each between its markers.
const REPEATED_IN: &[(&str, &str, &str)] = &[
    (
        "README.md",
        "<!-- middleware order -->",
        "<!-- /middleware order -->",
    ),
    (
        "docs/architecture.md",
        "%% middleware order",
        "%% /middleware order",
    ),
];

#[test]
fn the_readme_and_the_architecture_list_the_middleware_in_the_order_of_the_code() {
    let root = repository_root();
    let module =
        std::fs::read_to_string(root.join("src/middleware/mod.rs")).expect("src/middleware/mod.rs");
    let order = order_in_module_doc(&module);
    assert!(
        order.len() >= 2,
        "src/middleware/mod.rs's `//!` doc lists no layers as `//! 1. name: ...`: {order:?}"
    );
    for (document, start, end) in REPEATED_IN {
        let text = std::fs::read_to_string(root.join(document)).expect(document);
        let listed = order_between_markers(&text, start, end)
            .unwrap_or_else(|problem| panic!("{document}: {problem}"));
        assert_eq!(
            listed, order,
            "{document} lists the middleware (between `{start}` and `{end}`) in another order \
             than src/middleware/mod.rs's `//!` list (left: {document}, right: the code)"
        );
    }
}

#[test]
fn the_order_is_read_as_the_docs_write_it() {
    let module = "//! The stack.\n//!\n//! 1. request id: taken or made;\n//! 2. trace: a span\n\
                  //!    per RPC;\n//! 10. idempotency key: read.\n\nmod x;\n//! 3. not: doc\n";
    assert_eq!(
        order_in_module_doc(module),
        ["request id", "trace", "idempotency key"]
    );
    let readme = "tree\n<!-- m -->\nIn order: request id → trace (a span,\nper RPC) → \
                  idempotency key.\n<!-- /m -->\n";
    assert_eq!(
        order_between_markers(readme, "<!-- m -->", "<!-- /m -->").unwrap(),
        ["request id", "trace", "idempotency key"]
    );
    let mermaid = "  %% m\n  stack[\"middleware/ (stack)<br/>request id → trace →<br/>\
                   idempotency key\"]\n  %% /m\n";
    assert_eq!(
        order_between_markers(mermaid, "%% m", "%% /m").unwrap(),
        ["request id", "trace", "idempotency key"]
    );
    assert!(order_between_markers("request id → trace", "%% m", "%% /m").is_err());
    assert!(order_between_markers("%% m\na → b: c → d\n%% /m", "%% m", "%% /m").is_err());
}

/// The names of the `//!` doc's numbered list (`//! N. name: what it does`), in order: the
/// module doc ends at its first line that is not `//!`.
fn order_in_module_doc(module: &str) -> Vec<String> {
    module
        .lines()
        .map_while(|line| line.strip_prefix("//!"))
        .filter_map(|line| {
            let (number, rest) = line.trim_start().split_once(". ")?;
            if number.is_empty() || !number.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            let (name, _) = rest.split_once(':')?;
            Some(name.trim().to_owned())
        })
        .collect()
}

/// The names of the one `a → b → c` chain between the markers. What is in parentheses is a
/// remark, not a name; `"`, `:`, `[`, `]` and backquotes end the chain's text, so it may be
/// introduced by a label or a colon; so does a line break (`<br/>` too) before its first name or
/// after its last, while one inside a name is a space.
fn order_between_markers(text: &str, start: &str, end: &str) -> Result<Vec<String>, String> {
    let region = text
        .split_once(start)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(region, _)| region)
        .ok_or_else(|| format!("no text between `{start}` and `{end}`"))?;
    let mut plain = String::new();
    let mut depth = 0usize;
    for character in region.replace("<br/>", "\n").chars() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(character),
            _ => {}
        }
    }
    let chains: Vec<&str> = plain
        .split(['"', ':', '[', ']', '`'])
        .filter(|piece| piece.contains('→'))
        .collect();
    let [chain] = chains.as_slice() else {
        return Err(format!(
            "{} chains `a → b` between `{start}` and `{end}`, not one: {chains:?}",
            chains.len()
        ));
    };
    let mut names: Vec<&str> = chain.split('→').collect();
    if let Some(first) = names.first_mut() {
        *first = first.trim_end().rsplit('\n').next().unwrap_or_default();
    }
    if let Some(last) = names.last_mut() {
        *last = last.trim_start().split('\n').next().unwrap_or_default();
    }
    Ok(names
        .into_iter()
        .map(|name| {
            name.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .trim_end_matches('.')
                .to_owned()
        })
        .collect())
}
