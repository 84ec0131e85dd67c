//! The filter language (`filter` on ListTickets, SearchTickets, ExportTickets and
//! ListTicketChanges; docs/tickets.md, "The filter language"): every field and comparator
//! matches exactly the tickets it should, refusals name the position, the typed filters still
//! combine, page tokens are bound to their filter, and REST takes `?filter=` through Envoy.

use std::collections::BTreeSet;

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::envoy::Envoy;
use crate::support::{PATIENCE, TestApp, details, violated_fields};

/// Four tickets about a printer, each set up to differ from the others on every field.
struct Fixture {
    app: TestApp,
    agent: String,
    group: String,
    bob: String,
}

/// The tickets, by subject:
/// - `urgent`: open, urgent, assigned to the agent, in the group, tagged vip, created now;
/// - `spam`: new, low, unassigned, tagged spam, created 3 days ago;
/// - `refund`: pending, normal, assigned to the admin (the caller), raised by bob, tagged vip
///   and refund, created 2 hours ago;
/// - `solved`: solved, high, unassigned, in the group, untagged, created 30 days ago.
async fn fixture() -> Fixture {
    let app = TestApp::spawn().await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let urgent = app
        .ticket("urgent printer")
        .priority(v1::TicketPriority::Urgent)
        .assignee(agent.id)
        .create()
        .await;
    let spam = app
        .ticket("spam printer")
        .priority(v1::TicketPriority::Low)
        .create()
        .await;
    let refund = app
        .ticket("refund printer")
        .requester("bob@example.com")
        .assignee(app.admin.id)
        .create()
        .await;
    let solved = app
        .ticket("solved printer")
        .priority(v1::TicketPriority::High)
        .create()
        .await;
    let group = uuid::Uuid::now_v7();
    let mut conn = app.database.connect().await;
    diesel::sql_query("INSERT INTO groups (id, account_id, name) VALUES ($1, $2, 'Billing')")
        .bind::<SqlUuid, _>(group)
        .bind::<SqlUuid, _>(app.account_id.as_uuid())
        .execute(&mut conn)
        .await
        .unwrap();
    for (ticket, status, tags, in_group, age) in [
        (&urgent, "open", "{vip}", true, "0 minutes"),
        (&spam, "new", "{spam}", false, "3 days"),
        (&refund, "pending", "{vip,refund}", false, "2 hours"),
        (&solved, "solved", "{}", true, "30 days"),
    ] {
        diesel::sql_query(
            "UPDATE tickets SET status = $2, tags = $3::text[], \
             group_id = CASE WHEN $4 THEN $5 END, \
             created_at = now() - $6::interval, updated_at = now() - $6::interval WHERE id = $1",
        )
        .bind::<SqlUuid, _>(uuid::Uuid::parse_str(&ticket.id).unwrap())
        .bind::<Text, _>(status)
        .bind::<Text, _>(tags)
        .bind::<diesel::sql_types::Bool, _>(in_group)
        .bind::<SqlUuid, _>(group)
        .bind::<Text, _>(age)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    Fixture {
        agent: agent.id.to_string(),
        group: group.to_string(),
        bob: refund.requester_id.clone(),
        app,
    }
}

/// The first word of each subject ListTickets returns for `request`, as the admin.
async fn listed(app: &TestApp, request: v1::ListTicketsRequest) -> BTreeSet<String> {
    let filter = request.filter.clone();
    app.tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            page_size: 100,
            ..request
        }))
        .await
        .unwrap_or_else(|status| panic!("{filter:?} refused: {status:?}"))
        .into_inner()
        .tickets
        .iter()
        .map(|ticket| first_word(&ticket.subject))
        .collect()
}

/// The first word of each ticket's subject, by ticket id.
async fn subjects_by_id(app: &TestApp) -> std::collections::HashMap<String, String> {
    app.tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            page_size: 100,
            ..Default::default()
        }))
        .await
        .expect("listed")
        .into_inner()
        .tickets
        .iter()
        .map(|ticket| (ticket.id.clone(), first_word(&ticket.subject)))
        .collect()
}

