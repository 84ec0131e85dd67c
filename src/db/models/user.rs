//! The `users` table: the people of an account. Queries answer in domain types
//! ([`domain::User`], and [`domain::UserLogin`] where the stored password hash is needed); the
//! row type stays inside this module.
//!
//! Rows are locked `FOR NO KEY UPDATE`, never `FOR UPDATE`: every ticket, comment or
//! notification naming a user takes `FOR KEY SHARE` on the user's row (its foreign key), and no
//! change of ours touches a user's key, so a lock held for a change (the open-ticket count, a
//! demotion, a password reset) queues the other changes of that user and none of those writes.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::corrupt;
use crate::db::KeepPrepared;
use crate::db::schema::users;
use crate::domain::{self, AccountId, DisplayName, Email, PageCursor, Role, UserId};
use crate::errors::AppResult;

/// Read by position from the DSL's queries; by name (`QueryableByName`) from a statement's
/// `RETURNING` written as SQL.
#[derive(Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub password_hash: Option<String>,
    pub active: bool,
}

/// Written by hand to leave the password hash out.
impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl UserRow {
    /// The domain view of this row.
    fn into_domain(self) -> AppResult<domain::User> {
        Ok(domain::User {
            id: UserId::from_uuid(self.id),
            account_id: AccountId::from_uuid(self.account_id),
            email: Email::from_stored(&self.email),
            display_name: DisplayName::parse(&self.display_name)
                .map_err(|problem| corrupt("users.display_name", problem))?,
            role: Role::parse(&self.role).map_err(|problem| corrupt("users.role", problem))?,
            active: self.active,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }

    fn into_login(self) -> AppResult<domain::UserLogin> {
        let password_hash = self.password_hash.clone();
        Ok(domain::UserLogin {
            user: self.into_domain()?,
            password_hash,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub email: &'a str,
    pub display_name: &'a str,
    pub role: &'a str,
    pub password_hash: Option<&'a str>,
}

/// The columns UpdateUser may change; `None` leaves a column as it is.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserChangeset<'a> {
    pub display_name: Option<&'a str>,
    pub role: Option<&'a str>,
    pub active: Option<bool>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// The user `id` of `account_id`, as a query to select from.
#[diesel::dsl::auto_type]
fn user_in_account(account_id: Uuid, id: Uuid) -> _ {
    users::table
        .filter(users::account_id.eq(account_id))
        .filter(users::id.eq(id))
}

/// The domain user of a row that may not have been found.
fn found_user(found: QueryResult<UserRow>) -> AppResult<Option<domain::User>> {
    found.optional()?.map(UserRow::into_domain).transpose()
}

impl UserRow {
    /// The user `id` if it belongs to `account_id`.
    pub async fn find_in_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<domain::User>> {
        found_user(
            user_in_account(account_id, id)
                .select(UserRow::as_select())
                .first(conn)
                .await,
        )
    }

    /// Whether user `id` is active and still has the password hash `password_hash`: what a login
    /// checks again once its session has started (one statement).
    pub async fn still_signs_in_with(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        password_hash: &str,
    ) -> AppResult<bool> {
        Ok(diesel::select(diesel::dsl::exists(
            users::table
                .filter(users::id.eq(id))
                .filter(users::active.eq(true))
                .filter(users::password_hash.eq(password_hash)),
        ))
        .get_result(conn)
        .await?)
    }

    /// The user `id` if it belongs to `account_id`, and whether `session_id` was revoked (a row
    /// of `revoked_sessions` that still matters): one statement, for a caller Redis knows
    /// nothing of and for a refresh.
    pub async fn find_for_session(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
        session_id: Uuid,
    ) -> AppResult<Option<(domain::User, bool)>> {
        use crate::db::schema::revoked_sessions;
        let revoked = diesel::dsl::exists(
            revoked_sessions::table
                .filter(revoked_sessions::session_id.eq(session_id))
                .filter(revoked_sessions::expires_at.gt(diesel::dsl::now)),
        );
        user_in_account(account_id, id)
            .select((UserRow::as_select(), revoked))
            .first::<(UserRow, bool)>(conn)
            .await
            .optional()?
            .map(|(row, revoked)| Ok((row.into_domain()?, revoked)))
            .transpose()
    }

    /// The user `id` if it belongs to `account_id`, its row locked until the transaction ends.
    pub async fn lock_in_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> AppResult<Option<domain::User>> {
        found_user(
            user_in_account(account_id, id)
                .select(UserRow::as_select())
                .for_no_key_update()
                .first(conn)
                .await,
        )
    }
}

impl UserRow {
    /// The user with `email` and their stored password hash, for logging in and inviting.
    pub async fn find_login(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        email: &str,
    ) -> AppResult<Option<domain::UserLogin>> {
        users::table
            .filter(users::account_id.eq(account_id))
            .filter(users::email.eq(email))
            .select(UserRow::as_select())
            .first(conn)
            .await
            .optional()?
            .map(UserRow::into_login)
            .transpose()
    }

    /// Every user, of any account, whose stored address is not of [`Email::PLAIN_SHAPE`] within
    /// its lengths: the only addresses a stricter address rule can refuse (one pass over the
    /// table, for `supportdesk migrate`'s report).
    pub async fn with_unusual_address(
        conn: &mut AsyncPgConnection,
    ) -> AppResult<Vec<domain::User>> {
        let (max_length, max_local_length) = Email::PLAIN_SHAPE_LENGTHS;
        diesel::sql_query(
            "SELECT * FROM users \
             WHERE NOT (email ~ $1 AND length(email) <= $2 \
                        AND length(split_part(email, '@', 1)) <= $3) \
             ORDER BY account_id, id",
        )
        .bind::<sql_types::Text, _>(format!("^{}$", Email::PLAIN_SHAPE))
        .bind::<sql_types::Integer, _>(i32::try_from(max_length).unwrap_or(i32::MAX))
        .bind::<sql_types::Integer, _>(i32::try_from(max_local_length).unwrap_or(i32::MAX))
        .load::<UserRow>(conn)
        .await?
        .into_iter()
        .map(UserRow::into_domain)
        .collect()
    }

    /// Up to `limit` users of `account_id`, newest first, strictly after `after`.
    pub async fn list_for_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        after: Option<PageCursor>,
        limit: i64,
    ) -> AppResult<Vec<domain::User>> {
        let mut query = users::table
            .filter(users::account_id.eq(account_id))
            .select(UserRow::as_select())
            .order((users::created_at.desc(), users::id.desc()))
            .limit(limit)
            .into_boxed();
        if let Some(cursor) = after {
            query = query
                .filter(users::created_at.le(cursor.at))
                .filter(users::created_at.lt(cursor.at).or(users::id.lt(cursor.id)));
        }
        query
            .load::<UserRow>(conn)
            .await?
            .into_iter()
            .map(UserRow::into_domain)
            .collect()
    }

    /// Locks the user's row until the transaction ends: changes that must see a consistent
    /// count of the user's tickets (the open-ticket limit) take this lock first.
    pub async fn lock(conn: &mut AsyncPgConnection, account_id: Uuid, id: Uuid) -> QueryResult<()> {
        user_in_account(account_id, id)
            .select(users::id)
            .for_no_key_update()
            .first::<Uuid>(conn)
            .await
            .map(|_| ())
    }

    /// Locks users `ids` of account `account_id`, in the order of their ids (two changes that
    /// each lock the other's user then queue instead of deadlocking), and answers whether `check`
    /// among them is an active admin.
    pub async fn lock_and_check_admin(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        ids: &[Uuid],
        check: Uuid,
    ) -> AppResult<bool> {
        let locked: Vec<(Uuid, String, bool)> = users::table
            .filter(users::account_id.eq(account_id))
            .filter(users::id.eq_any(ids))
            .order(users::id)
            .select((users::id, users::role, users::active))
            .for_no_key_update()
            .load(conn)
            .await?;
        Ok(locked.iter().any(|(id, role, active)| {
            *id == check && *active && role.as_str() == Role::Admin.as_str()
        }))
    }

    /// Applies `changes` to the user `id` of `account_id`; `None` when there is no such user.
    pub async fn update(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
        changes: &UserChangeset<'_>,
    ) -> AppResult<Option<domain::User>> {
        diesel::update(users::table)
            .filter(users::account_id.eq(account_id))
            .filter(users::id.eq(id))
            .set(changes)
            .returning(UserRow::as_returning())
            .get_result(conn)
            .await
            .optional()?
            .map(UserRow::into_domain)
            .transpose()
    }
}

impl NewUser<'_> {
    /// Inserts the user. The database's error is kept, so a caller can tell a taken email.
    pub async fn insert(
        &self,
        conn: &mut AsyncPgConnection,
    ) -> QueryResult<AppResult<domain::User>> {
        KeepPrepared(
            diesel::insert_into(users::table)
                .values(self)
                .returning(UserRow::as_returning()),
        )
        .get_result(conn)
        .await
        .map(UserRow::into_domain)
    }

    /// CreateUser's write, one statement: inserts the user, or, when the account already has a
    /// user with this email who never had a password (a requester known from a ticket, an
    /// invitee who has not chosen one yet), gives them this user's display name, role and
    /// password (or still none: they are invited). `None` when that user has a password, or
    /// was deactivated (claimed, they stayed inactive with an invitation whose link refuses
    /// them; the conflicting row stays locked, so the caller may read why). One statement, so a
    /// ticket adding the same requester at the same moment is waited for and claimed, where a
    /// look and then an insert found no one and then hit the unique key.
    pub async fn insert_or_claim(
        &self,
        conn: &mut AsyncPgConnection,
    ) -> AppResult<Option<domain::User>> {
        KeepPrepared(self.bound(
            "INSERT INTO users (id, account_id, email, display_name, role, password_hash) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, email) \
                 DO UPDATE SET display_name = excluded.display_name, role = excluded.role, \
                     password_hash = excluded.password_hash, updated_at = now() \
                 WHERE users.password_hash IS NULL AND users.active \
                 RETURNING id, account_id, email, display_name, role, created_at, updated_at, \
                 password_hash, active",
        ))
        .get_result::<UserRow>(conn)
        .await
        .optional()?
        .map(UserRow::into_domain)
        .transpose()
    }

    /// Inserts the user, or gives the one the account already has with this email this user's
    /// role, password and active flag: an operator restoring a login.
    pub async fn upsert_login(&self, conn: &mut AsyncPgConnection) -> AppResult<domain::User> {
        KeepPrepared(
            diesel::insert_into(users::table)
                .values(self)
                .on_conflict((users::account_id, users::email))
                .do_update()
                .set((
                    users::role.eq(excluded(users::role)),
                    users::password_hash.eq(excluded(users::password_hash)),
                    users::active.eq(true),
                    users::updated_at.eq(diesel::dsl::now),
                ))
                .returning(UserRow::as_returning()),
        )
        .get_result(conn)
        .await?
        .into_domain()
    }

    /// Inserts the user, or returns the one the account already has with this email. One
    /// statement, so two concurrent tickets from a new address cannot create it twice (its no-op
    /// update makes RETURNING yield an existing row too). Written out as SQL: CreateTicket runs
    /// it on every call for a requester named by email, and diesel-async renders a DSL
    /// statement's text on every call (docs/performance.md, "The writes' SQL is written out").
    pub async fn find_or_insert_by_email(
        &self,
        conn: &mut AsyncPgConnection,
    ) -> AppResult<domain::User> {
        KeepPrepared(self.bound(
            "INSERT INTO users (id, account_id, email, display_name, role, password_hash) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, email) \
                 DO UPDATE SET email = excluded.email \
                 RETURNING id, account_id, email, display_name, role, created_at, updated_at, \
                 password_hash, active",
        ))
        .get_result::<UserRow>(conn)
        .await?
        .into_domain()
    }

    /// `sql`, a statement whose `$1` to `$6` are this user's id, account, email, display name,
    /// role and password hash, with them bound.
    fn bound(&self, sql: &'static str) -> BoxedSqlQuery<'_, Pg, SqlQuery> {
        diesel::sql_query(sql)
            .into_boxed()
            .bind::<sql_types::Uuid, _>(self.id)
            .bind::<sql_types::Uuid, _>(self.account_id)
            .bind::<sql_types::Text, _>(self.email)
            .bind::<sql_types::Text, _>(self.display_name)
            .bind::<sql_types::Text, _>(self.role)
            .bind::<sql_types::Nullable<sql_types::Text>, _>(self.password_hash)
    }
}

#[derive(QueryableByName)]
struct UserIdByEmail {
    #[diesel(sql_type = sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = sql_types::Text)]
    email: String,
}

#[derive(QueryableByName)]
struct UserIdOnly {
    #[diesel(sql_type = sql_types::Uuid)]
    id: Uuid,
}

impl UserRow {
    /// The users of the account with `emails` (distinct, sorted), customers added for those it
    /// does not have yet, every one of them locked (in id order): an import's requesters, found
    /// or added as CreateTicket finds or adds one, in two statements for a whole batch.
    pub async fn find_or_insert_customers(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        emails: &[&str],
    ) -> AppResult<Vec<(Uuid, String)>> {
        let ids: Vec<Uuid> = emails
            .iter()
            .map(|_| UserId::generate().as_uuid())
            .collect();
        KeepPrepared(
            diesel::sql_query(
                "INSERT INTO users (id, account_id, email, display_name, role) \
                 SELECT id, $1, email, '', $4 FROM unnest($2::uuid[], $3::text[]) AS t(id, email) \
                 ORDER BY email ON CONFLICT (account_id, email) DO NOTHING",
            )
            .bind::<sql_types::Uuid, _>(account_id.as_uuid())
            .bind::<sql_types::Array<sql_types::Uuid>, _>(&ids)
            .bind::<sql_types::Array<sql_types::Text>, _>(emails)
            .bind::<sql_types::Text, _>(Role::Customer.as_str()),
        )
        .execute(conn)
        .await?;
        Ok(KeepPrepared(
            diesel::sql_query(
                "SELECT id, email FROM users WHERE account_id = $1 AND email = ANY($2) \
                 ORDER BY id FOR NO KEY UPDATE",
            )
            .bind::<sql_types::Uuid, _>(account_id.as_uuid())
            .bind::<sql_types::Array<sql_types::Text>, _>(emails),
        )
        .load::<UserIdByEmail>(conn)
        .await?
        .into_iter()
        .map(|user| (user.id, user.email))
        .collect())
    }

    /// Which of `ids` are active agents or admins of the account (who may be assigned).
    pub async fn active_agents_among(
        conn: &mut AsyncPgConnection,
        account_id: AccountId,
        ids: &[Uuid],
    ) -> AppResult<Vec<Uuid>> {
        Ok(KeepPrepared(
            diesel::sql_query(
                "SELECT id FROM users WHERE account_id = $1 AND id = ANY($2) AND active \
                 AND role <> $3",
            )
            .bind::<sql_types::Uuid, _>(account_id.as_uuid())
            .bind::<sql_types::Array<sql_types::Uuid>, _>(ids)
            .bind::<sql_types::Text, _>(Role::Customer.as_str()),
        )
        .load::<UserIdOnly>(conn)
        .await?
        .into_iter()
        .map(|user| user.id)
        .collect())
    }
}
