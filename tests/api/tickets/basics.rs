//! TicketService through a generated tonic client.

use std::collections::HashSet;

use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::{TestApp, assert_reason, valid_create_request, violated_fields};

#[tokio::test]
async fn a_created_ticket_can_be_fetched_by_its_id() {
    let app = TestApp::spawn().await;
    let created = app.create_ticket("Printer on fire").await;

    let fetched = app
        .tickets
        .clone()
        .get_ticket(app.as_admin(v1::GetTicketRequest {
            id: created.id.clone(),
            ..Default::default()
        }))
        .await
        .expect("the ticket is found")
        .into_inner();

    assert_eq!(fetched, created);
    assert_eq!(fetched.subject, "Printer on fire");
    assert_eq!(fetched.status(), v1::TicketStatus::New);
    assert_eq!(fetched.priority(), v1::TicketPriority::Normal);
    assert_eq!(fetched.account_id, app.account_id.to_string());
    assert_eq!(fetched.requester_email, "jane@example.com");
    assert!(fetched.create_time.is_some() && fetched.update_time.is_some());
}

#[tokio::test]
async fn text_is_trimmed_the_email_lower_cased_and_output_only_fields_ignored() {
    let app = TestApp::spawn().await;
    let created = app
        .tickets
        .clone()
        .create_ticket(app.as_admin(v1::CreateTicketRequest {
            ticket: Some(v1::Ticket {
                id: "chosen-by-client".to_owned(),
                status: v1::TicketStatus::Closed.into(),
                subject: "  VPN down  ".to_owned(),
                description: "\nSince 9am\n".to_owned(),
                requester_email: "Jane.Doe@Example.COM".to_owned(),
                priority: v1::TicketPriority::Urgent.into(),
                ..Default::default()
            }),
        }))
        .await
        .expect("created")
        .into_inner();

    assert_ne!(created.id, "chosen-by-client");
    assert_eq!(created.status(), v1::TicketStatus::New);
    assert_eq!(created.subject, "VPN down");
    assert_eq!(created.description, "Since 9am");
    assert_eq!(created.requester_email, "jane.doe@example.com");
    assert_eq!(created.priority(), v1::TicketPriority::Urgent);
}

#[tokio::test]
async fn the_same_requester_email_is_the_same_requester() {
    let app = TestApp::spawn().await;
    let first = app.create_ticket("first").await;
    let second = app
        .ticket("second")
        .requester("JANE@example.com")
        .create()
        .await;
    assert_eq!(first.requester_id, second.requester_id);
}

#[tokio::test]
async fn every_invalid_field_is_named_in_one_answer_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let status = app
        .tickets
        .clone()
        .create_ticket(app.as_admin(v1::CreateTicketRequest {
            ticket: Some(v1::Ticket {
                subject: " ".to_owned(),
                description: "x".repeat(5001),
                requester_email: "not-an-email".to_owned(),
                priority: 42,
                assignee_id: "nobody".to_owned(),
                ..Default::default()
            }),
        }))
        .await
        .expect_err("refused");

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_reason(&status, Reason::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "ticket.subject",
            "ticket.description",
            "ticket.priority",
            "ticket.requester_email",
            "ticket.assignee_id"
        ]
    );
    let listed = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest::default()))
        .await
        .expect("listed")
        .into_inner();
    assert!(listed.tickets.is_empty());
}

#[tokio::test]
async fn a_create_without_a_ticket_names_the_ticket_field() {
    let app = TestApp::spawn().await;
    let status = app
        .tickets
        .clone()
        .create_ticket(app.as_admin(v1::CreateTicketRequest { ticket: None }))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["ticket"]);
}

