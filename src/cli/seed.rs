//! Accounts made from the command line: `create-account` for operators, and `seed-demo` for the
//! README run command (a demo account with a well-known admin login and a customer to charge,
//! created once and found again on every later run).

use std::time::Duration;

use crate::auth::PasswordHasher;
use crate::db::PgPool;
use crate::db::models::{AccountRow, NewUser};
use crate::domain::{self, AccountName, AccountSlug, DisplayName, Email, Password, Role, UserId};
use crate::errors::AppError;
use crate::idempotency::KeyedWrite;
use crate::scope::{RequestDeadline, RequestScope};
use crate::service::Accounts;
use crate::service::accounts::NewAccountRequest;

pub const DEMO_ACCOUNT_SLUG: &str = "demo";
pub const DEMO_ADMIN_EMAIL: &str = "admin@demo.example";
/// Public on purpose: the demo account exists to be tried out locally.
pub const DEMO_ADMIN_PASSWORD: &str = "supportdesk-demo";

/// The demo account's customer, for the run command's billing examples (no login of their own).
pub const DEMO_CUSTOMER_EMAIL: &str = "customer@demo.example";

/// How long a command-line statement may run.
const COMMAND_BUDGET: Duration = Duration::from_secs(30);

/// What `create-account` is given, as text.
pub struct AccountInput<'a> {
    pub name: &'a str,
    pub slug: &'a str,
    pub admin_email: &'a str,
    pub admin_password: &'a str,
    pub admin_display_name: &'a str,
}

/// Creates an account and its first admin; every invalid value is named.
pub async fn create_account(
    pool: &PgPool,
    input: AccountInput<'_>,
) -> anyhow::Result<(domain::Account, domain::User)> {
    let mut problems = Vec::new();
    let mut check = |flag: &str, problem: domain::InvalidValue| {
        problems.push(format!("{flag} {problem}"));
    };
    let name = AccountName::parse(input.name)
        .map_err(|p| check("--name", p))
        .ok();
    let slug = AccountSlug::parse(input.slug)
        .map_err(|p| check("--slug", p))
        .ok();
    let email = Email::parse(input.admin_email)
        .map_err(|p| check("--admin-email", p))
        .ok();
    let password = Password::parse(input.admin_password)
        .map_err(|p| check("the admin password", p))
        .ok();
    let display_name = DisplayName::parse(input.admin_display_name)
        .map_err(|p| check("--admin-name", p))
        .ok();
    let (Some(name), Some(slug), Some(admin_email), Some(admin_password), Some(admin_display_name)) =
        (name, slug, email, password, display_name)
    else {
        anyhow::bail!("{}", problems.join("; "));
    };
    let scope = RequestScope::without_caller(RequestDeadline::after(COMMAND_BUDGET));
    Accounts::new(pool.clone(), PasswordHasher::default())
        .create(
            &KeyedWrite::unkeyed(&scope),
            NewAccountRequest {
                name,
                slug,
                admin_email,
                admin_password,
                admin_display_name,
            },
        )
        .await
        .and_then(crate::idempotency::Outcome::done)
        .map(|created| created.expect("without a key there is nothing to replay"))
        .map_err(|error| {
            if let AppError::Internal(source) = error {
                source
            } else {
                anyhow::anyhow!("{error}")
            }
        })
}

/// What `seed-demo` made or found.
pub struct DemoAccount {
    pub account_id: domain::AccountId,
    /// The demo customer (`DEMO_CUSTOMER_EMAIL`), whom the README's charge examples charge.
    pub customer_id: UserId,
}

/// The demo account with its admin and its customer, each created if missing; the admin can log
/// in with the demo password and the customer is an active customer (both restored if someone
/// changed them).
pub async fn seed_demo(pool: &PgPool) -> anyhow::Result<DemoAccount> {
    let account_id = seed_demo_account(pool).await?;
    let mut conn = pool.get().await?;
    let customer = NewUser {
        id: UserId::generate().as_uuid(),
        account_id: account_id.as_uuid(),
        email: DEMO_CUSTOMER_EMAIL,
        display_name: "Demo Customer",
        role: Role::Customer.as_str(),
        password_hash: None,
    }
    .upsert_login(&mut conn)
    .await?;
    Ok(DemoAccount {
        account_id,
        customer_id: customer.id,
    })
}

