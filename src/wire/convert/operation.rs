//! Operations (`google.longrunning.Operation`) as the API shows them: ImportTickets' progress as
//! typed metadata (`ImportTicketsMetadata`), its result (`ImportTicketsResponse`) or a
//! `google.rpc.Status`, packed in `Any` with `type.googleapis.com/` type URLs that Envoy
//! resolves through the descriptor set.

use std::collections::HashMap;

use prost::Message;
use tonic::Status;
use tonic_types::StatusExt;

use super::{optional_timestamp, timestamp};
use crate::domain::{Operation, OperationFailure, OperationKind, OperationState};
use crate::errors::{ERROR_DOMAIN, Reason};
use crate::wire::proto::google::longrunning as lro;
use crate::wire::proto::google::rpc;
use crate::wire::proto::v1;

/// A failed operation's error with the details every error carries: ErrorInfo with its code's
/// reason, and for INVALID_ARGUMENT (the only one a failure stores: the content could not be
/// read) a BadRequest naming `content`. The stored message is kept: it says what failed.
impl From<OperationFailure> for rpc::Status {
    fn from(failure: OperationFailure) -> Self {
        let code = tonic::Code::from_i32(failure.code);
        let mut details = tonic_types::ErrorDetails::new();
        let reason = if code == tonic::Code::InvalidArgument {
            let problem = failure
                .message
                .strip_prefix("content ")
                .unwrap_or(&failure.message);
            details.set_bad_request(vec![tonic_types::FieldViolation::new("content", problem)]);
            Reason::InvalidArgument
        } else {
            Reason::Internal
        };
        details.set_error_info(reason.as_str(), ERROR_DOMAIN, HashMap::new());
        let status = Status::with_error_details(code, failure.message.clone(), details);
        rpc::Status::decode(status.details()).unwrap_or(rpc::Status {
            code: failure.code,
            message: failure.message,
            details: Vec::new(),
        })
    }
}

/// An operation as the API shows it.
impl From<&Operation> for lro::Operation {
    fn from(operation: &Operation) -> Self {
        let metadata = match operation.kind {
            OperationKind::ImportTickets => prost_types::Any::from_msg(&import_metadata(operation)),
        };
        let response = import_response(operation);
        let result = match operation.state {
            OperationState::Queued | OperationState::Running => None,
            OperationState::Succeeded => prost_types::Any::from_msg(&response)
                .ok()
                .map(lro::operation::Result::Response),
            OperationState::Failed => Some(lro::operation::Result::Error(rpc::Status::from(
                operation.failure.clone().unwrap_or_default(),
            ))),
            // What the import did before it stopped stays: the counts and row errors ride along.
            OperationState::Cancelled => Some(lro::operation::Result::Error(rpc::Status {
                code: tonic::Code::Cancelled as i32,
                message: format!(
                    "cancelled after {} of {} rows; {} imported",
                    operation.rows_read, operation.rows_total, operation.rows_imported
                ),
                details: prost_types::Any::from_msg(&response).into_iter().collect(),
            })),
        };
        lro::Operation {
            name: operation.id.name(),
            metadata: metadata.ok(),
            done: operation.state.is_done(),
            result,
        }
    }
}

fn import_metadata(operation: &Operation) -> v1::ImportTicketsMetadata {
    v1::ImportTicketsMetadata {
        state: v1::OperationState::from(operation.state) as i32,
        rows_total: operation.rows_total,
        rows_read: operation.rows_read,
        rows_imported: operation.rows_imported,
        rows_failed: operation.rows_failed,
        percent: operation.percent(),
        cancel_requested: operation.cancel_requested,
        create_time: Some(timestamp(operation.created_at)),
        update_time: Some(timestamp(operation.updated_at)),
        end_time: optional_timestamp(operation.done_at),
    }
}

fn import_response(operation: &Operation) -> v1::ImportTicketsResponse {
    v1::ImportTicketsResponse {
        rows_imported: operation.rows_imported,
        rows_failed: operation.rows_failed,
        row_errors: operation
            .row_errors
            .iter()
            .map(|error| v1::ImportRowError {
                row: error.row,
                field: error.field.clone(),
                reason: error.reason.clone(),
            })
            .collect(),
        row_errors_truncated: operation.row_errors_truncated(),
    }
}

impl From<OperationState> for v1::OperationState {
    fn from(state: OperationState) -> Self {
        match state {
            OperationState::Queued => v1::OperationState::Queued,
            OperationState::Running => v1::OperationState::Running,
            OperationState::Succeeded => v1::OperationState::Succeeded,
            OperationState::Failed => v1::OperationState::Failed,
            OperationState::Cancelled => v1::OperationState::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Name;

    use super::*;

    #[test]
    fn packed_types_carry_the_type_url_envoy_resolves() {
        assert_eq!(
            v1::ImportTicketsMetadata::type_url(),
            "type.googleapis.com/supportdesk.v1.ImportTicketsMetadata"
        );
        assert_eq!(
            v1::ImportTicketsResponse::type_url(),
            "type.googleapis.com/supportdesk.v1.ImportTicketsResponse"
        );
    }
}
