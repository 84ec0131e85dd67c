//! The `account_tags` table: per account and tag, how many live (not deleted) tickets carry it,
//! kept exact by the `tickets_count_tags` triggers in the transaction of every ticket write
//! (migration 000046). Read by ListTags; nothing here writes it.

use diesel::sql_types::{BigInt, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::domain::{CountedPageCursor, Tag, TagCount, TagPrefix};
use crate::errors::AppResult;

/// One row of `account_tags` as ListTags reads it.
#[derive(diesel::QueryableByName)]
pub struct AccountTagRow {
    #[diesel(sql_type = Text)]
    tag: String,
    #[diesel(sql_type = BigInt)]
    ticket_count: i64,
}

/// The page condition and order of ListTags: most used first, then by name, after the cursor
/// (`$2` count, `$3` tag; a first page passes no count), `$4` rows. `ticket_count <= $2` is where
/// the index scan starts.
const PAGE: &str = "AND ($2::bigint IS NULL OR (ticket_count <= $2 \
                    AND (ticket_count < $2 OR tag > $3))) \
                    ORDER BY ticket_count DESC, tag LIMIT $4";

impl AccountTagRow {
    /// The account's tags that live tickets carry, most used first, then by name; with a
    /// prefix, only the tags that start with it. Without a prefix the list is read in order from
    /// `account_tags_by_count_idx`; with one, the tags in the prefix's range of the primary key
    /// (`tag` is `COLLATE "C"`), sorted.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        prefix: Option<&TagPrefix>,
        after: Option<&CountedPageCursor>,
        limit: i64,
    ) -> AppResult<Vec<TagCount>> {
        let count = after.map(|cursor| cursor.count);
        let tag = after.map_or("", |cursor| cursor.key.as_str());
        let rows: Vec<Self> = match prefix {
            None => {
                KeepPrepared(
                    diesel::sql_query(format!(
                        "SELECT tag, ticket_count FROM account_tags \
                         WHERE account_id = $1 AND ticket_count > 0 {PAGE}"
                    ))
                    .bind::<SqlUuid, _>(account_id)
                    .bind::<Nullable<BigInt>, _>(count)
                    .bind::<Text, _>(tag)
                    .bind::<BigInt, _>(limit),
                )
                .load(conn)
                .await?
            }
            Some(prefix) => {
                KeepPrepared(
                    diesel::sql_query(format!(
                        "SELECT tag, ticket_count FROM account_tags \
                         WHERE account_id = $1 AND ticket_count > 0 \
                           AND tag >= $5 AND tag < $6 {PAGE}"
                    ))
                    .bind::<SqlUuid, _>(account_id)
                    .bind::<Nullable<BigInt>, _>(count)
                    .bind::<Text, _>(tag)
                    .bind::<BigInt, _>(limit)
                    .bind::<Text, _>(prefix.as_str())
                    .bind::<Text, _>(prefix.upper_bound()),
                )
                .load(conn)
                .await?
            }
        };
        Ok(rows.into_iter().map(Self::into_domain).collect())
    }

    /// Only tickets' tags reach this table, and only [`Tag::parse`]'s output is stored there.
    fn into_domain(self) -> TagCount {
        TagCount {
            tag: Tag::from_stored(self.tag),
            tickets: self.ticket_count,
        }
    }
}
