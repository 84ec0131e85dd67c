//! The `groups` and `group_members` tables: an account's teams of agents and who is in them
//! (docs/tickets.md, "Groups"). A deleted group keeps its row, without members.

use chrono::{DateTime, Utc};
use diesel::result::Error as DieselError;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::domain::{self, GroupDescription, GroupName, PageCursor, UserId};
use crate::errors::AppResult;

/// Every group query selects these columns, the member count included (one index probe of the
/// members' primary key per group).
const GROUP_COLUMNS: &str = "g.id, g.name, g.description, g.created_at, g.updated_at, g.deleted_at, \
     (SELECT count(*) FROM group_members m \
      WHERE m.account_id = g.account_id AND m.group_id = g.id) AS member_count";

#[derive(Debug, diesel::QueryableByName)]
pub struct GroupRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    description: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    deleted_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = BigInt)]
    member_count: i64,
}

/// A group and a user, as the batch checks of an import read them.
#[derive(Debug, diesel::QueryableByName)]
struct GroupAndUser {
    #[diesel(sql_type = SqlUuid)]
    group_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
}

#[derive(Debug, diesel::QueryableByName)]
struct IdOnly {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

#[derive(Debug, diesel::QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[derive(Debug, diesel::QueryableByName)]
pub struct GroupMemberRow {
    #[diesel(sql_type = SqlUuid)]
    group_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

impl GroupRow {
    fn into_domain(self) -> AppResult<domain::Group> {
        Ok(domain::Group {
            id: self.id,
            name: GroupName::parse(&self.name)
                .map_err(|problem| corrupt("groups.name", problem))?,
            description: GroupDescription::parse(&self.description)
                .map_err(|problem| corrupt("groups.description", problem))?,
            member_count: self.member_count,
            created_at: self.created_at,
            updated_at: self.updated_at,
            deleted_at: self.deleted_at,
        })
    }

    fn all(rows: Vec<Self>) -> AppResult<Vec<domain::Group>> {
        rows.into_iter().map(Self::into_domain).collect()
    }

    /// Serializes the creations of one account's groups, so that the count the limit reads is
    /// not stale by the time the new row commits.
    pub async fn lock_account_creations(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
    ) -> AppResult<()> {
        super::serialize_account_creations(conn, account_id, 68).await
    }

    /// How many live groups the account has.
    pub async fn count_live(conn: &mut AsyncPgConnection, account_id: Uuid) -> AppResult<i64> {
        let counted: Counted = diesel::sql_query(
            "SELECT count(*) AS count FROM groups WHERE account_id = $1 AND deleted_at IS NULL",
        )
        .bind::<SqlUuid, _>(account_id)
        .get_result(conn)
        .await?;
        Ok(counted.count)
    }

    /// Inserts a group; the unique violation of `groups_account_name_idx` (a live group of the
    /// same name) is left to the caller, which names the field.
    pub async fn insert(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        name: &GroupName,
        description: &GroupDescription,
    ) -> Result<AppResult<domain::Group>, DieselError> {
        let row: GroupRow = diesel::sql_query(format!(
            "WITH g AS (INSERT INTO groups (id, account_id, name, description) \
             VALUES ($1, $2, $3, $4) RETURNING *) SELECT {GROUP_COLUMNS} FROM g"
        ))
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .bind::<SqlUuid, _>(account_id)
        .bind::<Text, _>(name.as_str())
        .bind::<Text, _>(description.as_str())
        .get_result(conn)
        .await?;
        Ok(row.into_domain())
    }

