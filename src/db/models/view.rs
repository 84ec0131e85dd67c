//! The `views` table: saved ticket views, personal or shared with a group or the account
//! (docs/tickets.md, "Views"). Their counts are `ticket_filter::count_tickets`.

use chrono::{DateTime, Utc};
use diesel::sql_types::{
    Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::domain::{self, UserId, ViewFilter, ViewName, ViewOrder, ViewReadMask, ViewScope};
use crate::errors::{AppError, AppResult};

const VIEW_COLUMNS: &str = "v.id, v.name, v.filter, v.order_by, v.read_mask, v.scope, v.group_id, \
     v.owner_id, v.position, v.version, v.created_at, v.updated_at";

/// The views `$1` (account), `$2` (the viewing user, or NULL for an API key) and `$3` (whether
/// the viewer is an admin) may see: their own personal views, the account's views, and the views
/// of the groups they belong to (every group's, for an admin).
const VISIBLE: &str = "v.account_id = $1 AND (\
       (v.scope = 'personal' AND v.owner_id = $2) \
       OR v.scope = 'account' \
       OR (v.scope = 'group' AND ($3 OR EXISTS (SELECT 1 FROM group_members m \
            WHERE m.account_id = v.account_id AND m.group_id = v.group_id AND m.user_id = $2))))";

/// Who is looking at views: the calling user (none for an API key) and whether they are an
/// admin.
#[derive(Clone, Copy, Debug)]
pub struct ViewViewer {
    pub user: Option<UserId>,
    pub admin: bool,
}

#[derive(Debug, diesel::QueryableByName)]
pub struct ViewRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    filter: String,
    #[diesel(sql_type = Text)]
    order_by: String,
    #[diesel(sql_type = Array<Text>)]
    read_mask: Vec<String>,
    #[diesel(sql_type = Text)]
    scope: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    group_id: Option<Uuid>,
    #[diesel(sql_type = SqlUuid)]
    owner_id: Uuid,
    #[diesel(sql_type = Integer)]
    position: i32,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

#[derive(Debug, diesel::QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// The stored fields of a new or changed view.
#[derive(Clone, Debug)]
pub struct ViewFields<'a> {
    pub name: &'a ViewName,
    pub filter: &'a ViewFilter,
    pub order_by: &'a ViewOrder,
    pub read_mask: &'a ViewReadMask,
    pub position: i32,
}

