//! Groups of agents, as admins manage them and agents read them (docs/tickets.md, "Groups"):
//! create, read, list (all, or a user's), rename, delete (soft, refused while open tickets are
//! assigned), and the members, who are agents or admins of the account.

use uuid::Uuid;

use super::{Page, on_unique_violation, paginate, rows_to_fetch};
use crate::db::models::{GroupMemberRow, GroupRow, UserRow};
use crate::db::{self, PgPool};
use crate::domain::{
    Group, GroupDescription, GroupMember, GroupName, InvalidValue, MAX_GROUPS_PER_ACCOUNT,
    PageCursor, PageSize, Role,
};
use crate::errors::{AppError, AppResult, PreconditionViolation, Reason, Resource};
use crate::idempotency::{self, KeyedWrite, Outcome, as_is};
use crate::scope::RequestScope;

/// The unique index that holds a live group's name unique in its account.
const NAME_INDEX: &str = "groups_account_name_idx";

/// A change of a group, as the mask named its fields.
#[derive(Clone, Debug, Default)]
pub struct GroupUpdate {
    pub name: Option<GroupName>,
    pub description: Option<GroupDescription>,
}

#[derive(Clone)]
pub struct Groups {
    pool: PgPool,
}

fn name_taken(name: &GroupName) -> AppError {
    AppError::AlreadyExists {
        reason: Reason::GroupNameTaken,
        message: format!(
            "name: the account already has a group named {:?}",
            name.as_str()
        ),
    }
}

