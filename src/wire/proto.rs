//! Code generated from `proto/` by build.rs, and the encoded descriptor set that reflection and
//! Envoy's transcoder read.

/// `supportdesk.v1`: the service's own API.
pub mod supportdesk {
    #[allow(clippy::all, reason = "generated code")]
    pub mod v1 {
        tonic::include_proto!("supportdesk.v1");
    }
}

/// `google.api`, `google.rpc` and `google.longrunning` (the Operations service the API serves):
/// compiled so that the descriptor set carries them.
pub mod google {
    #[allow(clippy::all, reason = "generated code")]
    pub mod api {
        tonic::include_proto!("google.api");
    }
    #[allow(clippy::all, reason = "generated code")]
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
    #[allow(clippy::all, reason = "generated code")]
    pub mod longrunning {
        tonic::include_proto!("google.longrunning");
    }
}

pub use supportdesk::v1;

/// Every file of the API with its imports (google/api, google/rpc, google/protobuf), source info
/// and the `google.api.http` options: what `supportdesk descriptor` writes for Envoy.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/supportdesk_descriptor.bin"));
