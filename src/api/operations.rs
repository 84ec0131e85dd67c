//! `google.longrunning.Operations` (AIP-151), scoped to the caller's account: the operations
//! ImportTickets starts, their progress as typed metadata (`ImportTicketsMetadata`), and their
//! result (`ImportTicketsResponse`) or `google.rpc.Status`, packed in `Any` with
//! `type.googleapis.com/` type URLs that Envoy resolves through the descriptor set.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message;
use tonic::{Request, Response, Status};
use tonic_types::StatusExt;

use super::{ListPages, optional_timestamp, scope, timestamp};
use crate::domain::{
    Operation, OperationFailure, OperationFilter, OperationId, OperationKind, OperationState,
    PageTokenKeys,
};
use crate::errors::{AppError, ERROR_DOMAIN, FieldViolations, Reason};
use crate::service::Operations;
use crate::wire::proto::google::longrunning as lro;
use crate::wire::proto::google::rpc;
use crate::wire::proto::v1;

/// The collection ListOperations names over REST (`GET /v1/operations`).
const COLLECTION: &str = "operations";

/// How long WaitOperation waits when the request names no timeout.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// What WaitOperation leaves of the request's deadline, to answer in time.
const WAIT_MARGIN: Duration = Duration::from_millis(500);

pub struct OperationApi {
    operations: Operations,
    pages: PageTokenKeys,
}

impl OperationApi {
    pub fn new(operations: Operations, pages: PageTokenKeys) -> Self {
        Self { operations, pages }
    }
}

fn parse_name(name: &str) -> Result<OperationId, AppError> {
    OperationId::parse_name(name).map_err(|problem| AppError::invalid_field("name", &problem))
}

#[tonic::async_trait]
impl lro::operations_server::Operations for OperationApi {
    async fn list_operations(
        &self,
        mut request: Request<lro::ListOperationsRequest>,
    ) -> Result<Response<lro::ListOperationsResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        if !message.name.is_empty() && message.name != COLLECTION {
            violations.add(
                "name",
                &crate::domain::InvalidValue::new("must be `operations` or empty"),
            );
        }
        let filter = violations.check("filter", OperationFilter::parse(&message.filter));
        let list = filter
            .as_ref()
            .map(|filter| format!("operations:{}", filter.fingerprint()));
        let page = ListPages::checked(
            &self.pages,
            caller,
            list.as_deref(),
            &mut violations,
            message.page_size,
            &message.page_token,
        );
        let (Some(filter), Some((pages, page_size, after))) =
            (filter.filter(|_| violations.is_empty()), page)
        else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let page = self
            .operations
            .list(&scope, &filter, page_size, after)
            .await?;
        Ok(Response::new(lro::ListOperationsResponse {
            operations: page.items.iter().map(lro::Operation::from).collect(),
            next_page_token: pages.next_token(page.next),
            unreachable: Vec::new(),
        }))
    }

    async fn get_operation(
        &self,
        mut request: Request<lro::GetOperationRequest>,
    ) -> Result<Response<lro::Operation>, Status> {
        let scope = scope(&mut request)?;
        let id = parse_name(&request.get_ref().name)?;
        let operation = self.operations.get(&scope, id).await?;
        Ok(Response::new(lro::Operation::from(&operation)))
    }

    async fn delete_operation(
        &self,
        mut request: Request<lro::DeleteOperationRequest>,
    ) -> Result<Response<()>, Status> {
        let scope = scope(&mut request)?;
        let id = parse_name(&request.get_ref().name)?;
        self.operations.delete(&scope, id).await?;
        Ok(Response::new(()))
    }

    async fn cancel_operation(
        &self,
        mut request: Request<lro::CancelOperationRequest>,
    ) -> Result<Response<()>, Status> {
        let scope = scope(&mut request)?;
        let id = parse_name(&request.get_ref().name)?;
        self.operations.cancel(&scope, id).await?;
        Ok(Response::new(()))
    }

    async fn wait_operation(
        &self,
        mut request: Request<lro::WaitOperationRequest>,
    ) -> Result<Response<lro::Operation>, Status> {
        let scope = scope(&mut request)?;
        let message = request.get_ref();
        let id = parse_name(&message.name)?;
        let asked = match &message.timeout {
            None => DEFAULT_WAIT,
            Some(timeout) => Duration::try_from(*timeout).map_err(|_| {
                AppError::invalid_field(
                    "timeout",
                    &crate::domain::InvalidValue::new("must not be negative"),
                )
            })?,
        };
        let timeout = asked.min(scope.remaining().saturating_sub(WAIT_MARGIN));
        let operation = self.operations.wait(&scope, id, timeout).await?;
        Ok(Response::new(lro::Operation::from(&operation)))
    }
}

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
