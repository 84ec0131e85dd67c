//! The `webhook_deliveries` queue and its `webhook_delivery_attempts` log (docs/webhooks.md,
//! "Webhooks we send"). Deliveries are written by the fan-out trigger of `events`; workers take
//! them an endpoint at a time:
//!
//! 1. **Claim** ([`WebhookDeliveryRow::claim`], one statement, acted on once its commit is
//!    confirmed: [`crate::db::committed`]): the enabled endpoint, leased by no
//!    worker and resting after no failure, whose oldest due delivery waited longest; its lease is
//!    taken and up to a batch of its due deliveries returned, in event order, with their events.
//! 2. The attempts, one after the other, with no connection held.
//! 3. **Record** each attempt ([`WebhookDeliveryRow::record`], one statement, matched to the
//!    lease and to the attempt number): the delivery's new state, the endpoint's failing streak,
//!    and the attempt's log row, numbered on from the delivery's earlier attempts (a redrive
//!    starts a new schedule, not a new log).
//! 4. **Release** the lease.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Bool, Bytea, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use super::event::{EventRow, StoredEvent, Unreadable};
use crate::db::schema::{webhook_deliveries, webhook_delivery_attempts};
use crate::domain::{self, DeliveryAttempt, DeliveryState, PageCursor};
use crate::errors::AppResult;

/// How many attempts a listed delivery shows.
pub const LISTED_ATTEMPTS: i64 = 20;

/// An endpoint a worker holds the lease of, with the deliveries it took.
#[derive(Debug)]
pub struct ClaimedEndpoint {
    pub endpoint_id: Uuid,
    pub account_id: Uuid,
    pub url: String,
    pub lease_token: Uuid,
    pub secret_ciphertext: Vec<u8>,
    /// The secrets rotations retired that still sign (each until its own expiry, by
    /// PostgreSQL's clock), the most recently retired first.
    pub retired_secret_ciphertexts: Vec<Vec<u8>>,
    pub deliveries: Vec<ClaimedDelivery>,
    /// In the lane of the failing: in a failing streak, or answering slowly (its last success
    /// took more than half the attempt timeout).
    pub failing: bool,
}

/// One delivery taken for an attempt.
#[derive(Debug)]
pub struct ClaimedDelivery {
    pub id: Uuid,
    /// The number of the attempt about to be made (from 1).
    pub attempt: i32,
    /// The event, or why this build cannot read it (a type or snapshot of another version, a
    /// corrupt row): that delivery's attempt is then recorded failed, and the batch goes on.
    pub event: Result<StoredEvent, Unreadable>,
}

#[derive(QueryableByName)]
struct ClaimRow {
    #[diesel(sql_type = SqlUuid)]
    endpoint_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    account_id: Uuid,
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = SqlUuid)]
    lease_token: Uuid,
    #[diesel(sql_type = Bytea)]
    secret_ciphertext: Vec<u8>,
    #[diesel(sql_type = Array<Bytea>)]
    retired_secret_ciphertexts: Vec<Vec<u8>>,
    #[diesel(sql_type = Bool)]
    failing: bool,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    delivery_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Integer>)]
    attempts: Option<i32>,
    #[diesel(embed)]
    event: Option<EventRow>,
}

/// What one attempt came to.
#[derive(Clone, Debug)]
pub struct AttemptRecord<'a> {
    pub delivery_id: Uuid,
    pub attempt: i32,
    pub url: &'a str,
    pub started_at: DateTime<Utc>,
    pub latency_ms: i32,
    pub http_status: Option<i32>,
    pub error: Option<&'a str>,
    pub response_excerpt: &'a str,
    /// The delivery's state after it.
    pub state: DeliveryState,
    /// How long from the record (by PostgreSQL's clock, which the claim compares with) a
    /// pending delivery is due again.
    pub next_attempt_in: Option<std::time::Duration>,
    /// How long from the record the endpoint rests (after a failure).
    pub endpoint_rests_for: Option<std::time::Duration>,
    /// The endpoint's URL as the claim read it: once the endpoint has moved (or was disabled),
    /// the record is refused and the batch ends, so no more of it goes to the old address.
    pub claimed_url: &'a str,
    /// Whether the attempt says anything of the endpoint: false for one this instance could not
    /// make (its event does not read here), which leaves the endpoint's failing streak, its last
    /// success and its rest as they were.
    pub about_endpoint: bool,
    /// A success that took more than half the attempt timeout: the endpoint answers slowly and
    /// is claimed in the lane of the failing until a success comes quicker.
    pub slow: bool,
}

