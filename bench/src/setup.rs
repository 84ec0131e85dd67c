//! Creates what the scenarios need through the service's public API, as a client would: a fresh
//! account (CreateAccount is public), its admin logged in, customers created and logged in, and
//! tickets spread over them. Or, for the cache-miss scenario, collects the ids of an account
//! already filled by `supportdesk seed-demo --tickets N`.

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::account_service_client::AccountServiceClient;
use supportdesk::wire::proto::v1::auth_service_client::AuthServiceClient;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use supportdesk::wire::proto::v1::user_service_client::UserServiceClient;
use tonic::transport::Channel;

use crate::data::{BenchData, Principal, TicketRef};
use crate::load::{connect, with_token};

/// The password of every user the bench creates.
pub const BENCH_PASSWORD: &str = "bench-password-0123456789";

/// How many setup calls run at once: password hashing makes users slow to create, and the
/// machine has few cores.
const SETUP_CONCURRENCY: usize = 8;

pub struct SetupPlan {
    pub customers: usize,
    pub tickets: usize,
}

/// Signs up a fresh account and fills it as `plan` says.
pub async fn populate(addr: &str, plan: &SetupPlan) -> anyhow::Result<BenchData> {
    let channel = connect(addr).await?;
    let accounts = AccountServiceClient::new(channel.clone());
    let users = UserServiceClient::new(channel.clone());
    let tickets = TicketServiceClient::new(channel.clone());

    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let slug = format!("bench-{run_id}");
    let admin_email = format!("admin@{slug}.example.com");
    accounts
        .clone()
        .create_account(v1::CreateAccountRequest {
            name: "Bench Account".to_owned(),
            slug: slug.clone(),
            admin_email: admin_email.clone(),
            admin_password: BENCH_PASSWORD.to_owned(),
            admin_display_name: "Bench Admin".to_owned(),
        })
        .await
        .context("CreateAccount")?;
    let admin = log_in(&channel, &slug, &admin_email, BENCH_PASSWORD).await?;
    eprintln!("loadgen setup: account {slug} signed up, admin logged in");

    let customers: Vec<Principal> = futures::stream::iter(0..plan.customers)
        .map(|index| {
            let users = users.clone();
            let channel = channel.clone();
            let admin_token = admin.access_token.clone();
            let slug = slug.clone();
            let email = format!("customer-{index}@{slug}.example.com");
            async move {
                users
                    .clone()
                    .create_user(with_token(
                        &admin_token,
                        v1::CreateUserRequest {
                            user: Some(v1::User {
                                email: email.clone(),
                                display_name: format!("Customer {index}"),
                                role: v1::UserRole::Customer.into(),
                                ..Default::default()
                            }),
                            password: BENCH_PASSWORD.to_owned(),
                        },
                    ))
                    .await
                    .with_context(|| format!("CreateUser {email}"))?;
                log_in(&channel, &slug, &email, BENCH_PASSWORD).await
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    eprintln!(
        "loadgen setup: {} customers created and logged in",
        customers.len()
    );

    let customer_emails: Vec<Option<String>> = if customers.is_empty() {
        vec![None]
    } else {
        customers.iter().map(|c| Some(c.email.clone())).collect()
    };
    let ticket_refs: Vec<TicketRef> = futures::stream::iter(0..plan.tickets)
        .map(|index| {
            let tickets = tickets.clone();
            let admin_token = admin.access_token.clone();
            let requester = index % customer_emails.len();
            let requester_email = customer_emails[requester]
                .clone()
                .unwrap_or_else(|| "requester@bench.example.com".to_owned());
            let requester = customer_emails[requester].as_ref().map(|_| requester);
            async move {
                let ticket = tickets
                    .clone()
                    .create_ticket(with_token(
                        &admin_token,
                        v1::CreateTicketRequest {
                            ticket: Some(v1::Ticket {
                                subject: format!("Bench ticket {index}"),
                                description: "Created by loadgen setup.".to_owned(),
                                requester_email,
                                ..Default::default()
                            }),
                        },
                    ))
                    .await
                    .with_context(|| format!("CreateTicket #{index}"))?
                    .into_inner();
                anyhow::Ok(TicketRef {
                    id: ticket.id,
                    requester,
                })
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY * 2)
        .try_collect()
        .await?;
    eprintln!("loadgen setup: {} tickets created", ticket_refs.len());

    Ok(BenchData {
        account_slug: slug,
        admin,
        customers,
        tickets: ticket_refs,
        searches: Vec::new(),
        views: Vec::new(),
    })
}

/// Logs in to an existing account (the demo one) and collects up to `max_tickets` of its ticket
/// ids with ListTickets, 100 a page. Every ticket is then read as that user.
pub async fn collect(
    addr: &str,
    account: &str,
    email: &str,
    password: &str,
    max_tickets: usize,
) -> anyhow::Result<BenchData> {
    let channel = connect(addr).await?;
    let user = log_in(&channel, account, email, password).await?;
    let mut tickets = TicketServiceClient::new(channel);
    let mut collected = Vec::new();
    let mut page_token = String::new();
    while collected.len() < max_tickets {
        let page = tickets
            .list_tickets(with_token(
                &user.access_token,
                v1::ListTicketsRequest {
                    page_size: 100,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .context("ListTickets")?
            .into_inner();
        collected.extend(page.tickets.into_iter().map(|ticket| TicketRef {
            id: ticket.id,
            requester: None,
        }));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    collected.truncate(max_tickets);
    eprintln!(
        "loadgen collect: {} tickets of account {account}",
        collected.len()
    );
    Ok(BenchData {
        account_slug: account.to_owned(),
        admin: user,
        customers: Vec::new(),
        tickets: collected,
        searches: Vec::new(),
        views: Vec::new(),
    })
}

pub(crate) async fn log_in(
    channel: &Channel,
    account: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<Principal> {
    let response = AuthServiceClient::new(channel.clone())
        .login(v1::LoginRequest {
            account: account.to_owned(),
            email: email.to_owned(),
            password: password.to_owned(),
        })
        .await
        .with_context(|| format!("Login {email}"))?
        .into_inner();
    let user = response.user.context("Login returned no user")?;
    let tokens = response.tokens.context("Login returned no tokens")?;
    Ok(Principal {
        user_id: user.id,
        email: email.to_owned(),
        access_token: tokens.access_token,
    })
}
