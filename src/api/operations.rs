//! `google.longrunning.Operations` (AIP-151), scoped to the caller's account: the operations
//! ImportTickets starts. How an operation reads on the wire (its typed metadata, its result or
//! `google.rpc.Status`, packed in `Any`) is `wire::convert::operation`.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::{ListPages, scope};
use crate::domain::{OperationFilter, OperationId, PageTokenKeys};
use crate::errors::{AppError, FieldViolations};
use crate::service::Operations;
use crate::wire::proto::google::longrunning as lro;

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
