//! SLA policies as admins manage them and agents read them (docs/sla.md, "SLA policies"):
//! create, read, list in the order they are matched, change (each change a new revision, kept),
//! delete (soft). A policy's schedule is held `FOR KEY SHARE` while the policy is written, so a
//! schedule is never deleted under a live policy.

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::{Page, offset_cursor, offset_of, on_unique_violation, paginate, rows_to_fetch};
use crate::db::models::custom_field::CustomFieldRow;
use crate::db::models::{ScheduleRow, SlaPolicyRow};
use crate::db::{self, PgPool};
use crate::domain::{
    MAX_SLA_POLICIES_PER_ACCOUNT, PageCursor, PageSize, SlaCondition, SlaPolicy,
    SlaPolicyDescription, SlaPolicyFields, SlaPolicyName, SlaTargets,
};
use crate::errors::{AppError, AppResult, Reason, Resource};
use crate::idempotency::{self, KeyedWrite, Outcome, as_is};
use crate::scope::RequestScope;

/// The unique index that holds a live policy's name unique in its account.
const NAME_INDEX: &str = "sla_policies_account_name_idx";

/// A change of a policy, as the mask named its fields (`schedule_id: Some(None)` clears it).
#[derive(Clone, Debug, Default)]
pub struct SlaPolicyUpdate {
    pub name: Option<SlaPolicyName>,
    pub description: Option<SlaPolicyDescription>,
    pub position: Option<i32>,
    pub condition: Option<SlaCondition>,
    pub schedule_id: Option<Option<Uuid>>,
    pub targets: Option<SlaTargets>,
    pub warning_minutes: Option<u32>,
}

#[derive(Clone)]
pub struct SlaPolicies {
    pool: PgPool,
}

fn name_taken(name: &SlaPolicyName) -> AppError {
    AppError::AlreadyExists {
        reason: Reason::SlaPolicyNameTaken,
        message: format!(
            "name: the account already has an SLA policy named {:?}",
            name.as_str()
        ),
    }
}

/// What a policy's write checks beyond its own fields, in its transaction: a business-hours
/// target's schedule (live, held until the commit) and the custom fields its condition names.
async fn check_references(
    conn: &mut AsyncPgConnection,
    account_id: Uuid,
    fields: &SlaPolicyFields,
) -> AppResult<()> {
    fields
        .check_schedule()
        .map_err(|problem| AppError::invalid_field("sla_policy.schedule_id", &problem))?;
    if let Some(schedule_id) = fields.schedule_id
        && !ScheduleRow::share_live(conn, account_id, schedule_id).await?
    {
        return Err(AppError::not_found(Resource::Schedule, schedule_id));
    }
    if fields.condition.names_custom_fields() {
        let catalogue = CustomFieldRow::catalogue_for_account(conn, account_id).await?;
        fields
            .condition
            .over(&catalogue)
            .map_err(|problem| AppError::invalid_field("sla_policy.filter", &problem))?;
    }
    Ok(())
}

impl SlaPolicies {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates a policy (its revision 1, kept), unless the account has
    /// [`MAX_SLA_POLICIES_PER_ACCOUNT`] live ones or a live policy of the same name.
    pub async fn create(
        &self,
        write: &KeyedWrite<'_, SlaPolicy>,
        fields: SlaPolicyFields,
    ) -> AppResult<Outcome<SlaPolicy>> {
        let account_id = write.caller()?.account_id.as_uuid();
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            SlaPolicyRow::lock_account_creations(conn, account_id).await?;
            let count = SlaPolicyRow::count_live(conn, account_id).await?;
            if count >= MAX_SLA_POLICIES_PER_ACCOUNT {
                return Err(AppError::account_limit(
                    Reason::SlaPolicyLimit,
                    account_id,
                    count,
                    MAX_SLA_POLICIES_PER_ACCOUNT,
                    "SLA policies",
                ));
            }
            check_references(conn, account_id, &fields).await?;
            SlaPolicyRow::insert(conn, account_id, &fields)
                .await
                .map_err(|error| on_unique_violation(error, NAME_INDEX, name_taken(&fields.name)))?
        })
        .await
    }

    pub async fn get(&self, scope: &RequestScope, id: Uuid) -> AppResult<SlaPolicy> {
        let account_id = scope.caller()?.account_id.as_uuid();
        db::with_connection(&self.pool, async |conn| {
            SlaPolicyRow::find_in_account(conn, account_id, id).await
        })
        .await?
        .ok_or_else(|| AppError::not_found(Resource::SlaPolicy, id))
    }

    /// The live policies in the order they are matched.
    pub async fn list(
        &self,
        scope: &RequestScope,
        page_size: PageSize,
        after: Option<PageCursor>,
    ) -> AppResult<Page<SlaPolicy>> {
        let account_id = scope.caller()?.account_id.as_uuid();
        let offset = offset_of(after);
        let rows = db::with_connection(&self.pool, async |conn| {
            SlaPolicyRow::list_for_account(conn, account_id, offset, rows_to_fetch(page_size)).await
        })
        .await?;
        let size = i64::from(page_size.get());
        Ok(paginate(rows, page_size, |policy| {
            offset_cursor(offset + size, policy.id)
        }))
    }

    /// Changes a live policy: the fields the update names replace the stored ones, and the
    /// result is written as the next revision, kept beside the ones before.
    pub async fn update(
        &self,
        write: &KeyedWrite<'_, SlaPolicy>,
        id: Uuid,
        update: SlaPolicyUpdate,
    ) -> AppResult<Outcome<SlaPolicy>> {
        let account_id = write.caller()?.account_id.as_uuid();
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            let current = SlaPolicyRow::lock_live(conn, account_id, id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::SlaPolicy, id))?
                .fields;
            let update = update.clone();
            let fields = SlaPolicyFields {
                name: update.name.unwrap_or(current.name),
                description: update.description.unwrap_or(current.description),
                position: update.position.unwrap_or(current.position),
                condition: update.condition.unwrap_or(current.condition),
                schedule_id: update.schedule_id.unwrap_or(current.schedule_id),
                targets: update.targets.unwrap_or(current.targets),
                warning_minutes: update.warning_minutes.unwrap_or(current.warning_minutes),
            };
            check_references(conn, account_id, &fields).await?;
            SlaPolicyRow::update(conn, account_id, id, &fields)
                .await
                .map_err(|error| on_unique_violation(error, NAME_INDEX, name_taken(&fields.name)))?
        })
        .await
    }

    /// Deletes a policy: matched no more; its row and revisions stay.
    pub async fn delete(&self, write: &KeyedWrite<'_, ()>, id: Uuid) -> AppResult<Outcome<()>> {
        let account_id = write.caller()?.account_id.as_uuid();
        idempotency::transaction(&self.pool, write, as_is, async |conn| {
            SlaPolicyRow::lock_live(conn, account_id, id)
                .await?
                .ok_or_else(|| AppError::not_found(Resource::SlaPolicy, id))?;
            SlaPolicyRow::soft_delete(conn, account_id, id).await
        })
        .await
    }
}
