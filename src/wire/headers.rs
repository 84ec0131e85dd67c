//! The names of the headers (gRPC metadata keys) the service reads or writes itself, in one place
//! so that a layer, a handler and the error mapping cannot disagree on a spelling. Lower case, as
//! HTTP/2 sends them.

/// The header (gRPC metadata entry) carrying the request id, taken from the caller or generated.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The metadata entry a client names a retryable write with.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The response header Envoy turns into the HTTP status of a success, or of an error whose reason
/// has a REST status of its own (deploy/envoy/envoy.yaml). Named by the error mapping, which
/// writes it and sits below this room.
pub use crate::errors::HTTP_STATUS_HEADER;

/// The response header Envoy turns into a REST answer's `content-type` (a stream's
/// `application/x-ndjson`), which gRPC cannot say (deploy/envoy/envoy.yaml).
pub const HTTP_CONTENT_TYPE_HEADER: &str = "x-http-content-type";

/// The challenge of every UNAUTHENTICATED answer (a REST 401's `WWW-Authenticate`). Named by the
/// error mapping, which writes it.
pub use crate::errors::WWW_AUTHENTICATE_HEADER;

/// The delay of every answer that carries a RetryInfo, in whole seconds (a REST answer's
/// `Retry-After`). Named by the error mapping, which writes it.
pub use crate::errors::RETRY_AFTER_HEADER;

/// The header the transcoder puts the path (and query) the client called in.
pub const ORIGINAL_PATH_HEADER: &str = "x-envoy-original-path";

/// The header the transcoder puts the HTTP method the client used in.
pub const ORIGINAL_METHOD_HEADER: &str = "x-envoy-original-method";