/// Whether a record was written, and the endpoint's failing streak after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Written; the endpoint has been failing for this long, by PostgreSQL's clock, which
    /// wrote the streak's start (`None`: it is not failing).
    Written {
        failing_for: Option<std::time::Duration>,
    },
    /// The lease was no longer this worker's (ran out, or taken), the endpoint was disabled or
    /// moved meanwhile, or the attempt was recorded already: nothing written.
    LeaseLost,
}

impl WebhookDeliveryRow {
    /// Takes the leases of up to `limit` endpoints with due deliveries, those whose oldest due
    /// delivery waited longest first, at most `failing_limit` of them in the lane of the failing
    /// (in a failing streak or answering slowly: they may hold only part of the workers), and up
    /// to `batch` due deliveries of each in event order. No account is given more than
    /// `per_account` places, counting those `held` (one entry per place this instance's workers
    /// hold, by account): an account's healthy endpoints take its places before its failing or
    /// slow ones. Endpoints another instance is claiming at the same moment are skipped, not waited
    /// for. Each comes with its current secret and up to `most_retired_secrets` retired ones that
    /// still sign.
    pub async fn claim(
        conn: &mut AsyncPgConnection,
        lease_millis: i64,
        batch: i64,
        limit: i64,
        failing_limit: i64,
        most_retired_secrets: i64,
        (held, per_account): (&[Uuid], i64),
    ) -> AppResult<Vec<ClaimedEndpoint>> {
        // `leased` checks the endpoint's row as it is now against the version this statement's
        // snapshot saw (`xmin`): a claim whose snapshot predates any change to the row since (a
        // lease taken, an attempt recorded, a lease given back, all committed meanwhile) takes
        // nothing. Its snapshot would show as due the deliveries another worker has made in
        // between; the next claim sees them as they are.
        let rows: Vec<ClaimRow> = diesel::sql_query(
            "WITH held AS ( \
                 SELECT account_id, count(*) AS places FROM unnest($6::uuid[]) AS h(account_id) \
                 GROUP BY account_id), \
             due AS ( \
                 SELECT e.id, e.account_id, e.xmin AS seen_version, head.due, \
                     (e.failing_since IS NOT NULL OR e.slow_since IS NOT NULL) AS failing, \
                     row_number() OVER (PARTITION BY e.account_id \
                         ORDER BY (e.failing_since IS NOT NULL OR e.slow_since IS NOT NULL), \
                                  head.due) AS account_place \
                 FROM webhook_endpoints e \
                 CROSS JOIN LATERAL ( \
                     SELECT min(d.next_attempt_at) AS due FROM webhook_deliveries d \
                     WHERE d.endpoint_id = e.id AND d.state = 'pending' \
                       AND d.next_attempt_at <= now()) head \
                 WHERE e.state = 'enabled' AND head.due IS NOT NULL \
                   AND (e.lease_until IS NULL OR e.lease_until < now()) \
                   AND (e.retry_at IS NULL OR e.retry_at <= now())), \
             fair AS ( \
                 SELECT due.id, due.seen_version, due.due, due.failing, \
                     row_number() OVER (PARTITION BY due.failing ORDER BY due.due) AS place \
                 FROM due LEFT JOIN held ON held.account_id = due.account_id \
                 WHERE due.account_place + coalesce(held.places, 0) <= $7), \
             chosen AS ( \
                 SELECT id, seen_version FROM fair WHERE NOT failing OR place <= $4 \
                 ORDER BY due LIMIT $3), \
             locked AS ( \
                 SELECT e.id FROM webhook_endpoints e WHERE e.id IN (SELECT id FROM chosen) \
                 FOR NO KEY UPDATE SKIP LOCKED), \
             leased AS ( \
                 UPDATE webhook_endpoints e \
                 SET lease_token = gen_random_uuid(), \
                     lease_until = now() + make_interval(secs => $1 / 1000.0) \
                 FROM locked JOIN chosen ON chosen.id = locked.id \
                 WHERE e.id = locked.id AND e.xmin = chosen.seen_version \
                   AND e.state = 'enabled' \
                   AND (e.lease_until IS NULL OR e.lease_until < now()) \
                 RETURNING e.id, e.account_id, e.url, e.lease_token, e.secret_ciphertext, \
                     ARRAY(SELECT s.secret_ciphertext FROM webhook_endpoint_secrets s \
                           WHERE s.endpoint_id = e.id AND s.expires_at > now() \
                           ORDER BY s.retired_at DESC, s.id LIMIT $5) \
                         AS retired_secret_ciphertexts, \
                     (e.failing_since IS NOT NULL OR e.slow_since IS NOT NULL) AS failing), \
             taken AS ( \
                 SELECT leased.id AS endpoint_id, d.id, d.attempts, d.event_id, d.event_seq \
                 FROM leased CROSS JOIN LATERAL ( \
                     SELECT d.id, d.attempts, d.event_id, d.event_seq \
                     FROM webhook_deliveries d \
                     WHERE d.endpoint_id = leased.id AND d.state = 'pending' \
                       AND d.next_attempt_at <= now() \
                     ORDER BY d.event_seq LIMIT $2) d) \
             SELECT leased.id AS endpoint_id, leased.account_id, leased.url, leased.lease_token, \
                 leased.secret_ciphertext, leased.retired_secret_ciphertexts, leased.failing, \
                 taken.id AS delivery_id, taken.attempts, \
                 ev.id AS event_id, ev.type AS event_type, ev.account_id AS event_account_id, \
                 ev.created_at AS event_created_at, ev.changed_fields, ev.snapshot \
             FROM leased \
             LEFT JOIN taken ON taken.endpoint_id = leased.id \
             LEFT JOIN events ev ON ev.id = taken.event_id \
             ORDER BY leased.id, taken.event_seq",
        )
        .bind::<BigInt, _>(lease_millis)
        .bind::<BigInt, _>(batch)
        .bind::<BigInt, _>(limit)
        .bind::<BigInt, _>(failing_limit)
        .bind::<BigInt, _>(most_retired_secrets)
        .bind::<Array<SqlUuid>, _>(held)
        .bind::<BigInt, _>(per_account)
        .load(conn)
        .await?;
        if !rows.is_empty() {
            crate::db::committed(conn).await?;
        }
        let mut claimed: Vec<ClaimedEndpoint> = Vec::new();
        for row in rows {
            if claimed
                .last()
                .is_none_or(|last| last.endpoint_id != row.endpoint_id)
            {
                claimed.push(ClaimedEndpoint {
                    endpoint_id: row.endpoint_id,
                    account_id: row.account_id,
                    url: row.url.clone(),
                    lease_token: row.lease_token,
                    secret_ciphertext: row.secret_ciphertext.clone(),
                    retired_secret_ciphertexts: row.retired_secret_ciphertexts.clone(),
                    deliveries: Vec::new(),
                    failing: row.failing,
                });
            }
            let (Some(id), Some(attempts), Some(event)) =
                (row.delivery_id, row.attempts, row.event)
            else {
                continue;
            };
            let Some(endpoint) = claimed.last_mut() else {
                continue;
            };
            endpoint.deliveries.push(ClaimedDelivery {
                id,
                attempt: attempts + 1,
                event: event.read(),
            });
        }
        Ok(claimed)
    }

