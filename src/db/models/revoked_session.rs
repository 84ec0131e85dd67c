//! The `revoked_sessions` table: sessions ended before their access tokens expired, the truth
//! behind Redis's `revoked-session:<sid>` markers (docs/identity.md, "Ending sessions at once").
//! A row matters until its `expires_at`, when every token of its session, access and refresh, has
//! expired.

use chrono::{DateTime, Utc};
use diesel::prelude::{Queryable, Selectable};
use diesel::sql_types::{Array, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::db::schema::revoked_sessions;
use crate::errors::AppResult;

/// A row of `revoked_sessions`: a session ended before its tokens expired, and until when that
/// matters. Its associated functions are the table's queries; the service reads no row back (the
/// revocation travels as Redis's markers), so nothing builds one yet.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = revoked_sessions, check_for_backend(diesel::pg::Pg))]
pub struct RevokedSessionRow {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub revoked_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Records sessions `$2` of user `$1` as revoked until `$3` (or later, if one already is), and
/// forgets the user's other rows that no longer matter: one statement, so the table stays the
/// size of what is live. The sessions being recorded are left out of the forgetting: a session
/// revoked again after its row expired (a logout sent again) would otherwise have its row kept
/// by the insert's conflict and deleted by the same statement.
const RECORD: &str = "WITH forgotten AS ( \
         DELETE FROM revoked_sessions \
         WHERE user_id = $1 AND expires_at < now() AND session_id <> ALL ($2::uuid[]) \
     ) \
     INSERT INTO revoked_sessions (session_id, user_id, expires_at) \
     SELECT unnest($2::uuid[]), $1, $3 \
     ON CONFLICT (session_id) DO UPDATE \
         SET expires_at = greatest(revoked_sessions.expires_at, EXCLUDED.expires_at)";

impl RevokedSessionRow {
    /// Records `sessions` of `user_id` as revoked until `until`. One statement; nothing for an
    /// empty list.
    pub async fn record(
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
        sessions: &[Uuid],
        until: DateTime<Utc>,
    ) -> AppResult<()> {
        if sessions.is_empty() {
            return Ok(());
        }
        KeepPrepared(
            diesel::sql_query(RECORD)
                .bind::<SqlUuid, _>(user_id)
                .bind::<Array<SqlUuid>, _>(sessions)
                .bind::<Timestamptz, _>(until),
        )
        .execute(conn)
        .await?;
        Ok(())
    }
}
