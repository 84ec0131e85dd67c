//! The `password_tokens` table: single-use tokens that set a password, for a reset
//! (RequestPasswordReset) or an invitation (CreateUser), stored only as SHA-256 hashes
//! ([`crate::domain::PasswordToken`]). Each write that issues a token writes its message to the
//! `notifications` outbox in the same statement.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Bytea, Double, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::KeepPrepared;
use crate::domain::PasswordTokenSeed;
use crate::errors::AppResult;

/// A token to issue, with the message that carries its link.
#[derive(Debug)]
pub struct NewPasswordToken<'a> {
    pub id: Uuid,
    pub token_hash: &'a [u8],
    /// How long the link works, from PostgreSQL's `now()` when the token is written (its clock
    /// is the one ResetPassword and the notification claim read the expiry with).
    pub lifetime: std::time::Duration,
    /// The notification's id and `Message-ID`.
    pub notification_id: Uuid,
    pub message_id: &'a str,
    /// What the message derives the link's token from.
    pub seed: &'a PasswordTokenSeed,
}

/// A presented token as stored, with what deciding about it needs.
#[derive(Clone, Debug, QueryableByName)]
pub struct PasswordTokenRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub user_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub account_id: Uuid,
    /// The slug of the token's account: a token presented for another account is unknown there.
    #[diesel(sql_type = Text)]
    pub account_slug: String,
    #[diesel(sql_type = Timestamptz)]
    pub expires_at: DateTime<Utc>,
    /// Whether it has expired, by PostgreSQL's clock (which wrote `expires_at`).
    #[diesel(sql_type = Bool)]
    pub expired: bool,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub used_at: Option<DateTime<Utc>>,
    /// Whether the user may still sign in (a deactivated user's link does nothing).
    #[diesel(sql_type = Bool)]
    pub user_active: bool,
}

/// The expiry of a token living `$5` seconds from PostgreSQL's `now()`, and as its message shows
/// it (RFC 3339, UTC, whole seconds).
macro_rules! expiry {
    () => {
        "(now() + make_interval(secs => $5))"
    };
}
macro_rules! expiry_shown {
    () => {
        concat!(
            "to_char(",
            expiry!(),
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        )
    };
}

/// RequestPasswordReset's one statement, the same whether or not the address is a user's: it
/// finds the active user with a password of account slug `$1` and email `$2`, and only for such a
/// user inserts the token and its message. `$3` token id, `$4` hash, `$5` lifetime in seconds,
/// `$6` notification id, `$7` seed, `$8` Message-ID.
const REQUEST_RESET: &str = concat!(
    "WITH target AS ( \
         SELECT u.id AS user_id, u.account_id, u.email, u.display_name, a.slug \
         FROM accounts a JOIN users u ON u.account_id = a.id \
         WHERE a.slug = $1 AND u.email = $2 AND u.active AND u.password_hash IS NOT NULL \
     ), token AS ( \
         INSERT INTO password_tokens \
             (id, account_id, user_id, purpose, token_hash, expires_at, notification_id) \
         SELECT $3, account_id, user_id, 'reset', $4, ",
    expiry!(),
    ", $6 FROM target \
         RETURNING user_id \
     ) \
     INSERT INTO notifications \
         (id, account_id, kind, recipient_user_id, recipient_address, data, message_id) \
     SELECT $6, target.account_id, 'password_reset', target.user_id, target.email, \
         jsonb_build_object('seed', $7::text, 'account_slug', target.slug, \
             'display_name', target.display_name, 'expires_at', ",
    expiry_shown!(),
    "), $8 \
     FROM target JOIN token ON token.user_id = target.user_id"
);

/// CreateUser's invitation, one statement: the token of user `$3` of account `$2` and its message
/// to `$7`. `$1` token id, `$4` hash, `$5` lifetime in seconds, `$6` notification id, `$8` seed,
/// `$9` the user's display name, `$10` Message-ID.
const INVITE: &str = concat!(
    "WITH token AS ( \
         INSERT INTO password_tokens \
             (id, account_id, user_id, purpose, token_hash, expires_at, notification_id) \
         VALUES ($1, $2, $3, 'invitation', $4, ",
    expiry!(),
    ", $6) \
         RETURNING account_id, user_id \
     ) \
     INSERT INTO notifications \
         (id, account_id, kind, recipient_user_id, recipient_address, data, message_id) \
     SELECT $6, token.account_id, 'invitation', token.user_id, $7, \
         jsonb_build_object('seed', $8::text, \
             'account_slug', (SELECT slug FROM accounts WHERE id = token.account_id), \
             'display_name', $9::text, 'expires_at', ",
    expiry_shown!(),
    "), $10 \
     FROM token"
);

/// A presented token by its hash `$1`.
const FIND: &str = "SELECT t.id, t.user_id, t.account_id, a.slug AS account_slug, t.expires_at, \
         t.expires_at <= now() AS expired, t.used_at, u.active AS user_active \
     FROM password_tokens t \
     JOIN accounts a ON a.id = t.account_id \
     JOIN users u ON u.account_id = t.account_id AND u.id = t.user_id \
     WHERE t.token_hash = $1";

