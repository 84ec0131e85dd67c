//! The `sla_policies` table (a policy as its latest revision) and `sla_policy_revisions` (every
//! revision as it was written, by the same statement): docs/sla.md, "SLA policies".

use chrono::{DateTime, Utc};
use diesel::result::Error as DieselError;
use diesel::sql_types::{BigInt, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::corrupt;
use crate::domain::{
    InvalidValue, SlaCondition, SlaMetric, SlaPolicy, SlaPolicyDescription, SlaPolicyFields,
    SlaPolicyName, SlaTarget, SlaTargets, TicketPriority,
};
use crate::errors::AppResult;

const POLICY_COLUMNS: &str = "id, name, description, position, filter, schedule_id, targets, \
     warning_minutes, revision, created_at, updated_at, deleted_at";

/// Copies the row `p` (a CTE of the written policy) into its revisions, in the same statement.
const KEEP_REVISION: &str = "kept AS (INSERT INTO sla_policy_revisions \
     (account_id, policy_id, revision, name, filter, schedule_id, targets, warning_minutes) \
     SELECT account_id, id, revision, name, filter, schedule_id, targets, warning_minutes FROM p)";

#[derive(Debug, diesel::QueryableByName)]
pub struct SlaPolicyRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    description: String,
    #[diesel(sql_type = Integer)]
    position: i32,
    #[diesel(sql_type = Text)]
    filter: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    schedule_id: Option<Uuid>,
    #[diesel(sql_type = Jsonb)]
    targets: serde_json::Value,
    #[diesel(sql_type = Integer)]
    warning_minutes: i32,
    #[diesel(sql_type = Integer)]
    revision: i32,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    deleted_at: Option<DateTime<Utc>>,
}

/// One element of the `targets` column.
#[derive(Debug, Serialize, Deserialize)]
struct StoredTarget {
    priority: String,
    metric: String,
    minutes: i64,
    business_hours: bool,
}

#[derive(Debug, diesel::QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

fn stored_targets(targets: &SlaTargets) -> serde_json::Value {
    let stored: Vec<StoredTarget> = targets
        .as_slice()
        .iter()
        .map(|target| StoredTarget {
            priority: target.priority.as_str().to_owned(),
            metric: target.metric.as_str().to_owned(),
            minutes: i64::from(target.minutes()),
            business_hours: target.business_hours,
        })
        .collect();
    serde_json::to_value(stored).unwrap_or_default()
}

impl SlaPolicyRow {
    fn into_domain(self) -> AppResult<SlaPolicy> {
        let column = "sla_policies.targets";
        let stored: Vec<StoredTarget> = serde_json::from_value(self.targets)
            .map_err(|error| corrupt(column, InvalidValue::new(error.to_string())))?;
        let targets = stored
            .into_iter()
            .map(|target| {
                SlaTarget::new(
                    TicketPriority::parse(&target.priority)?,
                    SlaMetric::parse(&target.metric)?,
                    target.minutes,
                    target.business_hours,
                )
            })
            .collect::<Result<Vec<SlaTarget>, InvalidValue>>()
            .map_err(|problem| corrupt(column, problem))?;
        let targets =
            SlaTargets::parse(targets).map_err(|problem| corrupt(column, problem.problem))?;
        Ok(SlaPolicy {
            id: self.id,
            fields: SlaPolicyFields {
                name: SlaPolicyName::parse(&self.name)
                    .map_err(|problem| corrupt("sla_policies.name", problem))?,
                description: SlaPolicyDescription::parse(&self.description)
                    .map_err(|problem| corrupt("sla_policies.description", problem))?,
                position: self.position,
                condition: SlaCondition::parse(&self.filter)
                    .map_err(|problem| corrupt("sla_policies.filter", problem))?,
                schedule_id: self.schedule_id,
                targets,
                warning_minutes: u32::try_from(self.warning_minutes).unwrap_or(0),
            },
            revision: self.revision,
            created_at: self.created_at,
            updated_at: self.updated_at,
            deleted_at: self.deleted_at,
        })
    }

    fn all(rows: Vec<Self>) -> AppResult<Vec<SlaPolicy>> {
        rows.into_iter().map(Self::into_domain).collect()
    }

    /// Serializes the creations of one account's policies, so that the count the limit reads is
    /// not stale by the time the new row commits.
    pub async fn lock_account_creations(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
    ) -> AppResult<()> {
        super::serialize_account_creations(conn, account_id, 692).await
    }

    /// How many live policies the account has.
    pub async fn count_live(conn: &mut AsyncPgConnection, account_id: Uuid) -> AppResult<i64> {
        let counted: Counted = diesel::sql_query(
            "SELECT count(*) AS count FROM sla_policies \
             WHERE account_id = $1 AND deleted_at IS NULL",
        )
        .bind::<SqlUuid, _>(account_id)
        .get_result(conn)
        .await?;
        Ok(counted.count)
    }

