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