#[tokio::test]
async fn a_ticket_can_be_assigned_to_an_agent_of_the_account_only() {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await.id;
    let assigned = app.ticket("assigned").assignee(agent).create().await;
    assert_eq!(assigned.assignee_id, agent.to_string());

    let other_admin = app.sign_up_another_account().await;
    let stranger = app.add_user(&other_admin, v1::UserRole::Agent).await.id;
    let customer = app.create_ticket("by a customer").await.requester_id;
    for assignee in [stranger.to_string(), customer] {
        let status = app
            .ticket("misassigned")
            .assignee(assignee)
            .try_create()
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["ticket.assignee_id"]);
    }
}

#[tokio::test]
async fn a_missing_ticket_is_not_found_with_its_reason() {
    let app = TestApp::spawn().await;
    let status = app
        .tickets
        .clone()
        .get_ticket(app.as_admin(v1::GetTicketRequest {
            id: "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c".to_owned(),
            ..Default::default()
        }))
        .await
        .expect_err("not found");
    assert_eq!(status.code(), Code::NotFound);
    assert_reason(&status, Reason::TicketNotFound);
}

#[tokio::test]
async fn a_malformed_ticket_id_is_an_invalid_argument_naming_the_id() {
    let app = TestApp::spawn().await;
    let status = app
        .tickets
        .clone()
        .get_ticket(app.as_admin(v1::GetTicketRequest {
            id: "42".to_owned(),
            ..Default::default()
        }))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["id"]);
}

#[tokio::test]
async fn another_accounts_ticket_is_indistinguishable_from_a_missing_one() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("private").await;
    let other_admin = app.sign_up_another_account().await;

    let status = app
        .tickets
        .clone()
        .get_ticket(other_admin.request(v1::GetTicketRequest {
            id: ticket.id,
            ..Default::default()
        }))
        .await
        .expect_err("hidden");
    assert_eq!(status.code(), Code::NotFound);

    let listed = app
        .tickets
        .clone()
        .list_tickets(other_admin.request(v1::ListTicketsRequest::default()))
        .await
        .expect("listed")
        .into_inner();
    assert!(listed.tickets.is_empty());
}

async fn list_page(app: &TestApp, page_size: i32, page_token: &str) -> v1::ListTicketsResponse {
    app.tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            page_size,
            page_token: page_token.to_owned(),
            ..Default::default()
        }))
        .await
        .expect("listed")
        .into_inner()
}

#[tokio::test]
async fn tickets_are_listed_newest_first_in_pages() {
    let app = TestApp::spawn().await;
    let mut created = Vec::new();
    for number in 0..5 {
        created.push(app.create_ticket(&format!("ticket {number}")).await.id);
    }
    created.reverse();

    let first = list_page(&app, 2, "").await;
    let second = list_page(&app, 2, &first.next_page_token).await;
    let third = list_page(&app, 2, &second.next_page_token).await;

    let ids: Vec<String> = [&first, &second, &third]
        .iter()
        .flat_map(|page| page.tickets.iter().map(|ticket| ticket.id.clone()))
        .collect();
    assert_eq!(ids, created);
    assert!(!first.next_page_token.is_empty());
    assert!(third.next_page_token.is_empty(), "the last page says so");
}

#[tokio::test]
async fn page_size_defaults_to_20_and_is_capped_at_100() {
    let app = TestApp::spawn().await;
    for number in 0..21 {
        app.create_ticket(&format!("ticket {number}")).await;
    }
    assert_eq!(list_page(&app, 0, "").await.tickets.len(), 20);
    assert_eq!(list_page(&app, 1000, "").await.tickets.len(), 21);

    let status = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            page_size: -1,
            page_token: "garbage".to_owned(),
            ..Default::default()
        }))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page_size", "page_token"]);
}