    /// How many live policies measure on the schedule.
    pub async fn count_using_schedule(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        schedule_id: Uuid,
    ) -> AppResult<i64> {
        let counted: Counted = diesel::sql_query(
            "SELECT count(*) AS count FROM sla_policies \
             WHERE account_id = $1 AND schedule_id = $2 AND deleted_at IS NULL",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(schedule_id)
        .get_result(conn)
        .await?;
        Ok(counted.count)
    }

    /// Inserts a policy and its first revision in one statement; the unique violation of the
    /// name is left to the caller.
    pub async fn insert(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        fields: &SlaPolicyFields,
    ) -> Result<AppResult<SlaPolicy>, DieselError> {
        let row: SlaPolicyRow = diesel::sql_query(format!(
            "WITH p AS (INSERT INTO sla_policies (id, account_id, name, description, position, \
                    filter, schedule_id, targets, warning_minutes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *), \
             {KEEP_REVISION} \
             SELECT {POLICY_COLUMNS} FROM p"
        ))
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .bind::<SqlUuid, _>(account_id)
        .bind::<Text, _>(fields.name.as_str())
        .bind::<Text, _>(fields.description.as_str())
        .bind::<Integer, _>(fields.position)
        .bind::<Text, _>(fields.condition.as_str())
        .bind::<Nullable<SqlUuid>, _>(fields.schedule_id)
        .bind::<Jsonb, _>(stored_targets(&fields.targets))
        .bind::<Integer, _>(i32::try_from(fields.warning_minutes).unwrap_or(i32::MAX))
        .get_result(conn)
        .await?;
        Ok(row.into_domain())
    }

    /// The policy, deleted or not.
    pub async fn find_in_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<SlaPolicy>> {
        let rows: Vec<SlaPolicyRow> = diesel::sql_query(format!(
            "SELECT {POLICY_COLUMNS} FROM sla_policies WHERE account_id = $1 AND id = $2"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .load(conn)
        .await?;
        Ok(Self::all(rows)?.pop())
    }

    /// The live policy, locked for a change or its deletion.
    pub async fn lock_live(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<SlaPolicy>> {
        let rows: Vec<SlaPolicyRow> = diesel::sql_query(format!(
            "SELECT {POLICY_COLUMNS} FROM sla_policies \
             WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL FOR UPDATE"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .load(conn)
        .await?;
        Ok(Self::all(rows)?.pop())
    }

    /// The live policies in the order they are matched, from `offset`.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        offset: i64,
        limit: i64,
    ) -> AppResult<Vec<SlaPolicy>> {
        let rows: Vec<SlaPolicyRow> = diesel::sql_query(format!(
            "SELECT {POLICY_COLUMNS} FROM sla_policies \
             WHERE account_id = $1 AND deleted_at IS NULL \
             ORDER BY position, created_at, id OFFSET $2 LIMIT $3"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<BigInt, _>(offset)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
        Self::all(rows)
    }

    /// Writes a locked policy's new fields as its next revision, kept in the same statement;
    /// the unique violation of the name is left to the caller.
    pub async fn update(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
        fields: &SlaPolicyFields,
    ) -> Result<AppResult<SlaPolicy>, DieselError> {
        let row: SlaPolicyRow = diesel::sql_query(format!(
            "WITH p AS (UPDATE sla_policies SET name = $3, description = $4, position = $5, \
                    filter = $6, schedule_id = $7, targets = $8, warning_minutes = $9, \
                    revision = revision + 1, updated_at = now() \
                 WHERE account_id = $1 AND id = $2 RETURNING *), \
             {KEEP_REVISION} \
             SELECT {POLICY_COLUMNS} FROM p"
        ))
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(fields.name.as_str())
        .bind::<Text, _>(fields.description.as_str())
        .bind::<Integer, _>(fields.position)
        .bind::<Text, _>(fields.condition.as_str())
        .bind::<Nullable<SqlUuid>, _>(fields.schedule_id)
        .bind::<Jsonb, _>(stored_targets(&fields.targets))
        .bind::<Integer, _>(i32::try_from(fields.warning_minutes).unwrap_or(i32::MAX))
        .get_result(conn)
        .await?;
        Ok(row.into_domain())
    }

    /// Marks a locked policy deleted.
    pub async fn soft_delete(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<()> {
        diesel::sql_query(
            "UPDATE sla_policies SET deleted_at = now(), updated_at = now() \
             WHERE account_id = $1 AND id = $2",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .execute(conn)
        .await?;
        Ok(())
    }
}
