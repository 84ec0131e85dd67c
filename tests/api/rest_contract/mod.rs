//! The REST contract proven from the outside, with tools nobody here wrote: the OpenAPI document
//! generated from the protos (current, valid, served by Envoy), schemathesis fuzzing every
//! operation through real Envoy against it, `buf breaking` against the stored contract, and a
//! TypeScript client generated from the document calling the running stack (docs/openapi.md).

pub(crate) mod breaking;
pub(crate) mod client;
pub(crate) mod document;
pub(crate) mod fuzzing;

use std::path::PathBuf;

use crate::support::repository_root;

/// The checked-in document.
pub(crate) fn checked_in_document() -> PathBuf {
    repository_root().join("docs/openapi.json")
}

/// The checked-in document's paths, each variable given `value`: (concrete path, its path item).
pub(crate) fn concrete_paths(value: &str) -> Vec<(String, serde_json::Value)> {
    let text = std::fs::read_to_string(checked_in_document()).expect("read docs/openapi.json");
    let document: serde_json::Value = serde_json::from_str(&text).expect("the document is JSON");
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .map(|(template, item)| {
            let mut concrete = String::new();
            let mut in_variable = false;
            for character in template.chars() {
                match character {
                    '{' => {
                        in_variable = true;
                        concrete.push_str(value);
                    }
                    '}' => in_variable = false,
                    other if !in_variable => concrete.push(other),
                    _ => {}
                }
            }
            (concrete, item.clone())
        })
        .collect()
}