#[tokio::test]
async fn paging_is_stable_while_tickets_are_being_created() {
    let app = TestApp::spawn().await;
    for number in 0..30 {
        app.create_ticket(&format!("old {number}")).await;
    }
    let writer = {
        let tickets = app.tickets.clone();
        let admin = app.admin.clone();
        tokio::spawn(async move {
            for number in 0..30 {
                tickets
                    .clone()
                    .create_ticket(admin.request(valid_create_request(&format!("new {number}"))))
                    .await
                    .expect("created while paging");
            }
        })
    };

    let mut seen = Vec::new();
    let mut token = String::new();
    let first = list_page(&app, 7, "").await;
    let newest_at_start = micros(&first.tickets[0]);
    seen.extend(first.tickets.iter().map(|ticket| ticket.id.clone()));
    token.clone_from(&first.next_page_token);
    while !token.is_empty() {
        let page = list_page(&app, 7, &token).await;
        seen.extend(page.tickets.iter().map(|ticket| ticket.id.clone()));
        token = page.next_page_token;
    }
    writer.await.expect("writer finished");

    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no ticket is listed twice");
    let all = list_page(&app, 100, "").await.tickets;
    let expected: Vec<String> = all
        .iter()
        .filter(|ticket| micros(ticket) <= newest_at_start)
        .map(|ticket| ticket.id.clone())
        .collect();
    let seen_old: Vec<String> = seen
        .iter()
        .filter(|id| expected.contains(id))
        .cloned()
        .collect();
    assert_eq!(
        seen_old, expected,
        "every ticket older than the first page is seen, in order"
    );
}

fn micros(ticket: &v1::Ticket) -> i64 {
    let time = ticket.create_time.expect("create_time");
    time.seconds * 1_000_000 + i64::from(time.nanos / 1_000)
}

#[tokio::test]
async fn customers_raise_tickets_for_themselves_and_see_only_their_own() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let someone_elses = app.create_ticket("not the customer's").await;

    let own = app
        .ticket("my printer")
        .requester("")
        .by(&customer)
        .create()
        .await;
    assert_eq!(own.requester_id, customer.id.to_string());
    assert_eq!(own.requester_email, customer.email);

    let listed = app
        .tickets
        .clone()
        .list_tickets(customer.request(v1::ListTicketsRequest::default()))
        .await
        .expect("listed")
        .into_inner();
    let ids: Vec<&str> = listed
        .tickets
        .iter()
        .map(|ticket| ticket.id.as_str())
        .collect();
    assert_eq!(ids, [own.id.as_str()]);

    let status = app
        .tickets
        .clone()
        .get_ticket(customer.request(v1::GetTicketRequest {
            id: someone_elses.id,
            ..Default::default()
        }))
        .await
        .expect_err("hidden");
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn customers_cannot_raise_tickets_for_others_or_assign_them() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let status = app
        .ticket("for jane")
        .by(&customer)
        .try_create()
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["ticket.requester_email"]);

    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let status = app
        .ticket("assign it")
        .requester("")
        .assignee(agent.id)
        .by(&customer)
        .try_create()
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn customers_may_choose_any_priority_but_urgent_which_agents_may_set() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let customers_ticket = |priority: v1::TicketPriority| {
        app.ticket("how much it matters")
            .requester("")
            .priority(priority)
            .by(&customer)
    };
    for allowed in [
        v1::TicketPriority::Low,
        v1::TicketPriority::Normal,
        v1::TicketPriority::High,
    ] {
        let ticket = customers_ticket(allowed)
            .try_create()
            .await
            .expect("a customer says how much it matters to them");
        assert_eq!(ticket.priority(), allowed);
    }
    let status = customers_ticket(v1::TicketPriority::Urgent)
        .try_create()
        .await
        .expect_err("urgency is the desk's call");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["ticket.priority"]);

    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let ticket = app
        .ticket("the line is down")
        .priority(v1::TicketPriority::Urgent)
        .by(&agent)
        .try_create()
        .await
        .expect("an agent may raise an urgent ticket");
    assert_eq!(ticket.priority(), v1::TicketPriority::Urgent);
}

#[tokio::test]
async fn agents_and_admins_must_name_the_requester() {
    let app = TestApp::spawn().await;
    let status = app
        .ticket("for whom?")
        .requester("")
        .try_create()
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["ticket.requester_email"]);
}