    /// Records one attempt under the lease `lease_token` of `endpoint_id`: the delivery's state,
    /// the endpoint's failing streak (ended by a 2xx, started by a failure) and the attempt's
    /// row, in one statement.
    pub async fn record(
        conn: &mut AsyncPgConnection,
        endpoint_id: Uuid,
        lease_token: Uuid,
        record: &AttemptRecord<'_>,
    ) -> AppResult<Recorded> {
        #[derive(QueryableByName)]
        struct Written {
            #[diesel(sql_type = Nullable<diesel::sql_types::Double>)]
            failing_for_secs: Option<f64>,
        }
        let succeeded = record.state == DeliveryState::Succeeded;
        let written: Option<Written> = diesel::sql_query(
            "WITH endpoint AS ( \
                 SELECT id, account_id FROM webhook_endpoints WHERE id = $1 AND lease_token = $2 \
                   AND lease_until > now() AND state = 'enabled' AND url = $15), \
             delivery AS ( \
                 UPDATE webhook_deliveries d \
                 SET attempts = $4, last_attempt_at = $6, last_http_status = $8, \
                     last_error = $9, state = $11, \
                     next_attempt_at = coalesce(now() + make_interval(secs => $12), \
                                                d.next_attempt_at), \
                     done_at = CASE WHEN $11 = 'pending' THEN NULL ELSE now() END \
                 FROM endpoint \
                 WHERE d.id = $3 AND d.endpoint_id = endpoint.id AND d.state = 'pending' \
                   AND d.attempts = $4 - 1 \
                 RETURNING d.id, d.account_id), \
             attempt AS ( \
                 INSERT INTO webhook_delivery_attempts (delivery_id, attempt, account_id, \
                     endpoint_id, url, started_at, latency_ms, http_status, error, \
                     response_excerpt) \
                 SELECT delivery.id, \
                     1 + coalesce((SELECT max(a.attempt) FROM webhook_delivery_attempts a \
                                   WHERE a.delivery_id = delivery.id), 0), \
                     delivery.account_id, $1, $5, $6, $7, $8, $9, $10 \
                 FROM delivery) \
             UPDATE webhook_endpoints e \
             SET failing_since = CASE WHEN NOT $16 THEN e.failing_since \
                                      WHEN $14 THEN NULL ELSE coalesce(e.failing_since, now()) END, \
                 last_success_at = CASE WHEN $16 AND $14 THEN now() ELSE e.last_success_at END, \
                 slow_since = CASE WHEN NOT ($16 AND $14) THEN e.slow_since \
                                   WHEN $17 THEN coalesce(e.slow_since, now()) ELSE NULL END, \
                 retry_at = CASE WHEN $16 THEN now() + make_interval(secs => $13) \
                                 ELSE e.retry_at END \
             FROM delivery WHERE e.id = $1 \
             RETURNING GREATEST(EXTRACT(EPOCH FROM now() - e.failing_since), 0)::float8 \
                 AS failing_for_secs",
        )
        .bind::<SqlUuid, _>(endpoint_id)
        .bind::<SqlUuid, _>(lease_token)
        .bind::<SqlUuid, _>(record.delivery_id)
        .bind::<Integer, _>(record.attempt)
        .bind::<Text, _>(record.url)
        .bind::<Timestamptz, _>(record.started_at)
        .bind::<Integer, _>(record.latency_ms)
        .bind::<Nullable<Integer>, _>(record.http_status)
        .bind::<Nullable<Text>, _>(record.error)
        .bind::<Text, _>(record.response_excerpt)
        .bind::<Text, _>(record.state.as_str())
        .bind::<Nullable<diesel::sql_types::Double>, _>(
            record.next_attempt_in.map(|delay| delay.as_secs_f64()),
        )
        .bind::<Nullable<diesel::sql_types::Double>, _>(
            record.endpoint_rests_for.map(|rest| rest.as_secs_f64()),
        )
        .bind::<Bool, _>(succeeded)
        .bind::<Text, _>(record.claimed_url)
        .bind::<Bool, _>(record.about_endpoint)
        .bind::<Bool, _>(record.slow)
        .get_result(conn)
        .await
        .optional()?;
        Ok(match written {
            Some(written) => Recorded::Written {
                failing_for: written
                    .failing_for_secs
                    .map(|secs| std::time::Duration::try_from_secs_f64(secs).unwrap_or_default()),
            },
            None => Recorded::LeaseLost,
        })
    }

