//! The `webhook_endpoint_secrets` table: the secrets rotations retired, each signing beside the
//! endpoint's current secret until its own expiry, by PostgreSQL's clock (docs/webhooks.md,
//! "Rotation"). The claim of an endpoint reads those still signing
//! ([`super::webhook_delivery::WebhookDeliveryRow::claim`]).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::errors::AppResult;

/// What retiring an endpoint's current secret came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retirement {
    /// The current secret now signs as a retired one until `until`.
    Retired { until: DateTime<Utc> },
    /// As many retired secrets still sign as may: nothing was retired. The oldest of them stops
    /// signing at `oldest_expires_at`.
    AtLimit {
        signing: i64,
        oldest_expires_at: DateTime<Utc>,
    },
}

#[derive(QueryableByName)]
struct RetireRow {
    #[diesel(sql_type = BigInt)]
    signing: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    oldest_expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    retired_until: Option<DateTime<Utc>>,
}

impl Retirement {
    /// Locks endpoint `id` of the account for its rotation (`FOR NO KEY UPDATE`, as every change
    /// of an endpoint: the events of its account, which hold it `FOR KEY SHARE`, do not wait),
    /// deletes its retired secrets past their expiry and, while fewer than `most` still sign,
    /// keeps its current secret as a retired one for `overlap` from now (PostgreSQL's clock), in
    /// one statement. `None` when the account has no such endpoint.
    pub async fn of_current_secret(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
        overlap: std::time::Duration,
        most: i64,
    ) -> AppResult<Option<Self>> {
        let row: Option<RetireRow> = diesel::sql_query(
            "WITH endpoint AS ( \
                 SELECT id, secret_ciphertext FROM webhook_endpoints \
                 WHERE account_id = $1 AND id = $2 FOR NO KEY UPDATE), \
             swept AS ( \
                 DELETE FROM webhook_endpoint_secrets s USING endpoint \
                 WHERE s.endpoint_id = endpoint.id AND s.expires_at <= now()), \
             signing AS ( \
                 SELECT count(s.id) AS signing, min(s.expires_at) AS oldest_expires_at \
                 FROM endpoint LEFT JOIN webhook_endpoint_secrets s \
                     ON s.endpoint_id = endpoint.id AND s.expires_at > now()), \
             retired AS ( \
                 INSERT INTO webhook_endpoint_secrets (endpoint_id, secret_ciphertext, expires_at) \
                 SELECT endpoint.id, endpoint.secret_ciphertext, \
                     now() + make_interval(secs => $3) \
                 FROM endpoint, signing WHERE signing.signing < $4 \
                 RETURNING expires_at) \
             SELECT signing.signing, signing.oldest_expires_at, \
                 (SELECT expires_at FROM retired) AS retired_until \
             FROM endpoint, signing",
        )
        .bind::<SqlUuid, _>(account_id)
        .bind::<SqlUuid, _>(id)
        .bind::<Double, _>(overlap.as_secs_f64())
        .bind::<BigInt, _>(most)
        .get_result(conn)
        .await
        .optional()?;
        Ok(
            row.map(|row| match (row.retired_until, row.oldest_expires_at) {
                (Some(until), _) => Self::Retired { until },
                (None, oldest) => Self::AtLimit {
                    signing: row.signing,
                    oldest_expires_at: oldest.unwrap_or_default(),
                },
            }),
        )
    }
}