/// ResetPassword's write, one statement: uses token `$1` if it is still unused and unexpired,
/// uses up every other token of its user, sets the user's password hash `$2`, and records the
/// user's sessions `$3` as revoked until `$4` (as `RevokedSessionRow::record` does: an expired row
/// of one of them is renewed, not forgotten). Answers whether the password was set.
///
/// The user's row is locked first (`owner`, an InitPlan run before any token is touched): two
/// resets of one user with two links then queue there, and the second finds its token used by
/// the first, where each locking its own token and then the other's deadlocked.
const USE_TOKEN: &str = "WITH owner AS MATERIALIZED ( \
         SELECT u.id FROM users u \
         JOIN password_tokens t ON t.account_id = u.account_id AND t.user_id = u.id \
         WHERE t.id = $1 \
         FOR NO KEY UPDATE OF u \
     ), used AS ( \
         UPDATE password_tokens SET used_at = now() \
         WHERE id = $1 AND used_at IS NULL AND expires_at > now() \
             AND EXISTS (SELECT 1 FROM owner) \
         RETURNING account_id, user_id \
     ), others AS ( \
         UPDATE password_tokens SET used_at = now() \
         WHERE id <> $1 AND used_at IS NULL \
             AND (account_id, user_id) IN (SELECT account_id, user_id FROM used) \
     ), changed AS ( \
         UPDATE users SET password_hash = $2, updated_at = now() \
         FROM used WHERE users.account_id = used.account_id AND users.id = used.user_id \
         RETURNING users.id \
     ), forgotten AS ( \
         DELETE FROM revoked_sessions \
         WHERE user_id IN (SELECT user_id FROM used) AND expires_at < now() \
             AND session_id <> ALL ($3::uuid[]) \
     ), revoked AS ( \
         INSERT INTO revoked_sessions (session_id, user_id, expires_at) \
         SELECT unnest($3::uuid[]), used.user_id, $4 FROM used \
         ON CONFLICT (session_id) DO UPDATE \
             SET expires_at = greatest(revoked_sessions.expires_at, EXCLUDED.expires_at) \
     ) \
     SELECT EXISTS (SELECT 1 FROM changed) AS changed";

#[derive(QueryableByName)]
struct Changed {
    #[diesel(sql_type = Bool)]
    changed: bool,
}

impl PasswordTokenRow {
    /// Issues a reset token for the user `email` of account `slug`, with its message, if there
    /// is such an active user with a password; otherwise does nothing, with the same statement.
    pub async fn request_reset(
        conn: &mut AsyncPgConnection,
        slug: &str,
        email: &str,
        token: &NewPasswordToken<'_>,
    ) -> AppResult<bool> {
        let written = KeepPrepared(
            diesel::sql_query(REQUEST_RESET)
                .bind::<Text, _>(slug)
                .bind::<Text, _>(email)
                .bind::<SqlUuid, _>(token.id)
                .bind::<Bytea, _>(token.token_hash)
                .bind::<Double, _>(token.lifetime.as_secs_f64())
                .bind::<SqlUuid, _>(token.notification_id)
                .bind::<Text, _>(token.seed.as_str())
                .bind::<Text, _>(token.message_id),
        )
        .execute(conn)
        .await?;
        Ok(written == 1)
    }

    /// Issues an invitation token for user `user_id` of `account_id`, with its message to
    /// `address`.
    pub async fn invite(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        user_id: Uuid,
        address: &str,
        display_name: &str,
        token: &NewPasswordToken<'_>,
    ) -> AppResult<()> {
        KeepPrepared(
            diesel::sql_query(INVITE)
                .bind::<SqlUuid, _>(token.id)
                .bind::<SqlUuid, _>(account_id)
                .bind::<SqlUuid, _>(user_id)
                .bind::<Bytea, _>(token.token_hash)
                .bind::<Double, _>(token.lifetime.as_secs_f64())
                .bind::<SqlUuid, _>(token.notification_id)
                .bind::<Text, _>(address)
                .bind::<Text, _>(token.seed.as_str())
                .bind::<Text, _>(display_name)
                .bind::<Text, _>(token.message_id),
        )
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The token whose hash is `token_hash`, if any.
    pub async fn find(
        conn: &mut AsyncPgConnection,
        token_hash: &[u8],
    ) -> AppResult<Option<PasswordTokenRow>> {
        Ok(
            KeepPrepared(diesel::sql_query(FIND).bind::<Bytea, _>(token_hash))
                .get_result::<PasswordTokenRow>(conn)
                .await
                .optional()?,
        )
    }

    /// Uses token `id` to set the password hash `password_hash`, recording `sessions` of its
    /// user as revoked until `revoked_until`, in one statement. False when the token was used or
    /// expired meanwhile (nothing is written then).
    pub async fn use_token(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        password_hash: &str,
        sessions: &[Uuid],
        revoked_until: DateTime<Utc>,
    ) -> AppResult<bool> {
        Ok(KeepPrepared(
            diesel::sql_query(USE_TOKEN)
                .bind::<SqlUuid, _>(id)
                .bind::<Text, _>(password_hash)
                .bind::<Array<SqlUuid>, _>(sessions)
                .bind::<Timestamptz, _>(revoked_until),
        )
        .get_result::<Changed>(conn)
        .await?
        .changed)
    }
}