    /// Gives the endpoint's lease back; with `rest`, no claim takes it again before that long.
    pub async fn release(
        conn: &mut AsyncPgConnection,
        endpoint_id: Uuid,
        lease_token: Uuid,
        rest: Option<std::time::Duration>,
    ) -> AppResult<()> {
        diesel::sql_query(
            "UPDATE webhook_endpoints SET lease_token = NULL, lease_until = NULL, \
                 retry_at = coalesce(now() + make_interval(secs => $3), retry_at) \
             WHERE id = $1 AND lease_token = $2",
        )
        .bind::<SqlUuid, _>(endpoint_id)
        .bind::<SqlUuid, _>(lease_token)
        .bind::<Nullable<diesel::sql_types::Double>, _>(rest.map(|rest| rest.as_secs_f64()))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Disables the endpoint when it has been failing for `span` or longer (the whole retry
    /// schedule, by PostgreSQL's clock, which wrote the streak's start), and queues the notice
    /// to each active admin of its account, in one statement; its account and URL when it was
    /// disabled now.
    pub async fn disable_if_failing_for(
        conn: &mut AsyncPgConnection,
        endpoint_id: Uuid,
        span: std::time::Duration,
        message_domain: &str,
    ) -> AppResult<Option<(Uuid, String)>> {
        #[derive(QueryableByName)]
        struct Disabled {
            #[diesel(sql_type = SqlUuid)]
            account_id: Uuid,
            #[diesel(sql_type = Text)]
            url: String,
        }
        let disabled: Option<Disabled> = diesel::sql_query(
            "WITH disabled AS ( \
                 UPDATE webhook_endpoints \
                 SET state = 'disabled', disabled_reason = 'failing', disabled_at = now(), \
                     lease_token = NULL, lease_until = NULL, version = version + 1, \
                     updated_at = now() \
                 WHERE id = $1 AND state = 'enabled' \
                   AND failing_since <= now() - make_interval(secs => $2) \
                 RETURNING id, account_id, url, disabled_at), \
             notice AS ( \
                 SELECT gen_random_uuid() AS notification_id, u.id AS user_id, u.email, \
                     d.id AS endpoint_id, d.account_id, d.url, d.disabled_at \
                 FROM disabled d \
                 JOIN users u ON u.account_id = d.account_id AND u.role = 'admin' AND u.active), \
             queued AS ( \
                 INSERT INTO notifications (id, account_id, kind, recipient_user_id, \
                     recipient_address, data, message_id, dedupe_key) \
                 SELECT n.notification_id, n.account_id, 'endpoint_disabled', n.user_id, \
                     n.email, jsonb_build_object('endpoint_id', n.endpoint_id, 'url', n.url), \
                     '<' || n.notification_id || '@' || $3 || '>', \
                     'endpoint_disabled:' || n.endpoint_id || ':' || n.disabled_at || ':' \
                         || n.user_id \
                 FROM notice n \
                 ON CONFLICT (dedupe_key) DO NOTHING) \
             SELECT account_id, url FROM disabled",
        )
        .bind::<SqlUuid, _>(endpoint_id)
        .bind::<diesel::sql_types::Double, _>(span.as_secs_f64())
        .bind::<Text, _>(message_domain)
        .get_result(conn)
        .await
        .optional()?;
        Ok(disabled.map(|row| (row.account_id, row.url)))
    }

    /// The deliveries of an endpoint, newest event first, with their latest attempts.
    pub async fn list_for_endpoint(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        endpoint_id: Uuid,
        state: Option<DeliveryState>,
        after_seq: Option<i64>,
        limit: i64,
    ) -> AppResult<Vec<(i64, domain::WebhookDelivery)>> {
        let mut query = webhook_deliveries::table
            .filter(webhook_deliveries::account_id.eq(account_id))
            .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
            .select(WebhookDeliveryRow::as_select())
            .order(webhook_deliveries::event_seq.desc())
            .limit(limit)
            .into_boxed();
        if let Some(state) = state {
            query = query.filter(webhook_deliveries::state.eq(state.as_str()));
        }
        if let Some(seq) = after_seq {
            query = query.filter(webhook_deliveries::event_seq.lt(seq));
        }
        let rows: Vec<WebhookDeliveryRow> = query.load(conn).await?;
        let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
        let attempts: Vec<AttemptRow> = webhook_delivery_attempts::table
            .filter(webhook_delivery_attempts::delivery_id.eq_any(&ids))
            .select(AttemptRow::as_select())
            .order((
                webhook_delivery_attempts::delivery_id,
                webhook_delivery_attempts::attempt.desc(),
            ))
            .load(conn)
            .await?;
        rows.into_iter()
            .map(|row| {
                let seq = row.event_seq;
                let log = attempts
                    .iter()
                    .filter(|attempt| attempt.delivery_id == row.id)
                    .take(usize::try_from(LISTED_ATTEMPTS).unwrap_or(usize::MAX))
                    .cloned()
                    .map(AttemptRow::into_domain)
                    .collect();
                row.into_domain(log).map(|delivery| (seq, delivery))
            })
            .collect()
    }

    /// One delivery of an endpoint, with its latest attempts.
    pub async fn find(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        endpoint_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<domain::WebhookDelivery>> {
        let row: Option<WebhookDeliveryRow> = webhook_deliveries::table
            .filter(webhook_deliveries::account_id.eq(account_id))
            .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
            .filter(webhook_deliveries::id.eq(id))
            .select(WebhookDeliveryRow::as_select())
            .first(conn)
            .await
            .optional()?;
        let Some(row) = row else {
            return Ok(None);
        };
        let attempts: Vec<AttemptRow> = webhook_delivery_attempts::table
            .filter(webhook_delivery_attempts::delivery_id.eq(id))
            .select(AttemptRow::as_select())
            .order(webhook_delivery_attempts::attempt.desc())
            .limit(LISTED_ATTEMPTS)
            .load(conn)
            .await?;
        row.into_domain(attempts.into_iter().map(AttemptRow::into_domain).collect())
            .map(Some)
    }

    /// Puts failed deliveries of the endpoint back in the queue with a fresh schedule: the one
    /// `only` names, or every one whose event happened at or after `since`. How many.
    ///
    /// Each delivery's event is locked (`FOR KEY SHARE`) before the delivery changes, so that
    /// the retention sweep, which locks the events it deletes, either skips the event or has
    /// deleted it before this statement gets to it (then there is nothing to redrive): it never
    /// deletes a delivery this statement has just put back in the queue
    /// ([`super::event::EventRow::delete_unowed`]).
    pub async fn redrive_failed(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        endpoint_id: Uuid,
        only: Option<Uuid>,
        since: Option<DateTime<Utc>>,
    ) -> AppResult<usize> {
        Ok(diesel::sql_query(
            "WITH kept AS ( \
                 SELECT ev.id FROM events ev JOIN webhook_deliveries d ON d.event_id = ev.id \
                 WHERE d.account_id = $1 AND d.endpoint_id = $2 AND d.state = 'failed' \
                   AND ($3::uuid IS NULL OR d.id = $3) \
                   AND ($4::timestamptz IS NULL OR ev.created_at >= $4) \
                 FOR KEY SHARE OF ev) \
             UPDATE webhook_deliveries d \
             SET state = 'pending', attempts = 0, next_attempt_at = now(), done_at = NULL, \
                 redrive_count = redrive_count + 1 \
             FROM kept \
             WHERE d.event_id = kept.id AND d.account_id = $1 AND d.endpoint_id = $2 \
               AND d.state = 'failed'",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(endpoint_id)
        .bind::<Nullable<SqlUuid>, _>(only)
        .bind::<Nullable<Timestamptz>, _>(since)
        .execute(conn)
        .await?)
    }
}

/// A cursor over an endpoint's deliveries: the event sequence of the last one listed, as a
/// page cursor's id (its time unused).
pub fn delivery_cursor(seq: i64) -> PageCursor {
    PageCursor::at(
        DateTime::<Utc>::UNIX_EPOCH,
        Uuid::from_u64_pair(0, seq as u64),
    )
}

/// The event sequence a [`delivery_cursor`] holds.
pub fn cursor_seq(cursor: &PageCursor) -> i64 {
    cursor.id.as_u64_pair().1 as i64
}

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries, check_for_backend(diesel::pg::Pg))]
pub struct WebhookDeliveryRow {
    id: Uuid,
    endpoint_id: Uuid,
    event_id: Uuid,
    event_seq: i64,
    event_type: String,
    state: String,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

impl WebhookDeliveryRow {
    fn into_domain(self, attempt_log: Vec<DeliveryAttempt>) -> AppResult<domain::WebhookDelivery> {
        let state = DeliveryState::parse(&self.state)
            .map_err(|problem| corrupt("webhook_deliveries.state", problem))?;
        Ok(domain::WebhookDelivery {
            id: self.id,
            endpoint_id: self.endpoint_id,
            event_id: self.event_id,
            event_type: self.event_type,
            state,
            attempts: self.attempts,
            next_attempt_at: (state == DeliveryState::Pending).then_some(self.next_attempt_at),
            created_at: self.created_at,
            attempt_log,
        })
    }
}

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = webhook_delivery_attempts, check_for_backend(diesel::pg::Pg))]
struct AttemptRow {
    delivery_id: Uuid,
    attempt: i32,
    url: String,
    started_at: DateTime<Utc>,
    latency_ms: i32,
    http_status: Option<i32>,
    error: Option<String>,
    response_excerpt: String,
}

impl AttemptRow {
    fn into_domain(self) -> DeliveryAttempt {
        DeliveryAttempt {
            attempt: self.attempt,
            url: self.url,
            started_at: self.started_at,
            latency_ms: self.latency_ms,
            http_status: self.http_status,
            error: self.error,
            response_excerpt: self.response_excerpt,
        }
    }
}
