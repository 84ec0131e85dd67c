//! `supportdesk.v1.GroupService`: groups of agents and their members (docs/tickets.md,
//! "Groups").

use tonic::{Request, Response, Status};

use super::{KeyedRequest, ListPages, answer, created, required, scope, stored_as, uuid_field};
use crate::domain::{Group, GroupDescription, GroupMember, GroupName, InvalidValue, PageTokenKeys};
use crate::errors::{AppError, FieldViolations};
use crate::idempotency::IdempotencyPolicy;
use crate::service::{GroupUpdate, Groups};
use crate::wire::proto::v1;

/// The name page tokens of ListGroups carry (`groups:<user>` when filtered by a member).
const LIST: &str = "groups";
/// The same for a group's members (`group-members:<group>`).
const MEMBERS: &str = "group-members";

pub struct GroupApi {
    groups: Groups,
    idempotency: IdempotencyPolicy,
    pages: PageTokenKeys,
}

impl GroupApi {
    pub fn new(groups: Groups, idempotency: IdempotencyPolicy, pages: PageTokenKeys) -> Self {
        Self {
            groups,
            idempotency,
            pages,
        }
    }
}

fn respond(group: &Group) -> Response<v1::Group> {
    Response::new(v1::Group::from(group))
}

#[tonic::async_trait]
impl v1::group_service_server::GroupService for GroupApi {
    async fn create_group(
        &self,
        mut request: Request<v1::CreateGroupRequest>,
    ) -> Result<Response<v1::Group>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let mut violations = FieldViolations::new();
        let Some(group) = request.into_inner().group else {
            violations.add("group", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let name = violations.check("group.name", GroupName::parse(&group.name));
        let description = violations.check(
            "group.description",
            GroupDescription::parse(&group.description),
        );
        let (Some(name), Some(description)) = (name, description) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let respond_created =
            |group: &Group| created(respond(group), &format!("/v1/groups/{}", group.id));
        let store = stored_as(&respond_created);
        let outcome = self
            .groups
            .create(&keyed.write(&store), name, description)
            .await?;
        answer(outcome, &respond_created)
    }

    async fn get_group(
        &self,
        mut request: Request<v1::GetGroupRequest>,
    ) -> Result<Response<v1::Group>, Status> {
        let scope = scope(&mut request)?;
        let id = uuid_field(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        Ok(respond(&self.groups.get(&scope, id).await?))
    }

    async fn list_groups(
        &self,
        mut request: Request<v1::ListGroupsRequest>,
    ) -> Result<Response<v1::ListGroupsResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let member = if message.user_id.is_empty() {
            None
        } else {
            Some(
                uuid_field(&message.user_id)
                    .map_err(|problem| AppError::invalid_field("user_id", &problem))?,
            )
        };
        // A token of one member's list is no token of another's.
        let list = member.map_or_else(|| LIST.to_owned(), |user| format!("{LIST}:{user}"));
        let pages = ListPages::new(&self.pages, caller, &list);
        let (page_size, after) = pages.request(message.page_size, &message.page_token)?;
        let page = self.groups.list(&scope, member, page_size, after).await?;
        Ok(Response::new(v1::ListGroupsResponse {
            groups: page.items.iter().map(v1::Group::from).collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn update_group(
        &self,
        mut request: Request<v1::UpdateGroupRequest>,
    ) -> Result<Response<v1::Group>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let message = request.into_inner();
        let mut violations = FieldViolations::new();
        let Some(group) = message.group else {
            violations.add("group", &required());
            return Err(AppError::InvalidArgument(violations).into());
        };
        let id = violations.check("group.id", uuid_field(&group.id));
        let paths = message
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            violations.add(
                "update_mask",
                &InvalidValue::new("must name one or more of: name, description"),
            );
        }
        let mut update = GroupUpdate::default();
        for path in &paths {
            match path.as_str() {
                "name" => {
                    update.name = violations.check("group.name", GroupName::parse(&group.name));
                }
                "description" => {
                    update.description = violations.check(
                        "group.description",
                        GroupDescription::parse(&group.description),
                    );
                }
                other => violations.add(
                    "update_mask",
                    &InvalidValue::new(format!(
                        "{other:?} cannot be changed; the fields are name, description"
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
        let outcome = self.groups.update(&keyed.write(&store), id, update).await?;
        answer(outcome, &respond)
    }

    async fn delete_group(
        &self,
        mut request: Request<v1::DeleteGroupRequest>,
    ) -> Result<Response<v1::DeleteGroupResponse>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let id = uuid_field(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        let respond = |(): &()| Response::new(v1::DeleteGroupResponse {});
        let store = stored_as(&respond);
        let outcome = self.groups.delete(&keyed.write(&store), id).await?;
        answer(outcome, &respond)
    }

    async fn add_group_member(
        &self,
        mut request: Request<v1::AddGroupMemberRequest>,
    ) -> Result<Response<v1::GroupMember>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let (group_id, user_id) = member_ids(
            request.get_ref().group_id.as_str(),
            request.get_ref().user_id.as_str(),
        )?;
        let respond = |member: &GroupMember| Response::new(v1::GroupMember::from(member));
        let store = stored_as(&respond);
        let outcome = self
            .groups
            .add_member(&keyed.write(&store), group_id, user_id)
            .await?;
        answer(outcome, &respond)
    }

    async fn remove_group_member(
        &self,
        mut request: Request<v1::RemoveGroupMemberRequest>,
    ) -> Result<Response<v1::RemoveGroupMemberResponse>, Status> {
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let (group_id, user_id) = member_ids(
            request.get_ref().group_id.as_str(),
            request.get_ref().user_id.as_str(),
        )?;
        let respond = |(): &()| Response::new(v1::RemoveGroupMemberResponse {});
        let store = stored_as(&respond);
        let outcome = self
            .groups
            .remove_member(&keyed.write(&store), group_id, user_id)
            .await?;
        answer(outcome, &respond)
    }

    async fn list_group_members(
        &self,
        mut request: Request<v1::ListGroupMembersRequest>,
    ) -> Result<Response<v1::ListGroupMembersResponse>, Status> {
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let (group_id, pages, page_size, after) = ListPages::of_parent(
            &self.pages,
            caller,
            MEMBERS,
            ("group_id", uuid_field(&message.group_id)),
            (message.page_size, &message.page_token),
        )?;
        let page = self
            .groups
            .members(&scope, group_id, page_size, after)
            .await?;
        Ok(Response::new(v1::ListGroupMembersResponse {
            group_members: page.items.iter().map(v1::GroupMember::from).collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }
}

/// The group and the user a membership RPC names, both checked.
fn member_ids(group_id: &str, user_id: &str) -> Result<(uuid::Uuid, uuid::Uuid), AppError> {
    let mut violations = FieldViolations::new();
    let group_id = violations.check("group_id", uuid_field(group_id));
    let user_id = violations.check("user_id", uuid_field(user_id));
    match (group_id, user_id) {
        (Some(group_id), Some(user_id)) => Ok((group_id, user_id)),
        _ => Err(AppError::InvalidArgument(violations)),
    }
}