/// The demo account, created if missing, with its admin able to log in with the demo password
/// (restored if someone changed it). Returns the account's id.
pub async fn seed_demo_account(pool: &PgPool) -> anyhow::Result<domain::AccountId> {
    let mut conn = pool.get().await?;
    let Some(account) = AccountRow::find_by_slug(&mut conn, DEMO_ACCOUNT_SLUG).await? else {
        drop(conn);
        let (account, _) = create_account(
            pool,
            AccountInput {
                name: "Demo Company",
                slug: DEMO_ACCOUNT_SLUG,
                admin_email: DEMO_ADMIN_EMAIL,
                admin_password: DEMO_ADMIN_PASSWORD,
                admin_display_name: "Demo Admin",
            },
        )
        .await?;
        return Ok(account.id);
    };
    let account_id = account.id;
    let password =
        Password::parse(DEMO_ADMIN_PASSWORD).map_err(|problem| anyhow::anyhow!("{problem}"))?;
    let hash = PasswordHasher::default()
        .hash(&password)
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    NewUser {
        id: UserId::generate().as_uuid(),
        account_id: account_id.as_uuid(),
        email: DEMO_ADMIN_EMAIL,
        display_name: "Demo Admin",
        role: Role::Admin.as_str(),
        password_hash: Some(&hash),
    }
    .upsert_login(&mut conn)
    .await?;
    Ok(account_id)
}

/// Fills the demo account up to `count` tickets of varied status, priority, requester and age
/// (for trying out listing and filtering), in one statement. Generated tickets have no audit
/// records: they were never created through the API. The tables are analyzed afterwards, so the
/// first list query is planned for the rows that are there.
pub async fn seed_demo_tickets(
    pool: &PgPool,
    account_id: domain::AccountId,
    count: u32,
) -> anyhow::Result<u64> {
    use diesel::sql_types::{BigInt, Uuid as SqlUuid};
    use diesel_async::RunQueryDsl;

    let mut conn = pool.get().await?;
    // Requesters and agents to spread the tickets over, created once.
    diesel::sql_query(
        "INSERT INTO users (id, account_id, email, display_name, role) \
         SELECT gen_random_uuid(), $1, 'demo-' || n || '@demo.example', 'Demo person ' || n, \
                CASE WHEN n <= 5 THEN 'agent' ELSE 'customer' END \
         FROM generate_series(1, 200) AS n \
         ON CONFLICT (account_id, email) DO NOTHING",
    )
    .bind::<SqlUuid, _>(account_id.as_uuid())
    .execute(&mut conn)
    .await?;
    let inserted = diesel::sql_query(
        "WITH existing AS (SELECT count(*) AS already FROM tickets WHERE account_id = $1), \
              people AS (SELECT array_agg(id ORDER BY email) FILTER (WHERE role = 'customer') AS customers, \
                                array_agg(id ORDER BY email) FILTER (WHERE role = 'agent') AS agents \
                         FROM users WHERE account_id = $1 AND email LIKE 'demo-%') \
         INSERT INTO tickets (id, account_id, subject, description, priority, status, \
                              requester_id, assignee_id, created_at, updated_at) \
         SELECT gen_random_uuid(), $1, 'Demo ticket ' || n, 'Generated by seed-demo --tickets.', \
                (ARRAY['low','normal','high','urgent'])[1 + n % 4], \
                (ARRAY['new','open','pending','solved','closed'])[1 + n % 5], \
                people.customers[1 + n % array_length(people.customers, 1)], \
                CASE WHEN n % 5 = 0 THEN NULL \
                     ELSE people.agents[1 + n % array_length(people.agents, 1)] END, \
                now() - n * interval '1 minute', now() - (n % 997) * interval '1 minute' \
         FROM existing, people, generate_series(existing.already + 1, $2) AS n",
    )
    .bind::<SqlUuid, _>(account_id.as_uuid())
    .bind::<BigInt, _>(i64::from(count))
    .execute(&mut conn)
    .await?;
    // Without fresh statistics the planner takes the new rows for an empty table and hash-joins
    // and sorts all of them for every page until autovacuum gets round to it.
    if inserted > 0 {
        diesel::sql_query("ANALYZE tickets, users")
            .execute(&mut conn)
            .await?;
    }
    Ok(u64::try_from(inserted).unwrap_or(0))
}