    /// The group, deleted or not.
    pub async fn find_in_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<domain::Group>> {
        let rows: Vec<GroupRow> = diesel::sql_query(format!(
            "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.account_id = $1 AND g.id = $2"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .load(conn)
        .await?;
        Ok(Self::all(rows)?.pop())
    }

    /// Locks a live group for a change, its deletion or a change of its members: `FOR NO KEY
    /// UPDATE` for a change of its fields and members (assignments, which take `FOR KEY SHARE`
    /// through the tickets' foreign key, go on), `FOR UPDATE` to delete it (they wait).
    pub async fn lock_live(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
        deleting: bool,
    ) -> AppResult<Option<domain::Group>> {
        let strength = if deleting {
            "FOR UPDATE"
        } else {
            "FOR NO KEY UPDATE"
        };
        let rows: Vec<GroupRow> = diesel::sql_query(format!(
            "SELECT {GROUP_COLUMNS} FROM groups g \
             WHERE g.account_id = $1 AND g.id = $2 AND g.deleted_at IS NULL {strength}"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .load(conn)
        .await?;
        Ok(Self::all(rows)?.pop())
    }

    /// The live groups, oldest first; with `member`, only those `member` belongs to.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        member: Option<Uuid>,
        after: Option<PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<domain::Group>> {
        let rows: Vec<GroupRow> = diesel::sql_query(format!(
            "SELECT {GROUP_COLUMNS} FROM groups g \
             WHERE g.account_id = $1 AND g.deleted_at IS NULL \
               AND ($2::uuid IS NULL OR EXISTS (SELECT 1 FROM group_members m \
                    WHERE m.account_id = g.account_id AND m.group_id = g.id AND m.user_id = $2)) \
               AND ($3::timestamptz IS NULL OR (g.created_at, g.id) > ($3, $4)) \
             ORDER BY g.created_at, g.id LIMIT $5"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<Nullable<SqlUuid>, _>(member)
        .bind::<Nullable<Timestamptz>, _>(after.as_ref().map(|cursor| cursor.at))
        .bind::<SqlUuid, _>(after.as_ref().map_or(Uuid::nil(), |cursor| cursor.id))
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
        Self::all(rows)
    }

    /// Writes a locked group's new name and description; the unique violation of the name is
    /// left to the caller.
    pub async fn update(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
        name: &GroupName,
        description: &GroupDescription,
    ) -> Result<AppResult<domain::Group>, DieselError> {
        let row: GroupRow = diesel::sql_query(format!(
            "WITH g AS (UPDATE groups SET name = $3, description = $4, updated_at = now() \
             WHERE account_id = $1 AND id = $2 RETURNING *) SELECT {GROUP_COLUMNS} FROM g"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(name.as_str())
        .bind::<Text, _>(description.as_str())
        .get_result(conn)
        .await?;
        Ok(row.into_domain())
    }

    /// How many tickets of the group are neither solved nor closed (nor deleted).
    pub async fn open_tickets(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<i64> {
        let counted: Counted = diesel::sql_query(
            "SELECT count(*) AS count FROM tickets \
             WHERE account_id = $1 AND group_id = $2 AND deleted_at IS NULL \
               AND status NOT IN ('solved', 'closed')",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .get_result(conn)
        .await?;
        Ok(counted.count)
    }

    /// Whether `id` is a live group of the account, holding it `FOR KEY SHARE` until the
    /// transaction ends: an assignment to it goes on beside changes of its name and members,
    /// and its deletion (`FOR UPDATE`) waits for the assignment, then counts its ticket.
    pub async fn share_live(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<bool> {
        let counted: Counted = diesel::sql_query(
            "SELECT count(*) AS count FROM (SELECT 1 FROM groups \
             WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL FOR KEY SHARE) AS live",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .get_result(conn)
        .await?;
        Ok(counted.count > 0)
    }

    /// Which of `ids` are live groups of the account, each held `FOR KEY SHARE` as
    /// [`GroupRow::share_live`] holds one: an import batch's groups in one statement.
    pub async fn share_live_among(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        ids: &[Uuid],
    ) -> AppResult<Vec<Uuid>> {
        Ok(diesel::sql_query(
            "SELECT id FROM groups WHERE account_id = $1 AND id = ANY($2) AND deleted_at IS NULL \
             FOR KEY SHARE",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<diesel::sql_types::Array<SqlUuid>, _>(ids)
        .load::<IdOnly>(conn)
        .await?
        .into_iter()
        .map(|row| row.id)
        .collect())
    }

    /// Marks a locked group deleted and removes its members, in one statement.
    pub async fn soft_delete(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<()> {
        diesel::sql_query(
            "WITH gone AS (DELETE FROM group_members WHERE account_id = $1 AND group_id = $2) \
             UPDATE groups SET deleted_at = now(), updated_at = now() \
             WHERE account_id = $1 AND id = $2",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .execute(conn)
        .await?;
        Ok(())
    }
}

impl GroupMemberRow {
    fn into_domain(self) -> domain::GroupMember {
        domain::GroupMember {
            group_id: self.group_id,
            user_id: UserId::from_uuid(self.user_id),
            created_at: self.created_at,
        }
    }

    /// Adds `user_id` to the group; a member already in it is answered as they are.
    pub async fn add(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        group_id: Uuid,
        user_id: Uuid,
    ) -> AppResult<domain::GroupMember> {
        let row: GroupMemberRow = diesel::sql_query(
            "WITH added AS (INSERT INTO group_members (account_id, group_id, user_id) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING \
                 RETURNING group_id, user_id, created_at) \
             SELECT group_id, user_id, created_at FROM added \
             UNION ALL \
             SELECT group_id, user_id, created_at FROM group_members \
             WHERE account_id = $1 AND group_id = $2 AND user_id = $3 \
             LIMIT 1",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(group_id)
        .bind::<SqlUuid, _>(user_id)
        .get_result(conn)
        .await?;
        Ok(row.into_domain())
    }

    /// Removes `user_id` from the group; whether they were in it. The delete waits for any
    /// transaction holding `FOR KEY SHARE` on the membership (an assignment deciding on it).
    pub async fn remove(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        group_id: Uuid,
        user_id: Uuid,
    ) -> AppResult<bool> {
        let deleted = diesel::sql_query(
            "DELETE FROM group_members WHERE account_id = $1 AND group_id = $2 AND user_id = $3",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(group_id)
        .bind::<SqlUuid, _>(user_id)
        .execute(conn)
        .await?;
        Ok(deleted > 0)
    }

    /// Whether `user_id` is a member of the group, holding the membership `FOR KEY SHARE` until
    /// the transaction ends: its removal ([`GroupMemberRow::remove`]) waits for an assignment
    /// deciding on it, then sees the ticket the assignment wrote.
    pub async fn share(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        group_id: Uuid,
        user_id: Uuid,
    ) -> AppResult<bool> {
        let counted: Counted = diesel::sql_query(
            "SELECT count(*) AS count FROM (SELECT 1 FROM group_members \
             WHERE account_id = $1 AND group_id = $2 AND user_id = $3 FOR KEY SHARE) AS member",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(group_id)
        .bind::<SqlUuid, _>(user_id)
        .get_result(conn)
        .await?;
        Ok(counted.count > 0)
    }

    /// Which of the `(group, user)` pairs are memberships, each held `FOR KEY SHARE` as
    /// [`GroupMemberRow::share`] holds one: an import batch's assignments in one statement.
    pub async fn share_among(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        pairs: &[(Uuid, Uuid)],
    ) -> AppResult<Vec<(Uuid, Uuid)>> {
        let (groups, users): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
        Ok(diesel::sql_query(
            "SELECT m.group_id, m.user_id FROM group_members m \
             JOIN unnest($2::uuid[], $3::uuid[]) AS wanted(group_id, user_id) \
             ON m.group_id = wanted.group_id AND m.user_id = wanted.user_id \
             WHERE m.account_id = $1 FOR KEY SHARE OF m",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<diesel::sql_types::Array<SqlUuid>, _>(&groups)
        .bind::<diesel::sql_types::Array<SqlUuid>, _>(&users)
        .load::<GroupAndUser>(conn)
        .await?
        .into_iter()
        .map(|row| (row.group_id, row.user_id))
        .collect())
    }

    /// How many tickets of the group that are neither solved nor closed (nor deleted) have
    /// `user_id` as their assignee.
    pub async fn open_tickets(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        group_id: Uuid,
        user_id: Uuid,
    ) -> AppResult<i64> {
        let counted: Counted = diesel::sql_query(
            "SELECT count(*) AS count FROM tickets \
             WHERE account_id = $1 AND group_id = $2 AND assignee_id = $3 \
               AND deleted_at IS NULL AND status NOT IN ('solved', 'closed')",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(group_id)
        .bind::<SqlUuid, _>(user_id)
        .get_result(conn)
        .await?;
        Ok(counted.count)
    }

    /// The group's members, longest-standing first.
    pub async fn list_for_group(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        group_id: Uuid,
        after: Option<PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<domain::GroupMember>> {
        let rows: Vec<GroupMemberRow> = diesel::sql_query(
            "SELECT group_id, user_id, created_at FROM group_members \
             WHERE account_id = $1 AND group_id = $2 \
               AND ($3::timestamptz IS NULL OR (created_at, user_id) > ($3, $4)) \
             ORDER BY created_at, user_id LIMIT $5",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(group_id)
        .bind::<Nullable<Timestamptz>, _>(after.as_ref().map(|cursor| cursor.at))
        .bind::<SqlUuid, _>(after.as_ref().map_or(Uuid::nil(), |cursor| cursor.id))
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
        Ok(rows.into_iter().map(Self::into_domain).collect())
    }
}