impl ViewRow {
    fn into_domain(self) -> AppResult<domain::View> {
        Ok(domain::View {
            id: self.id,
            name: ViewName::parse(&self.name).map_err(|problem| corrupt("views.name", problem))?,
            // Kept as saved: `me` is resolved when the view runs.
            filter: ViewFilter::parse(&self.filter)
                .map_err(|problem| corrupt("views.filter", problem))?,
            order_by: ViewOrder::parse(&self.order_by)
                .map_err(|problem| corrupt("views.order_by", problem))?,
            read_mask: ViewReadMask::parse(&self.read_mask)
                .map_err(|problem| corrupt("views.read_mask", problem))?,
            scope: ViewScope::from_stored(&self.scope, self.group_id).ok_or_else(|| {
                AppError::internal(anyhow::anyhow!(
                    "stored views.scope {:?} disagrees with group_id",
                    self.scope
                ))
            })?,
            owner_id: UserId::from_uuid(self.owner_id),
            position: self.position,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }

    fn all(rows: Vec<Self>) -> AppResult<Vec<domain::View>> {
        rows.into_iter().map(Self::into_domain).collect()
    }

    /// Serializes the creations of one account's views, so that the counts the limits read are
    /// not stale by the time the new row commits.
    pub async fn lock_account_creations(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
    ) -> AppResult<()> {
        super::serialize_account_creations(conn, account_id, 45).await
    }

    /// How many views of `scope`'s kind count against its limit: the account's shared views,
    /// or `owner`'s personal ones.
    pub async fn count_for_limit(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        owner: UserId,
        shared: bool,
    ) -> AppResult<i64> {
        let counted: Counted = diesel::sql_query(
            "SELECT count(*) AS count FROM views WHERE account_id = $1 \
             AND CASE WHEN $3 THEN scope <> 'personal' ELSE scope = 'personal' AND owner_id = $2 END",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(owner.as_uuid())
        .bind::<Bool, _>(shared)
        .get_result(conn)
        .await?;
        Ok(counted.count)
    }

    /// Inserts a view.
    pub async fn insert(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        owner: UserId,
        scope: ViewScope,
        fields: &ViewFields<'_>,
    ) -> AppResult<domain::View> {
        let row: ViewRow = diesel::sql_query(format!(
            "WITH v AS (INSERT INTO views (id, account_id, name, filter, order_by, read_mask, \
             scope, group_id, owner_id, position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             RETURNING *) SELECT {VIEW_COLUMNS} FROM v"
        ))
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .bind::<SqlUuid, _>(account_id)
        .bind::<Text, _>(fields.name.as_str())
        .bind::<Text, _>(fields.filter.as_str())
        .bind::<Text, _>(fields.order_by.as_str())
        .bind::<Array<Text>, _>(fields.read_mask.paths())
        .bind::<Text, _>(scope.as_str())
        .bind::<Nullable<SqlUuid>, _>(scope.group_id())
        .bind::<SqlUuid, _>(owner.as_uuid())
        .bind::<Integer, _>(fields.position)
        .get_result(conn)
        .await?;
        row.into_domain()
    }

    /// The view, if `viewer` may see it; `lock` takes it `FOR UPDATE` for a change.
    pub async fn find_visible(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        viewer: ViewViewer,
        id: Uuid,
        lock: bool,
    ) -> AppResult<Option<domain::View>> {
        let lock = if lock { " FOR UPDATE OF v" } else { "" };
        let rows: Vec<ViewRow> = diesel::sql_query(format!(
            "SELECT {VIEW_COLUMNS} FROM views v WHERE {VISIBLE} AND v.id = $4{lock}"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<Nullable<SqlUuid>, _>(viewer.user.map(|user| user.as_uuid()))
        .bind::<Bool, _>(viewer.admin)
        .bind::<SqlUuid, _>(id)
        .load(conn)
        .await?;
        Ok(Self::all(rows)?.pop())
    }

    /// The views `viewer` sees, by position then name (then id), `offset` of them skipped.
    pub async fn list_visible(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        viewer: ViewViewer,
        offset: i64,
        limit: i64,
    ) -> AppResult<Vec<domain::View>> {
        let rows: Vec<ViewRow> = diesel::sql_query(format!(
            "SELECT {VIEW_COLUMNS} FROM views v WHERE {VISIBLE} \
             ORDER BY v.position, v.name, v.id OFFSET $4 LIMIT $5"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<Nullable<SqlUuid>, _>(viewer.user.map(|user| user.as_uuid()))
        .bind::<Bool, _>(viewer.admin)
        .bind::<BigInt, _>(offset)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
        Self::all(rows)
    }

    /// The views of `ids` that `viewer` sees (in no particular order).
    pub async fn find_many_visible(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        viewer: ViewViewer,
        ids: &[Uuid],
    ) -> AppResult<Vec<domain::View>> {
        let rows: Vec<ViewRow> = diesel::sql_query(format!(
            "SELECT {VIEW_COLUMNS} FROM views v WHERE {VISIBLE} AND v.id = ANY($4)"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<Nullable<SqlUuid>, _>(viewer.user.map(|user| user.as_uuid()))
        .bind::<Bool, _>(viewer.admin)
        .bind::<Array<SqlUuid>, _>(ids)
        .load(conn)
        .await?;
        Self::all(rows)
    }

    /// Writes a locked view's new fields and raises its version.
    pub async fn update(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
        fields: &ViewFields<'_>,
    ) -> AppResult<domain::View> {
        let row: ViewRow = diesel::sql_query(format!(
            "WITH v AS (UPDATE views SET name = $3, filter = $4, order_by = $5, read_mask = $6, \
             position = $7, version = version + 1, updated_at = now() \
             WHERE account_id = $1 AND id = $2 RETURNING *) SELECT {VIEW_COLUMNS} FROM v"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(fields.name.as_str())
        .bind::<Text, _>(fields.filter.as_str())
        .bind::<Text, _>(fields.order_by.as_str())
        .bind::<Array<Text>, _>(fields.read_mask.paths())
        .bind::<Integer, _>(fields.position)
        .get_result(conn)
        .await?;
        row.into_domain()
    }

    /// Removes a view's row.
    pub async fn delete(conn: &mut AsyncPgConnection, account_id: Uuid, id: Uuid) -> AppResult<()> {
        diesel::sql_query("DELETE FROM views WHERE account_id = $1 AND id = $2")
            .bind::<SqlUuid, _>(account_id)
            .bind::<SqlUuid, _>(id)
            .execute(conn)
            .await?;
        Ok(())
    }
}
