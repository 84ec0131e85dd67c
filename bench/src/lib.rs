//! The benchmark harness of supportdesk, as a library shared by its two binaries: `hello` (a plain
//! tonic server, the ceiling every service figure is compared with) and `loadgen` (sets up data
//! through the public API, then drives gRPC or HTTP/1.1 load, or has `oha` drive the fixed-request
//! REST scenarios, and reports throughput, status codes and latency percentiles).

pub mod data;
pub mod load;
pub mod oha;
pub mod probes;
pub mod profile;
pub mod read_volume;
pub mod report;
pub mod rest;
pub mod rest_load;
pub mod scenario;
pub mod setup;
pub mod table;
pub mod volume;
pub mod webhook_lag;
pub mod wire_bytes;

/// `bench.hello.v1`: the Greeter of `proto/hello.proto`.
pub mod hello {
    #[allow(clippy::all, reason = "generated code")]
    mod generated {
        tonic::include_proto!("bench.hello.v1");
    }
    pub use generated::*;

    /// hello.proto with its imports and the `google.api.http` option: what Envoy transcodes with.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/hello_descriptor.bin"));
}