/// The description of the first field violation of a refusal.
fn description_of(refused: &tonic::Status) -> String {
    details(refused)
        .bad_request()
        .expect("a BadRequest")
        .field_violations[0]
        .description
        .clone()
}

fn first_word(subject: &str) -> String {
    subject.split(' ').next().unwrap().to_owned()
}

fn set(words: &[&str]) -> BTreeSet<String> {
    words.iter().map(|word| (*word).to_owned()).collect()
}

fn filtered(filter: &str) -> v1::ListTicketsRequest {
    v1::ListTicketsRequest {
        filter: filter.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn every_field_and_comparator_matches_exactly_the_tickets_it_should() {
    let Fixture {
        app,
        agent,
        group,
        bob,
    } = fixture().await;
    let five_days_ago = (chrono::Utc::now() - chrono::Duration::days(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let cases: Vec<(String, &[&str])> = vec![
        ("".into(), &["refund", "solved", "spam", "urgent"]),
        ("status = open".into(), &["urgent"]),
        ("status = (open OR pending)".into(), &["refund", "urgent"]),
        ("status: OPEN".into(), &["urgent"]),
        ("status != new".into(), &["refund", "solved", "urgent"]),
        (
            "priority = urgent OR priority = high".into(),
            &["solved", "urgent"],
        ),
        ("-priority: low".into(), &["refund", "solved", "urgent"]),
        ("assignee = none".into(), &["solved", "spam"]),
        ("assignee = me".into(), &["refund"]),
        (format!("assignee = {agent}"), &["urgent"]),
        (
            format!("assignee_id != {agent}"),
            &["refund", "solved", "spam"],
        ),
        (
            "assignee = (none OR me)".into(),
            &["refund", "solved", "spam"],
        ),
        ("assignee != none".into(), &["refund", "urgent"]),
        (format!("requester = {bob}"), &["refund"]),
        (format!("requester != {bob}"), &["solved", "spam", "urgent"]),
        (format!("group = {group}"), &["solved", "urgent"]),
        ("group = none".into(), &["refund", "spam"]),
        (format!("group != {group}"), &["refund", "spam"]),
        ("tags: vip".into(), &["refund", "urgent"]),
        ("tags: VIP".into(), &["refund", "urgent"]),
        ("tags: (vip AND refund)".into(), &["refund"]),
        ("tags: (spam OR refund)".into(), &["refund", "spam"]),
        ("tags: spam OR tags: refund".into(), &["refund", "spam"]),
        ("-tags: vip".into(), &["solved", "spam"]),
        ("NOT tags: spam".into(), &["refund", "solved", "urgent"]),
        ("create_time < now(-24h)".into(), &["solved", "spam"]),
        ("create_time >= now(-1d)".into(), &["refund", "urgent"]),
        ("NOT create_time < now(-24h)".into(), &["refund", "urgent"]),
        (
            format!("create_time > \"{five_days_ago}\""),
            &["refund", "spam", "urgent"],
        ),
        ("update_time > now(-1h)".into(), &["urgent"]),
        (
            "update_time <= now(-1h)".into(),
            &["refund", "solved", "spam"],
        ),
        (
            "assignee = none AND create_time < now(-24h)".into(),
            &["solved", "spam"],
        ),
        ("status = open AND tags: vip".into(), &["urgent"]),
        ("tags: vip -status: open".into(), &["refund"]),
    ];
    let subjects = subjects_by_id(&app).await;
    for (filter, expected) in cases {
        assert_eq!(
            listed(&app, filtered(&filter)).await,
            set(expected),
            "filter {filter:?}"
        );
        let in_memory: BTreeSet<String> = app
            .matched_in_memory(&filter)
            .await
            .iter()
            .map(|id| subjects[id].clone())
            .collect();
        assert_eq!(
            in_memory,
            set(expected),
            "filter {filter:?} read in memory (an SLA policy's condition)"
        );
    }

    // The typed filters still work, and combine with `filter` by AND.
    let typed = v1::ListTicketsRequest {
        statuses: vec![
            v1::TicketStatus::Open.into(),
            v1::TicketStatus::Pending.into(),
        ],
        filter: "tags: refund".to_owned(),
        ..Default::default()
    };
    assert_eq!(listed(&app, typed).await, set(&["refund"]));
    let typed = v1::ListTicketsRequest {
        priorities: vec![v1::TicketPriority::Low.into()],
        filter: "create_time < now(-24h)".to_owned(),
        ..Default::default()
    };
    assert_eq!(listed(&app, typed).await, set(&["spam"]));
}

#[tokio::test]
async fn a_refused_filter_names_the_field_filter_and_the_position_of_the_problem() {
    let app = TestApp::spawn().await;
    for (filter, expected) in [
        (
            "status = open OR tags: vip",
            "at 18: OR across fields (status and tags)",
        ),
        (
            "status = open AND subject = x",
            "at 19: unknown field \"subject\"",
        ),
        ("priority > low", "at 1: priority compares with =, != or :"),
        ("status = opne", "at 10: is not a ticket status"),
        (
            "assignee = bob",
            "at 12: expected a user id (a UUID), me or none",
        ),
        (
            "create_time < yesterday",
            "at 15: expected an RFC 3339 time",
        ),
        ("create_time < later()", "at 15: unknown function later()"),
        (
            "create_time = now()",
            "at 1: create_time compares with <, <=, > or >=",
        ),
        ("tags = vip", "at 1: tags is a list"),
        ("tags:*", "at 6: tags:* is not served by an index"),
        (
            "custom_fields.plan = pro",
            "at 1: the account has no custom field with the key \"plan\"",
        ),
        (
            "NOT (status = open OR status = new)",
            "at 1: NOT applies to one restriction",
        ),
        (
            "(status = open AND priority = low) OR tags: vip",
            "at 2: AND inside OR",
        ),
        ("status = (open", "at 10: this \"(\" is never closed"),
    ] {
        let refused = app
            .tickets
            .clone()
            .list_tickets(app.as_admin(filtered(filter)))
            .await
            .expect_err(filter);
        assert_eq!(refused.code(), Code::InvalidArgument, "{filter}");
        assert_eq!(violated_fields(&refused), ["filter"], "{filter}");
        let description = description_of(&refused);
        assert!(description.starts_with(expected), "{filter}: {description}");
    }
}

#[tokio::test]
async fn a_page_token_works_only_with_the_filter_it_was_issued_for() {
    let Fixture { app, .. } = fixture().await;
    let first = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            page_size: 1,
            filter: "tags: vip".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first_word(&first.tickets[0].subject), "urgent");
    let next = async |filter: &str| {
        app.tickets
            .clone()
            .list_tickets(app.as_admin(v1::ListTicketsRequest {
                page_size: 1,
                page_token: first.next_page_token.clone(),
                filter: filter.to_owned(),
                ..Default::default()
            }))
            .await
    };
    let refused = next("tags: spam").await.expect_err("another filter");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["page_token"]);
    // The same filter written otherwise is the same filter.
    let second = next("tags:vip")
        .await
        .expect("the same filter")
        .into_inner();
    assert_eq!(
        second
            .tickets
            .iter()
            .map(|t| first_word(&t.subject))
            .collect::<Vec<_>>(),
        ["refund"]
    );
}

#[tokio::test]
async fn search_and_export_take_the_filter_and_the_change_feed_only_on_fields_that_never_change() {
    let Fixture { app, bob, .. } = fixture().await;
    let found = app
        .tickets
        .clone()
        .search_tickets(app.as_admin(v1::SearchTicketsRequest {
            q: "printer".to_owned(),
            filter: "tags: vip AND status = pending".to_owned(),
            ..Default::default()
        }))
        .await
        .expect("searched")
        .into_inner();
    assert_eq!(
        found
            .results
            .iter()
            .map(|hit| first_word(&hit.ticket.as_ref().unwrap().subject))
            .collect::<Vec<_>>(),
        ["refund"]
    );

    let mut stream = app
        .tickets
        .clone()
        .export_tickets(app.as_admin(v1::ExportTicketsRequest {
            filter: "assignee = none".to_owned(),
            ..Default::default()
        }))
        .await
        .expect("the export starts")
        .into_inner();
    let mut exported = BTreeSet::new();
    while let Some(ticket) = stream.message().await.expect("the export streams") {
        exported.insert(first_word(&ticket.subject));
    }
    assert_eq!(exported, set(&["solved", "spam"]));
    let refused = app
        .tickets
        .clone()
        .export_tickets(app.as_admin(v1::ExportTicketsRequest {
            filter: "assignee = nobody".to_owned(),
            ..Default::default()
        }))
        .await
        .map(|_| ())
        .expect_err("a bad filter");
    assert_eq!(violated_fields(&refused), ["filter"]);

    let feed = async |filter: &str| {
        app.tickets
            .clone()
            .list_ticket_changes(app.as_admin(v1::ListTicketChangesRequest {
                filter: filter.to_owned(),
                page_size: 100,
                ..Default::default()
            }))
            .await
    };
    let refused = feed("create_time > now(-52w) AND status = open")
        .await
        .expect_err("status changes");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["filter"]);
    let description = description_of(&refused);
    assert!(description.starts_with("at 29:"), "{description}");
    assert!(description.contains("not on status"), "{description}");
    let refused = feed("status = open").await.expect_err("status changes");
    let description = description_of(&refused);
    assert!(
        description.starts_with("at 1: the change feed filters only on fields that never change"),
        "{description}"
    );
    // The feed holds back changes while any older transaction of the server runs (other
    // tests'): wait until it has caught up with the fixture.
    for (filter, expected) in [
        (format!("requester = {bob}"), set(&["refund"])),
        (
            "create_time < now(-24h)".to_owned(),
            set(&["solved", "spam"]),
        ),
    ] {
        let started = tokio::time::Instant::now();
        loop {
            let page = feed(&filter)
                .await
                .expect("a field that never changes")
                .into_inner();
            let seen: BTreeSet<String> = page
                .changes
                .iter()
                .map(|change| first_word(&change.ticket.as_ref().unwrap().subject))
                .collect();
            if page.caught_up && seen == expected {
                break;
            }
            assert!(started.elapsed() < PATIENCE, "{filter}: {seen:?}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn rest_takes_the_filter_as_a_query_parameter_through_envoy() {
    let Fixture { app, .. } = fixture().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();
    // Spaces as %20: Envoy's transcoder takes a `+` in a query literally (RFC 3986), not as
    // the space of HTML forms (docs/tickets.md says so to REST clients).
    let get = |filter: &str| {
        let encoded: String = filter
            .bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    char::from(byte).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        http.get(envoy.url(&format!("/v1/tickets?filter={encoded}")))
            .bearer_auth(&app.admin.access_token)
            .send()
    };
    let response = get("status = (open OR pending) AND tags: vip")
        .await
        .expect("an answer");
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let subjects: BTreeSet<String> = body["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ticket| first_word(ticket["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(subjects, set(&["refund", "urgent"]));

    let response = get("status = open OR tags: vip").await.expect("an answer");
    assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.unwrap();
    let violation = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|detail| detail["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .map(|detail| detail["fieldViolations"][0].clone())
        .expect("a BadRequest");
    assert_eq!(violation["field"], "filter");
    assert!(
        violation["description"]
            .as_str()
            .unwrap()
            .starts_with("at 18: OR across fields"),
        "{violation}"
    );
}
