//! Saved views and their counts as the API shows them, and a view's scope from the wire.

use super::timestamp;
use crate::domain::{InvalidValue, View, ViewCount, ViewScope};
use crate::wire::proto::v1;

impl From<&View> for v1::View {
    fn from(view: &View) -> Self {
        let scope = match view.scope {
            ViewScope::Personal => v1::ViewScope::Personal,
            ViewScope::Group(_) => v1::ViewScope::Group,
            ViewScope::Account => v1::ViewScope::Account,
        };
        v1::View {
            id: view.id.to_string(),
            name: view.name.as_str().to_owned(),
            filter: view.filter.as_str().to_owned(),
            order_by: view.order_by.as_str().to_owned(),
            read_mask: (!view.read_mask.paths().is_empty()).then(|| prost_types::FieldMask {
                paths: view.read_mask.paths().to_vec(),
            }),
            scope: scope.into(),
            group_id: view
                .scope
                .group_id()
                .map(|group| group.to_string())
                .unwrap_or_default(),
            owner_id: view.owner_id.to_string(),
            position: view.position,
            create_time: Some(timestamp(view.created_at)),
            update_time: Some(timestamp(view.updated_at)),
            etag: view.etag(),
        }
    }
}

impl From<&ViewCount> for v1::ViewCount {
    fn from(count: &ViewCount) -> Self {
        v1::ViewCount {
            view_id: count.view_id.to_string(),
            count: i32::try_from(count.count).unwrap_or(i32::MAX),
            capped: count.capped,
        }
    }
}

/// A view's scope from its wire enum and `group_id` (already a parsed UUID, or `None` when
/// empty): the group is required for VIEW_SCOPE_GROUP and refused otherwise. The problem is
/// named by the field it is about (`scope` or `group_id`).
pub fn view_scope(
    scope: i32,
    group_id: Option<uuid::Uuid>,
) -> Result<ViewScope, (&'static str, InvalidValue)> {
    let scope = v1::ViewScope::try_from(scope).map_err(|_| {
        (
            "scope",
            InvalidValue::new(format!("{scope} is not a ViewScope")),
        )
    })?;
    match (scope, group_id) {
        (v1::ViewScope::Unspecified, _) => Err((
            "scope",
            InvalidValue::new(
                "is required: VIEW_SCOPE_PERSONAL, VIEW_SCOPE_GROUP or VIEW_SCOPE_ACCOUNT",
            ),
        )),
        (v1::ViewScope::Group, Some(group)) => Ok(ViewScope::Group(group)),
        (v1::ViewScope::Group, None) => Err((
            "group_id",
            InvalidValue::new("is required for a VIEW_SCOPE_GROUP view"),
        )),
        (v1::ViewScope::Personal | v1::ViewScope::Account, Some(_)) => Err((
            "group_id",
            InvalidValue::new("is only set for a VIEW_SCOPE_GROUP view"),
        )),
        (v1::ViewScope::Personal, None) => Ok(ViewScope::Personal),
        (v1::ViewScope::Account, None) => Ok(ViewScope::Account),
    }
}
