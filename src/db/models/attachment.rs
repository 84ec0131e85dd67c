//! The `attachments` table and its companion `storage_deletions`, the durable queue of objects to
//! delete from storage (docs/attachments.md).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::comment::actor;
use super::corrupt;
use crate::db::KeepPrepared;
use crate::db::schema::{attachments, storage_deletions, tickets};
use crate::domain::{
    AccountId, Attachment, AttachmentContentType, AttachmentId, AttachmentState, CommentId,
    Filename, PageCursor, Sha256Digest, TicketId, UserId,
};
use crate::errors::{AppError, AppResult};

/// Also read from an `attachment.ready` event's snapshot (migration 23), where `sha256` is hex.
#[derive(Clone, Debug, Queryable, Selectable, serde::Deserialize)]
#[diesel(table_name = attachments, check_for_backend(diesel::pg::Pg))]
pub struct AttachmentRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub ticket_id: Uuid,
    pub comment_id: Option<Uuid>,
    pub internal: bool,
    pub uploader_user_id: Option<Uuid>,
    pub uploader_api_key_id: Option<Uuid>,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    #[serde(deserialize_with = "super::hex_bytes")]
    pub sha256: Vec<u8>,
    pub object_key: String,
    pub state: String,
    pub upload_expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = attachments)]
pub struct NewAttachment<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub ticket_id: Uuid,
    pub comment_id: Option<Uuid>,
    pub internal: bool,
    pub uploader_user_id: Option<Uuid>,
    pub uploader_api_key_id: Option<Uuid>,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub size_bytes: i64,
    pub sha256: &'a [u8],
    pub object_key: &'a str,
    pub upload_expires_at: DateTime<Utc>,
}

/// Who is looking: the whole account, or one customer (their own tickets, no internal notes).
#[derive(Clone, Copy, Debug)]
pub enum Viewer {
    Account,
    Customer(UserId),
}

impl NewAttachment<'_> {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> AppResult<Attachment> {
        KeepPrepared(
            diesel::insert_into(attachments::table)
                .values(self)
                .returning(AttachmentRow::as_returning()),
        )
        .get_result::<AttachmentRow>(conn)
        .await?
        .into_domain()
    }
}

impl AttachmentRow {
    /// The attachment `id` of `account`, if `viewer` may see it (its ticket not deleted).
    pub async fn find_visible(
        conn: &mut AsyncPgConnection,
        account: AccountId,
        viewer: Viewer,
        id: AttachmentId,
    ) -> AppResult<Option<Attachment>> {
        let mut query = attachments::table
            .inner_join(
                tickets::table.on(tickets::id
                    .eq(attachments::ticket_id)
                    .and(tickets::account_id.eq(attachments::account_id))),
            )
            .filter(attachments::account_id.eq(account.as_uuid()))
            .filter(attachments::id.eq(id.as_uuid()))
            .filter(tickets::deleted_at.is_null())
            .select(Self::as_select())
            .into_boxed();
        if let Viewer::Customer(user) = viewer {
            query = query
                .filter(tickets::requester_id.eq(user.as_uuid()))
                .filter(attachments::internal.eq(false));
        }
        query
            .first::<Self>(conn)
            .await
            .optional()?
            .map(Self::into_domain)
            .transpose()
    }

    /// How many attachments (pending ones included) the ticket has.
    pub async fn count_for_ticket(
        conn: &mut AsyncPgConnection,
        account: AccountId,
        ticket: TicketId,
    ) -> AppResult<i64> {
        Ok(attachments::table
            .filter(attachments::account_id.eq(account.as_uuid()))
            .filter(attachments::ticket_id.eq(ticket.as_uuid()))
            .count()
            .get_result(conn)
            .await?)
    }

    /// Marks a pending attachment ready; `None` when it is not pending (any more).
    pub async fn mark_ready(
        conn: &mut AsyncPgConnection,
        account: AccountId,
        id: AttachmentId,
    ) -> AppResult<Option<Attachment>> {
        KeepPrepared(
            diesel::update(attachments::table)
                .filter(attachments::account_id.eq(account.as_uuid()))
                .filter(attachments::id.eq(id.as_uuid()))
                .filter(attachments::state.eq(AttachmentState::Pending.as_str()))
                .set((
                    attachments::state.eq(AttachmentState::Ready.as_str()),
                    attachments::completed_at.eq(diesel::dsl::now),
                ))
                .returning(Self::as_returning()),
        )
        .get_result::<Self>(conn)
        .await
        .optional()?
        .map(Self::into_domain)
        .transpose()
    }