impl Groups {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates a group, unless the account has [`MAX_GROUPS_PER_ACCOUNT`] live ones or a live
    /// group of the same name.
    pub async fn create(
        &self,
        write: &KeyedWrite<'_, Group>,
        name: GroupName,
        description: GroupDescription,
    ) -> AppResult<Outcome<Group>> {
        let account_id = write.caller()?.account_id.as_uuid();
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            GroupRow::lock_account_creations(conn, account_id).await?;
            let count = GroupRow::count_live(conn, account_id).await?;
            if count >= MAX_GROUPS_PER_ACCOUNT {
                return Err(AppError::account_limit(
                    Reason::GroupLimit,
                    account_id,
                    count,
                    MAX_GROUPS_PER_ACCOUNT,
                    "groups",
                ));
            }
            GroupRow::insert(conn, account_id, &name, &description)
                .await
                .map_err(|error| on_unique_violation(error, NAME_INDEX, name_taken(&name)))?
        })
        .await
    }

    pub async fn get(&self, scope: &RequestScope, id: Uuid) -> AppResult<Group> {
        let account_id = scope.caller()?.account_id.as_uuid();
        db::with_connection(&self.pool, async |conn| {
            GroupRow::find_in_account(conn, account_id, id).await
        })
        .await?
        .ok_or_else(|| AppError::not_found(Resource::Group, id))
    }

    /// The live groups, or those `member` belongs to.
    pub async fn list(
        &self,
        scope: &RequestScope,
        member: Option<Uuid>,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<Group>> {
        let account_id = scope.caller()?.account_id.as_uuid();
        let rows = db::with_connection(&self.pool, async |conn| {
            GroupRow::list_for_account(conn, account_id, member, after, rows_to_fetch(page_size))
                .await
        })
        .await?;
        Ok(paginate(rows, page_size, |group| {
            PageCursor::at(group.created_at, group.id)
        }))
    }

    pub async fn update(
        &self,
        write: &KeyedWrite<'_, Group>,
        id: Uuid,
        update: GroupUpdate,
    ) -> AppResult<Outcome<Group>> {
        let account_id = write.caller()?.account_id.as_uuid();
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            let current = GroupRow::lock_live(conn, account_id, id, false)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::Group, id))?;
            let name = update.name.clone().unwrap_or(current.name);
            let description = update.description.clone().unwrap_or(current.description);
            GroupRow::update(conn, account_id, id, &name, &description)
                .await
                .map_err(|error| on_unique_violation(error, NAME_INDEX, name_taken(&name)))?
        })
        .await
    }

    /// Deletes a group (its row stays, without members), unless tickets that are neither solved
    /// nor closed are assigned to it: the lock waits for assignments to it under way, and holds
    /// off new ones until the deletion commits.
    pub async fn delete(&self, write: &KeyedWrite<'_, ()>, id: Uuid) -> AppResult<Outcome<()>> {
        let account_id = write.caller()?.account_id.as_uuid();
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            GroupRow::lock_live(conn, account_id, id, true)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::Group, id))?;
            let open = GroupRow::open_tickets(conn, account_id, id).await?;
            if open > 0 {
                return Err(AppError::FailedPrecondition {
                    reason: Reason::GroupHasOpenTickets,
                    message: format!(
                        "{open} tickets that are neither solved nor closed are assigned to the group; reassign them first"
                    ),
                    violations: vec![PreconditionViolation {
                        kind: "GROUP_HAS_OPEN_TICKETS".to_owned(),
                        subject: format!("groups/{id}"),
                        description: format!("{open} open tickets are assigned to the group"),
                    }],
                });
            }
            GroupRow::soft_delete(conn, account_id, id).await
        })
        .await
    }

    /// Adds an agent or an admin of the account to a live group; a customer is refused naming
    /// `user_id`.
    pub async fn add_member(
        &self,
        write: &KeyedWrite<'_, GroupMember>,
        group_id: Uuid,
        user_id: Uuid,
    ) -> AppResult<Outcome<GroupMember>> {
        let account_id = write.caller()?.account_id.as_uuid();
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            GroupRow::lock_live(conn, account_id, group_id, false)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::Group, group_id))?;
            let user = UserRow::find_in_account(conn, account_id, user_id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::User, user_id))?;
            match user.role {
                Role::Agent | Role::Admin => {}
                Role::Customer => {
                    return Err(AppError::invalid_field(
                        "user_id",
                        &InvalidValue::new(
                            "names a customer; only agents and admins can be members of a group",
                        ),
                    ));
                }
            }
            GroupMemberRow::add(conn, account_id, group_id, user_id).await
        })
        .await
    }

    /// Removes a member from a live group, unless they are the assignee of a ticket of the
    /// group that is neither solved nor closed: no open ticket's assignee is ever outside its
    /// group. The membership is deleted first, which waits for an assignment deciding on it
    /// (`FOR KEY SHARE`, [`GroupMemberRow::share`]); the count after it, a statement of its
    /// own, sees the ticket that assignment wrote, and a refusal rolls the deletion back.
    pub async fn remove_member(
        &self,
        write: &KeyedWrite<'_, ()>,
        group_id: Uuid,
        user_id: Uuid,
    ) -> AppResult<Outcome<()>> {
        let account_id = write.caller()?.account_id.as_uuid();
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            GroupRow::lock_live(conn, account_id, group_id, false)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::Group, group_id))?;
            if !GroupMemberRow::remove(conn, account_id, group_id, user_id).await? {
                return Err(AppError::not_found(Resource::GroupMember, user_id));
            }
            let open = GroupMemberRow::open_tickets(conn, account_id, group_id, user_id).await?;
            if open > 0 {
                return Err(AppError::FailedPrecondition {
                    reason: Reason::GroupMemberHasOpenTickets,
                    message: format!(
                        "the member is the assignee of {open} tickets of the group that are neither solved nor closed; reassign them first"
                    ),
                    violations: vec![PreconditionViolation {
                        kind: "GROUP_MEMBER_HAS_OPEN_TICKETS".to_owned(),
                        subject: format!("groups/{group_id}"),
                        description: format!(
                            "users/{user_id} is the assignee of {open} open tickets of the group"
                        ),
                    }],
                });
            }
            Ok(())
        })
        .await
    }

    /// The members of a live group.
    pub async fn members(
        &self,
        scope: &RequestScope,
        group_id: Uuid,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<GroupMember>> {
        let account_id = scope.caller()?.account_id.as_uuid();
        let rows = db::with_connection(&self.pool, async |conn| {
            match GroupRow::find_in_account(conn, account_id, group_id).await? {
                Some(group) if group.deleted_at.is_none() => {}
                Some(_) | None => return Err(AppError::not_found(Resource::Group, group_id)),
            }
            GroupMemberRow::list_for_group(
                conn,
                account_id,
                group_id,
                after,
                rows_to_fetch(page_size),
            )
            .await
        })
        .await?;
        Ok(paginate(rows, page_size, |member| {
            PageCursor::at(member.created_at, member.user_id.as_uuid())
        }))
    }
}
