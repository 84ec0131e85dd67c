//! What the service and its clients agree on byte for byte: for now the names of the headers
//! (gRPC metadata keys) the service reads and writes.

pub mod headers;
