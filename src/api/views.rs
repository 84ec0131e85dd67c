//! `supportdesk.v1.ViewService`: saved ticket views and their counts (docs/tickets.md,
//! "Views").

use tonic::{Request, Response, Status};

use super::{KeyedRequest, ListPages, answer, created, required, scope, stored_as, uuid_field};
use crate::domain::{
    Etag, InvalidValue, MAX_VIEWS_COUNTED, PageTokenKeys, View, ViewFilter, ViewName, ViewOrder,
    ViewReadMask,
};
use crate::errors::{AppError, FieldViolations};
use crate::idempotency::IdempotencyPolicy;
use crate::service::{NewView, ViewUpdate, Views};
use crate::wire::convert::view::view_scope;
use crate::wire::proto::v1;

/// The name page tokens of ListViews carry.
const LIST: &str = "views";

pub struct ViewApi {
    views: Views,
    idempotency: IdempotencyPolicy,
    pages: PageTokenKeys,
}

impl ViewApi {
    pub fn new(views: Views, idempotency: IdempotencyPolicy, pages: PageTokenKeys) -> Self {
        Self {
            views,
            idempotency,
            pages,
        }
    }
}

fn respond(view: &View) -> Response<v1::View> {
    Response::new(v1::View::from(view))
}

fn mask_paths(mask: Option<&prost_types::FieldMask>) -> &[String] {
    mask.map_or(&[], |mask| mask.paths.as_slice())
}

#[tonic::async_trait]
impl v1::view_service_server::ViewService for ViewApi {
    async fn create_view(
        &self,
        mut request: Request<v1::CreateViewRequest>,
    ) -> Result<Response<v1::View>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let mut violations = FieldViolations::new();
        let Some(view) = request.into_inner().view else {
            violations.add("view", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let name = violations.check("view.name", ViewName::parse(&view.name));
        let filter = violations.check("view.filter", ViewFilter::parse(&view.filter));
        let order_by = violations.check("view.order_by", ViewOrder::parse(&view.order_by));
        let read_mask = violations.check(
            "view.read_mask",
            ViewReadMask::parse(mask_paths(view.read_mask.as_ref())),
        );
        let group_id = if view.group_id.is_empty() {
            Some(None)
        } else {
            violations
                .check("view.group_id", uuid_field(&view.group_id))
                .map(Some)
        };
        let scope = group_id.and_then(|group_id| match view_scope(view.scope, group_id) {
            Ok(scope) => Some(scope),
            Err((field, problem)) => {
                violations.add(format!("view.{field}"), &problem);
                None
            }
        });
        let (Some(name), Some(filter), Some(order_by), Some(read_mask), Some(scope)) =
            (name, filter, order_by, read_mask, scope)
        else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let new = NewView {
            name,
            filter,
            order_by,
            read_mask,
            scope,
            position: view.position,
        };
        let respond_created =
            |view: &View| created(respond(view), &format!("/v1/views/{}", view.id));
        let store = stored_as(&respond_created);
        let outcome = self.views.create(&keyed.write(&store), new).await?;
        answer(outcome, &respond_created)
    }

    async fn get_view(
        &self,
        mut request: Request<v1::GetViewRequest>,
    ) -> Result<Response<v1::View>, Status> {
        let scope = scope(&mut request)?;
        let id = uuid_field(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        Ok(respond(&self.views.get(&scope, id).await?))
    }

    async fn list_views(
        &self,
        mut request: Request<v1::ListViewsRequest>,
    ) -> Result<Response<v1::ListViewsResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        // A token of one user's list is no token of another's: they see different views.
        let list = format!(
            "{LIST}:{}",
            caller
                .user_id()
                .map_or_else(String::new, |user| user.to_string())
        );
        let pages = ListPages::new(&self.pages, caller, &list);
        let (page_size, after) = pages.request(message.page_size, &message.page_token)?;
        let page = self.views.list(&scope, page_size, after).await?;
        Ok(Response::new(v1::ListViewsResponse {
            views: page.items.iter().map(v1::View::from).collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn update_view(
        &self,
        mut request: Request<v1::UpdateViewRequest>,
    ) -> Result<Response<v1::View>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let Some(view) = message.view else {
            violations.add("view", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let id = violations.check("view.id", uuid_field(&view.id));
        let paths = message
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        const FIELDS: &str = "name, filter, order_by, read_mask, position";
        if paths.is_empty() {
            violations.add(
                "update_mask",
                &InvalidValue::new(format!("must name one or more of: {FIELDS}")),
            );
        }
        let mut update = ViewUpdate::default();
        if !view.etag.is_empty() {
            update.etag = violations
                .check("view.etag", Etag::parse(&view.etag))
                .map(|etag| etag.version());
        }
        for path in &paths {
            match path.as_str() {
                "name" => update.name = violations.check("view.name", ViewName::parse(&view.name)),
                "filter" => {
                    update.filter =
                        violations.check("view.filter", ViewFilter::parse(&view.filter));
                }
                "order_by" | "orderBy" => {
                    update.order_by =
                        violations.check("view.order_by", ViewOrder::parse(&view.order_by));
                }
                "read_mask" | "readMask" => {
                    update.read_mask = violations.check(
                        "view.read_mask",
                        ViewReadMask::parse(mask_paths(view.read_mask.as_ref())),
                    );
                }
                "position" => update.position = Some(view.position),
                other => violations.add(
                    "update_mask",
                    &InvalidValue::new(format!(
                        "{other:?} cannot be changed; the fields are {FIELDS} (a view's scope \
                         never changes)"
                    )),
                ),
            }
        }
        let Some(id) = id else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        if !violations.is_empty() {
            return Err(AppError::InvalidArgument(violations).into());
        }
        let store = stored_as(&respond);
        let outcome = self.views.update(&keyed.write(&store), id, update).await?;
        answer(outcome, &respond)
    }

    async fn delete_view(
        &self,
        mut request: Request<v1::DeleteViewRequest>,
    ) -> Result<Response<v1::DeleteViewResponse>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let id = uuid_field(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        let respond = |(): &()| Response::new(v1::DeleteViewResponse {});
        let store = stored_as(&respond);
        let outcome = self.views.delete(&keyed.write(&store), id).await?;
        answer(outcome, &respond)
    }

    async fn count_views(
        &self,
        mut request: Request<v1::CountViewsRequest>,
    ) -> Result<Response<v1::CountViewsResponse>, Status> {
        let scope = scope(&mut request)?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        if message.view_ids.len() > MAX_VIEWS_COUNTED {
            violations.add(
                "view_ids",
                &InvalidValue::new(format!(
                    "names {} views; at most {MAX_VIEWS_COUNTED} are counted at once",
                    message.view_ids.len()
                )),
            );
            return Err(AppError::InvalidArgument(violations).into());
        }
        let mut ids = Vec::with_capacity(message.view_ids.len());
        for (index, raw) in message.view_ids.iter().enumerate() {
            if let Some(id) = violations.check(format!("view_ids[{index}]"), uuid_field(raw)) {
                ids.push(id);
            }
        }
        if !violations.is_empty() {
            return Err(AppError::InvalidArgument(violations).into());
        }
        let counts = self.views.count(&scope, &ids).await?;
        Ok(Response::new(v1::CountViewsResponse {
            counts: counts.iter().map(v1::ViewCount::from).collect(),
        }))
    }
}