    /// A page of the ready attachments of a ticket (or of one of its comments), oldest first.
    pub async fn list(
        conn: &mut AsyncPgConnection,
        account: AccountId,
        ticket: TicketId,
        comment: Option<CommentId>,
        with_internal: bool,
        after: Option<PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<Attachment>> {
        let mut query = attachments::table
            .filter(attachments::account_id.eq(account.as_uuid()))
            .filter(attachments::ticket_id.eq(ticket.as_uuid()))
            .filter(attachments::state.eq(AttachmentState::Ready.as_str()))
            .select(Self::as_select())
            .order((attachments::created_at.asc(), attachments::id.asc()))
            .limit(limit)
            .into_boxed();
        if let Some(comment) = comment {
            query = query.filter(attachments::comment_id.eq(comment.as_uuid()));
        }
        if !with_internal {
            query = query.filter(attachments::internal.eq(false));
        }
        if let Some(cursor) = after {
            query = query.filter(attachments::created_at.ge(cursor.at)).filter(
                attachments::created_at
                    .gt(cursor.at)
                    .or(attachments::id.gt(cursor.id)),
            );
        }
        query
            .load::<Self>(conn)
            .await?
            .into_iter()
            .map(Self::into_domain)
            .collect()
    }

    /// Deletes the attachment and queues its object's deletion, in one statement. With
    /// `url_grace`, the object of an attachment given an upload URL (PENDING or READY alike) is
    /// due no earlier than `url_grace` after that URL expires, as the abandonment sweep would
    /// have it: until then a client may still PUT to that URL (a READY file's URL writes until it
    /// expires too, and a CreateUpload replayed with its key hands it out again), and an object
    /// written after its deletion ran would be kept by nothing. A file the service streamed
    /// itself waits the same (its row does not say that no URL was given out; its object is
    /// only kept a little longer). Without `url_grace`, it is due now.
    pub async fn delete_and_queue_object(
        conn: &mut AsyncPgConnection,
        account: AccountId,
        id: AttachmentId,
        url_grace: Option<std::time::Duration>,
    ) -> AppResult<bool> {
        let queued = KeepPrepared(
            diesel::sql_query(
                "WITH gone AS (DELETE FROM attachments WHERE account_id = $1 AND id = $2 \
                 RETURNING object_key, upload_expires_at) \
                 INSERT INTO storage_deletions (object_key, due_at) \
                 SELECT object_key, CASE WHEN $3::float8 IS NOT NULL \
                   THEN greatest(now(), upload_expires_at + make_interval(secs => $3)) \
                   ELSE now() END FROM gone \
                 ON CONFLICT (object_key) DO NOTHING",
            )
            .bind::<sql_types::Uuid, _>(account.as_uuid())
            .bind::<sql_types::Uuid, _>(id.as_uuid())
            .bind::<sql_types::Nullable<sql_types::Double>, _>(
                url_grace.map(|grace| grace.as_secs_f64()),
            ),
        )
        .execute(conn)
        .await?;
        Ok(queued > 0)
    }

    /// Deletes the attachment if it is still pending and queues its object's deletion, in one
    /// statement; false when it is not pending (completed or deleted meanwhile by a concurrent
    /// request), which leaves it and its object as they are.
    pub async fn discard_pending(
        conn: &mut AsyncPgConnection,
        account: AccountId,
        id: AttachmentId,
    ) -> AppResult<bool> {
        let discarded = KeepPrepared(
            diesel::sql_query(
                "WITH gone AS (DELETE FROM attachments WHERE account_id = $1 AND id = $2 \
                 AND state = 'pending' RETURNING object_key), \
                 queued AS (INSERT INTO storage_deletions (object_key) \
                 SELECT object_key FROM gone ON CONFLICT (object_key) DO NOTHING) \
                 SELECT count(*) AS rows FROM gone",
            )
            .bind::<sql_types::Uuid, _>(account.as_uuid())
            .bind::<sql_types::Uuid, _>(id.as_uuid()),
        )
        .get_result::<Counted>(conn)
        .await?;
        Ok(discarded.rows > 0)
    }

    /// Deletes the uploads still pending `grace` after their URL expired and queues their
    /// objects' deletion, at most `limit` of them; answers how many.
    pub async fn sweep_abandoned(
        conn: &mut AsyncPgConnection,
        grace: std::time::Duration,
        limit: i64,
    ) -> AppResult<usize> {
        Ok(diesel::sql_query(
            "WITH gone AS (DELETE FROM attachments WHERE id IN (SELECT id FROM attachments \
             WHERE state = 'pending' AND upload_expires_at < now() - make_interval(secs => $1) \
             ORDER BY upload_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING object_key) \
             INSERT INTO storage_deletions (object_key) SELECT object_key FROM gone \
             ON CONFLICT (object_key) DO NOTHING",
        )
        .bind::<sql_types::Double, _>(grace.as_secs_f64())
        .bind::<sql_types::BigInt, _>(limit)
        .execute(conn)
        .await?)
    }

    pub fn into_domain(self) -> AppResult<Attachment> {
        let sha256: [u8; 32] =
            self.sha256.as_slice().try_into().map_err(|_| {
                AppError::internal(anyhow::anyhow!("a stored sha256 is not 32 bytes"))
            })?;
        Ok(Attachment {
            id: AttachmentId::from_uuid(self.id),
            account_id: AccountId::from_uuid(self.account_id),
            ticket_id: TicketId::from_uuid(self.ticket_id),
            comment_id: self.comment_id.map(CommentId::from_uuid),
            internal: self.internal,
            uploader: actor(self.uploader_user_id, self.uploader_api_key_id)?,
            filename: Filename::from_stored(self.filename),
            content_type: AttachmentContentType::parse(&self.content_type)
                .map_err(|problem| corrupt("attachments.content_type", problem))?,
            size_bytes: u64::try_from(self.size_bytes).unwrap_or_default(),
            sha256: Sha256Digest::from_bytes(sha256),
            object_key: self.object_key,
            state: AttachmentState::parse(&self.state)
                .map_err(|problem| corrupt("attachments.state", problem))?,
            upload_expires_at: self.upload_expires_at,
            created_at: self.created_at,
            completed_at: self.completed_at,
        })
    }
}

#[derive(QueryableByName)]
pub struct StorageDeletionRow {
    #[diesel(sql_type = sql_types::Text)]
    object_key: String,
}

/// How many rows a statement touched, as its `rows` column.
#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = sql_types::BigInt)]
    rows: i64,
}

