//! The `users` table: the people of an account.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::users;

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub id: Uuid,
    pub account_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub email: &'a str,
    pub display_name: &'a str,
    pub role: &'a str,
}

impl User {
    /// The user `id` if it belongs to `account_id`.
    pub async fn find_in_account(
        conn: &mut AsyncPgConnection,
        account_id: Uuid,
        id: Uuid,
    ) -> QueryResult<Option<Self>> {
        users::table
            .filter(users::account_id.eq(account_id))
            .filter(users::id.eq(id))
            .select(Self::as_select())
            .first(conn)
            .await
            .optional()
    }
}

impl NewUser<'_> {
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<User> {
        diesel::insert_into(users::table)
            .values(self)
            .returning(User::as_returning())
            .get_result(conn)
            .await
    }

    /// Inserts the user, or returns the one the account already has with this email. One
    /// statement, so two concurrent tickets from a new address cannot create it twice.
    pub async fn find_or_insert_by_email(&self, conn: &mut AsyncPgConnection) -> QueryResult<User> {
        diesel::insert_into(users::table)
            .values(self)
            .on_conflict((users::account_id, users::email))
            // A no-op update, so that RETURNING yields the existing row too.
            .do_update()
            .set(users::email.eq(excluded(users::email)))
            .returning(User::as_returning())
            .get_result(conn)
            .await
    }
}
