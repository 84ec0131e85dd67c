//! Demo data for the README run command: one account with an admin, created once and found
//! again on every later run.

use diesel_async::AsyncConnection;

use crate::db::PgPool;
use crate::db::models::{Account, NewAccount, NewUser};
use crate::domain::{AccountId, UserId};
use crate::errors::AppError;

pub const DEMO_ACCOUNT_SLUG: &str = "demo";
pub const DEMO_ADMIN_EMAIL: &str = "admin@demo.example";

/// The demo account, created if missing. Returns its id.
pub async fn seed_demo_account(pool: &PgPool) -> anyhow::Result<AccountId> {
    let mut conn = pool.get().await?;
    let account = conn
        .transaction::<_, AppError, _>(async |conn| {
            if let Some(account) = Account::find_by_slug(conn, DEMO_ACCOUNT_SLUG).await? {
                return Ok(account);
            }
            let account = NewAccount {
                id: AccountId::generate().as_uuid(),
                name: "Demo Company",
                slug: DEMO_ACCOUNT_SLUG,
            }
            .insert(conn)
            .await?;
            NewUser {
                id: UserId::generate().as_uuid(),
                account_id: account.id,
                email: DEMO_ADMIN_EMAIL,
                display_name: "Demo Admin",
                role: "admin",
            }
            .insert(conn)
            .await?;
            Ok(account)
        })
        .await
        .map_err(|error| anyhow::anyhow!("cannot seed the demo account: {error}"))?;
    Ok(AccountId::from_uuid(account.id))
}