impl StorageDeletionRow {
    /// Takes up to `limit` due keys, leasing each by moving its due time past `lease` times two
    /// to the power of its attempts (at most an hour): another pass, here or on another
    /// instance, takes it again only if this one did not finish it.
    pub async fn lease_due(
        conn: &mut AsyncPgConnection,
        limit: i64,
        lease: std::time::Duration,
    ) -> AppResult<Vec<String>> {
        Ok(diesel::sql_query(
            "UPDATE storage_deletions SET attempts = attempts + 1, \
             due_at = now() + least(make_interval(secs => $2 * power(2, least(attempts, 10))), \
             interval '1 hour') \
             WHERE object_key IN (SELECT object_key FROM storage_deletions WHERE due_at <= now() \
             ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING object_key",
        )
        .bind::<sql_types::BigInt, _>(limit)
        .bind::<sql_types::Double, _>(lease.as_secs_f64())
        .load::<StorageDeletionRow>(conn)
        .await?
        .into_iter()
        .map(|row| row.object_key)
        .collect())
    }

    /// Queues the deletion of `key` unless an attachment holds it (a held key's object goes
    /// with its attachment); true when none does, whether queued now or already.
    pub async fn queue_unheld(conn: &mut AsyncPgConnection, key: &str) -> AppResult<bool> {
        let unheld = diesel::sql_query(
            "WITH unheld AS (SELECT $1::text AS object_key \
             WHERE NOT EXISTS (SELECT 1 FROM attachments WHERE object_key = $1)), \
             queued AS (INSERT INTO storage_deletions (object_key) SELECT object_key FROM unheld \
             ON CONFLICT (object_key) DO NOTHING) \
             SELECT count(*) AS rows FROM unheld",
        )
        .bind::<sql_types::Text, _>(key)
        .get_result::<Counted>(conn)
        .await?;
        Ok(unheld.rows > 0)
    }

    /// The object is gone from storage: forgets its key.
    pub async fn done(conn: &mut AsyncPgConnection, key: &str) -> AppResult<()> {
        diesel::delete(storage_deletions::table.filter(storage_deletions::object_key.eq(key)))
            .execute(conn)
            .await?;
        Ok(())
    }
}
