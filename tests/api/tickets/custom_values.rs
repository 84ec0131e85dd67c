//! Custom field values on tickets (docs/tickets.md, "Custom field values"): checked against the
//! account's catalogue on create and update, stored as one JSON object per ticket, set key by
//! key on the locked row so that concurrent changes all land, audited per key, shown to
//! customers only for fields they may see, and required before a ticket is solved.

use std::collections::HashMap;

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use prost_types::FieldMask;
use prost_types::value::Kind;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;
use uuid::Uuid;

use crate::cross_cutting::tenancy::custom_fields as catalogue_client;
use crate::cross_cutting::tenancy::views;
use crate::support::{TestApp, assert_reason, details, violated_fields};

fn text(value: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(Kind::StringValue(value.to_owned())),
    }
}

fn number(value: f64) -> prost_types::Value {
    prost_types::Value {
        kind: Some(Kind::NumberValue(value)),
    }
}

fn boolean(value: bool) -> prost_types::Value {
    prost_types::Value {
        kind: Some(Kind::BoolValue(value)),
    }
}

fn list(values: &[&str]) -> prost_types::Value {
    prost_types::Value {
        kind: Some(Kind::ListValue(prost_types::ListValue {
            values: values.iter().map(|value| text(value)).collect(),
        })),
    }
}

fn null() -> prost_types::Value {
    prost_types::Value {
        kind: Some(Kind::NullValue(0)),
    }
}

fn values(pairs: &[(&str, prost_types::Value)]) -> HashMap<String, prost_types::Value> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect()
}

/// Defines a field in `app`'s account.
pub(crate) async fn define(app: &TestApp, field: v1::CustomField) -> v1::CustomField {
    catalogue_client(app)
        .create_custom_field(app.as_admin(v1::CreateCustomFieldRequest {
            custom_field: Some(field),
        }))
        .await
        .expect("defined")
        .into_inner()
}

pub(crate) fn field(key: &str, kind: v1::CustomFieldKind) -> v1::CustomField {
    v1::CustomField {
        key: key.to_owned(),
        title: format!("The {key}"),
        kind: kind.into(),
        ..Default::default()
    }
}

pub(crate) fn choices(key: &str, kind: v1::CustomFieldKind, options: &[&str]) -> v1::CustomField {
    v1::CustomField {
        choices: options.iter().map(|option| (*option).to_owned()).collect(),
        ..field(key, kind)
    }
}

/// A catalogue of one field of each common kind: `plan` (single choice, customers see and edit
/// it), `seats` (integer), `amount` (decimal), `due` (date), `vip` (checkbox) and `areas`
/// (multiple choice).
async fn define_catalogue(app: &TestApp) {
    define(
        app,
        v1::CustomField {
            customer_visible: true,
            customer_editable: true,
            ..choices("plan", v1::CustomFieldKind::SingleChoice, &["free", "pro"])
        },
    )
    .await;
    define(app, field("seats", v1::CustomFieldKind::Integer)).await;
    define(app, field("amount", v1::CustomFieldKind::Decimal)).await;
    define(app, field("due", v1::CustomFieldKind::Date)).await;
    define(app, field("vip", v1::CustomFieldKind::Checkbox)).await;
    define(
        app,
        choices(
            "areas",
            v1::CustomFieldKind::MultipleChoice,
            &["billing", "login", "mobile"],
        ),
    )
    .await;
}

/// The custom field values of ticket `id` as PostgreSQL holds them.
async fn stored_values(app: &TestApp, id: &str) -> serde_json::Value {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        custom_fields: String,
    }
    let mut conn = app.database.connect().await;
    let row: Row =
        diesel::sql_query("SELECT custom_fields::text AS custom_fields FROM tickets WHERE id = $1")
            .bind::<SqlUuid, _>(Uuid::parse_str(id).unwrap())
            .get_result(&mut conn)
            .await
            .expect("the ticket's row");
    serde_json::from_str(&row.custom_fields).unwrap()
}

async fn create_with(
    app: &TestApp,
    custom_fields: HashMap<String, prost_types::Value>,
) -> Result<v1::Ticket, tonic::Status> {
    app.tickets
        .clone()
        .create_ticket(app.as_admin(v1::CreateTicketRequest {
            ticket: Some(v1::Ticket {
                subject: "With values".to_owned(),
                description: "Typed".to_owned(),
                requester_email: "jane@example.com".to_owned(),
                custom_fields,
                ..Default::default()
            }),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn update_values(
    app: &TestApp,
    id: &str,
    custom_fields: HashMap<String, prost_types::Value>,
    paths: &[&str],
) -> Result<v1::Ticket, tonic::Status> {
    app.tickets
        .clone()
        .update_ticket(app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: id.to_owned(),
                custom_fields,
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|path| (*path).to_owned()).collect(),
            }),
        }))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn values_set_on_create_are_stored_in_their_type_s_shape_and_returned_alike() {
    let app = TestApp::spawn().await;
    define_catalogue(&app).await;
    let ticket = create_with(
        &app,
        values(&[
            ("plan", text("pro")),
            ("seats", number(12.0)),
            ("amount", text("12.50")),
            ("due", text("2026-12-24")),
            ("vip", boolean(true)),
            ("areas", list(&["mobile", "billing", "mobile"])),
            ("vip_note", null()),
        ]),
    )
    .await;
    let status = ticket.expect_err("vip_note is not a field");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["ticket.custom_fields.vip_note"]);

    let ticket = create_with(
        &app,
        values(&[
            ("plan", text("pro")),
            ("seats", number(12.0)),
            ("amount", text("12.50")),
            ("due", text("2026-12-24")),
            ("vip", boolean(true)),
            ("areas", list(&["mobile", "billing", "mobile"])),
        ]),
    )
    .await
    .expect("created");
    let expected = serde_json::json!({
        "plan": "pro",
        "seats": 12,
        "amount": "12.5",
        "due": "2026-12-24",
        "vip": true,
        "areas": ["billing", "mobile"],
    });
    assert_eq!(stored_values(&app, &ticket.id).await, expected);
    assert_eq!(ticket.custom_fields["amount"], text("12.5"));
    assert_eq!(ticket.custom_fields["seats"], number(12.0));
    assert_eq!(ticket.custom_fields["areas"], list(&["billing", "mobile"]));

    let read = app
        .tickets
        .clone()
        .get_ticket(app.as_admin(v1::GetTicketRequest {
            id: ticket.id.clone(),
            ..Default::default()
        }))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(read.custom_fields, ticket.custom_fields);
}

#[tokio::test]
async fn every_refused_value_of_a_create_is_named_by_its_key_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    define_catalogue(&app).await;
    let old = define(&app, field("legacy", v1::CustomFieldKind::Text)).await;
    catalogue_client(&app)
        .retire_custom_field(app.as_admin(v1::RetireCustomFieldRequest { id: old.id.clone() }))
        .await
        .expect("retired");

    let status = create_with(
        &app,
        values(&[
            ("plan", text("gold")),
            ("seats", number(1.5)),
            ("due", text("24/12/2026")),
            ("vip", text("yes")),
            ("legacy", text("anything")),
            ("colour", text("red")),
            ("amount", text("3")),
        ]),
    )
    .await
    .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "ticket.custom_fields.colour",
            "ticket.custom_fields.due",
            "ticket.custom_fields.legacy",
            "ticket.custom_fields.plan",
            "ticket.custom_fields.seats",
            "ticket.custom_fields.vip",
        ]
    );
    let mut conn = app.database.connect().await;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    let count: Count =
        diesel::sql_query("SELECT count(*) AS count FROM tickets WHERE account_id = $1")
            .bind::<SqlUuid, _>(app.account_id.as_uuid())
            .get_result(&mut conn)
            .await
            .unwrap();
    assert_eq!(count.count, 0, "nothing was written");
}

#[tokio::test]
async fn a_key_named_in_the_mask_is_set_or_cleared_and_the_others_are_kept() {
    let app = TestApp::spawn().await;
    define_catalogue(&app).await;
    let ticket = create_with(
        &app,
        values(&[
            ("plan", text("free")),
            ("seats", number(3.0)),
            ("vip", boolean(false)),
        ]),
    )
    .await
    .expect("created");

    let updated = update_values(
        &app,
        &ticket.id,
        values(&[("plan", text("pro")), ("seats", number(99.0))]),
        &["custom_fields.plan", "custom_fields.vip"],
    )
    .await
    .expect("updated");
    let expected = serde_json::json!({"plan": "pro", "seats": 3});
    assert_eq!(
        stored_values(&app, &ticket.id).await,
        expected,
        "seats not in the mask, vip absent: cleared"
    );
    assert_eq!(updated.custom_fields.len(), 2);

    let activity = app
        .tickets
        .clone()
        .list_ticket_activity(app.as_admin(v1::ListTicketActivityRequest {
            ticket_id: ticket.id.clone(),
            ..Default::default()
        }))
        .await
        .expect("the activity")
        .into_inner()
        .activities;
    let mut changes: Vec<(String, String, String)> = activity[0]
        .changes
        .iter()
        .map(|change| {
            (
                change.field.clone(),
                change.old_value.clone(),
                change.new_value.clone(),
            )
        })
        .collect();
    changes.sort();
    assert_eq!(
        changes,
        [
            (
                "custom_fields.plan".to_owned(),
                r#""free""#.to_owned(),
                r#""pro""#.to_owned()
            ),
            (
                "custom_fields.vip".to_owned(),
                "false".to_owned(),
                String::new()
            ),
        ]
    );

    let replaced = update_values(
        &app,
        &ticket.id,
        values(&[("due", text("2027-01-02"))]),
        &["custom_fields"],
    )
    .await
    .expect("replaced");
    assert_eq!(
        stored_values(&app, &ticket.id).await,
        serde_json::json!({"due": "2027-01-02"})
    );
    assert_eq!(replaced.custom_fields.len(), 1);

    let status = update_values(
        &app,
        &ticket.id,
        values(&[("seats", text("many"))]),
        &["custom_fields.seats"],
    )
    .await
    .expect_err("not a number");
    assert_eq!(violated_fields(&status), ["ticket.custom_fields.seats"]);
    let status = update_values(&app, &ticket.id, values(&[]), &["custom_fields.Not A Key"])
        .await
        .expect_err("not a key");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        stored_values(&app, &ticket.id).await,
        serde_json::json!({"due": "2027-01-02"}),
        "nothing written"
    );
}

#[tokio::test]
async fn two_agents_setting_different_keys_at_the_same_time_both_land() {
    let app = TestApp::spawn().await;
    let keys: Vec<String> = (0..8).map(|n| format!("k{n}")).collect();
    for key in &keys {
        define(&app, field(key, v1::CustomFieldKind::Integer)).await;
    }
    let ticket = app.create_ticket("Busy ticket").await;
    let mut sets = tokio::task::JoinSet::new();
    for (n, key) in keys.iter().enumerate() {
        let mut tickets = app.tickets.clone();
        let request = app.as_admin(v1::UpdateTicketRequest {
            ticket: Some(v1::Ticket {
                id: ticket.id.clone(),
                custom_fields: values(&[(key.as_str(), number(n as f64))]),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec![format!("custom_fields.{key}")],
            }),
        });
        sets.spawn(async move { tickets.update_ticket(request).await });
    }
    while let Some(result) = sets.join_next().await {
        result.unwrap().expect("each set lands");
    }
    let expected: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .enumerate()
        .map(|(n, key)| (key.clone(), serde_json::json!(n)))
        .collect();
    assert_eq!(
        stored_values(&app, &ticket.id).await,
        serde_json::Value::Object(expected)
    );
}

#[tokio::test]
async fn a_customer_sees_and_sets_only_the_fields_meant_for_customers() {
    let app = TestApp::spawn().await;
    define_catalogue(&app).await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let status = app
        .tickets
        .clone()
        .create_ticket(customer.request(v1::CreateTicketRequest {
            ticket: Some(v1::Ticket {
                subject: "Mine".to_owned(),
                description: "Please".to_owned(),
                custom_fields: values(&[("plan", text("pro")), ("seats", number(4.0))]),
                ..Default::default()
            }),
        }))
        .await
        .expect_err("seats is the desk's");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["ticket.custom_fields.seats"]);

    let mine = app
        .tickets
        .clone()
        .create_ticket(customer.request(v1::CreateTicketRequest {
            ticket: Some(v1::Ticket {
                subject: "Mine".to_owned(),
                description: "Please".to_owned(),
                custom_fields: values(&[("plan", text("pro"))]),
                ..Default::default()
            }),
        }))
        .await
        .expect("created")
        .into_inner();
    update_values(
        &app,
        &mine.id,
        values(&[("seats", number(4.0))]),
        &["custom_fields.seats"],
    )
    .await
    .expect("the desk sets seats");
    assert_eq!(
        stored_values(&app, &mine.id).await,
        serde_json::json!({"plan": "pro", "seats": 4})
    );

    let seen = app
        .tickets
        .clone()
        .get_ticket(customer.request(v1::GetTicketRequest {
            id: mine.id.clone(),
            ..Default::default()
        }))
        .await
        .expect("their own ticket")
        .into_inner();
    assert_eq!(seen.custom_fields, values(&[("plan", text("pro"))]));
    let listed = app
        .tickets
        .clone()
        .list_tickets(customer.request(v1::ListTicketsRequest::default()))
        .await
        .expect("their tickets")
        .into_inner();
    assert_eq!(listed.tickets.len(), 1);
    assert_eq!(
        listed.tickets[0].custom_fields,
        values(&[("plan", text("pro"))])
    );
    let agent_view = app
        .tickets
        .clone()
        .get_ticket(app.as_admin(v1::GetTicketRequest {
            id: mine.id.clone(),
            ..Default::default()
        }))
        .await
        .expect("the desk reads it")
        .into_inner();
    assert_eq!(agent_view.custom_fields.len(), 2);
}

#[tokio::test]
async fn a_retired_or_changed_field_leaves_its_values_readable() {
    let app = TestApp::spawn().await;
    let plan = define(
        &app,
        choices("plan", v1::CustomFieldKind::SingleChoice, &["free", "pro"]),
    )
    .await;
    let ticket = create_with(&app, values(&[("plan", text("pro"))]))
        .await
        .expect("created");
    catalogue_client(&app)
        .update_custom_field(app.as_admin(v1::UpdateCustomFieldRequest {
            custom_field: Some(v1::CustomField {
                id: plan.id.clone(),
                choices: vec!["free".to_owned(), "team".to_owned()],
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["choices".to_owned()],
            }),
        }))
        .await
        .expect("options changed");
    catalogue_client(&app)
        .retire_custom_field(app.as_admin(v1::RetireCustomFieldRequest {
            id: plan.id.clone(),
        }))
        .await
        .expect("retired");
    let read = app
        .tickets
        .clone()
        .get_ticket(app.as_admin(v1::GetTicketRequest {
            id: ticket.id.clone(),
            ..Default::default()
        }))
        .await
        .expect("still readable")
        .into_inner();
    assert_eq!(read.custom_fields, values(&[("plan", text("pro"))]));
    let status = update_values(
        &app,
        &ticket.id,
        values(&[("plan", text("free"))]),
        &["custom_fields.plan"],
    )
    .await
    .expect_err("a retired field takes no new value");
    assert_eq!(violated_fields(&status), ["ticket.custom_fields.plan"]);
}

#[tokio::test]
async fn a_ticket_is_not_solved_while_a_field_required_to_solve_is_empty() {
    let app = TestApp::spawn().await;
    define(
        &app,
        v1::CustomField {
            required_to_solve: true,
            ..field("root_cause", v1::CustomFieldKind::Text)
        },
    )
    .await;
    let ticket = app.create_ticket("Needs a cause").await;
    app.tickets
        .clone()
        .assign_ticket(app.as_admin(v1::AssignTicketRequest {
            id: ticket.id.clone(),
            assignee_id: app.admin.id.to_string(),
            etag: String::new(),
            group_id: None,
        }))
        .await
        .expect("assigned");
    let resolve = || {
        app.as_admin(v1::ResolveTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        })
    };
    let status = app
        .tickets
        .clone()
        .resolve_ticket(resolve())
        .await
        .expect_err("root_cause is empty");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_reason(&status, Reason::CustomFieldsRequired);
    let subjects: Vec<String> = details(&status)
        .precondition_failure()
        .expect("PreconditionFailure")
        .violations
        .iter()
        .map(|violation| violation.subject.clone())
        .collect();
    assert_eq!(subjects, ["custom_fields.root_cause"]);

    update_values(
        &app,
        &ticket.id,
        values(&[("root_cause", text("A loose cable"))]),
        &["custom_fields.root_cause"],
    )
    .await
    .expect("set");
    let solved = app
        .tickets
        .clone()
        .resolve_ticket(resolve())
        .await
        .expect("solved")
        .into_inner();
    assert_eq!(solved.status, i32::from(v1::TicketStatus::Solved));
}

/// The ids of the tickets ListTickets answers for `filter`, as the admin.
async fn ids_filtered(app: &TestApp, filter: &str) -> Result<Vec<String>, tonic::Status> {
    let mut ids: Vec<String> = app
        .tickets
        .clone()
        .list_tickets(app.as_admin(v1::ListTicketsRequest {
            filter: filter.to_owned(),
            page_size: 100,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .tickets
        .into_iter()
        .map(|ticket| ticket.id)
        .collect();
    ids.sort();
    Ok(ids)
}

fn sorted(ids: &[&v1::Ticket]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|ticket| ticket.id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_filter_on_custom_fields_lists_exactly_the_tickets_whose_values_match() {
    let app = TestApp::spawn().await;
    define_catalogue(&app).await;
    let pro = create_with(
        &app,
        values(&[
            ("plan", text("pro")),
            ("seats", number(12.0)),
            ("vip", boolean(true)),
            ("areas", list(&["billing", "login"])),
            ("amount", text("12.50")),
            ("due", text("2026-12-03")),
        ]),
    )
    .await
    .expect("created");
    let free = create_with(
        &app,
        values(&[
            ("plan", text("free")),
            ("seats", number(3.0)),
            ("vip", boolean(false)),
            ("areas", list(&["login"])),
        ]),
    )
    .await
    .expect("created");
    let bare = create_with(&app, HashMap::new()).await.expect("created");

    for (filter, expected) in [
        ("custom_fields.plan = pro", vec![&pro]),
        ("custom_fields.plan = (pro OR free)", vec![&pro, &free]),
        ("custom_fields.plan != pro", vec![&free, &bare]),
        ("NOT custom_fields.plan = free", vec![&pro, &bare]),
        ("custom_fields.seats = 12", vec![&pro]),
        ("custom_fields.seats = \"3\"", vec![&free]),
        ("custom_fields.vip = true", vec![&pro]),
        ("custom_fields.vip = false", vec![&free]),
        ("custom_fields.amount = \"12.5\"", vec![&pro]),
        ("custom_fields.amount = \"12.500\"", vec![&pro]),
        ("custom_fields.due = \"2026-12-03\"", vec![&pro]),
        ("custom_fields.areas: login", vec![&pro, &free]),
        ("custom_fields.areas: (billing AND login)", vec![&pro]),
        ("custom_fields.areas: (billing OR mobile)", vec![&pro]),
        (
            "custom_fields.plan = pro AND custom_fields.vip = false",
            vec![],
        ),
        ("custom_fields.plan: free", vec![&free]),
    ] {
        assert_eq!(
            ids_filtered(&app, filter).await.expect(filter),
            sorted(&expected),
            "{filter}"
        );
        assert_eq!(
            app.matched_in_memory(filter).await,
            sorted(&expected),
            "{filter} read in memory (an SLA policy's condition)"
        );
    }
}

#[tokio::test]
async fn a_filter_a_custom_field_cannot_serve_is_refused_with_its_position() {
    let app = TestApp::spawn().await;
    define_catalogue(&app).await;
    define(&app, field("notes", v1::CustomFieldKind::LongText)).await;
    for (filter, starts) in [
        (
            "status = open AND custom_fields.nope = 1",
            "at 19: the account has no custom field with the key \"nope\"",
        ),
        (
            "custom_fields.seats > 5",
            "at 1: custom_fields.seats compares with =, != or :, not >",
        ),
        (
            "custom_fields.seats = many",
            "at 23: \"many\" is not a whole number",
        ),
        (
            "custom_fields.vip = yes",
            "at 21: this checkbox field compares with true or false",
        ),
        (
            "custom_fields.areas = login",
            "at 1: custom_fields.areas is a list of options: write custom_fields.areas: option",
        ),
        (
            "custom_fields.notes = x",
            "at 1: custom_fields.notes is long text",
        ),
        (
            "custom_fields.plan:*",
            "at 20: custom_fields.plan:* is not served by an index",
        ),
        (
            "custom_fields.plan = pro OR status = open",
            "at 29: OR across fields (custom_fields and status)",
        ),
    ] {
        let refused = ids_filtered(&app, filter).await.expect_err(filter);
        assert_eq!(refused.code(), Code::InvalidArgument, "{filter}");
        assert_eq!(violated_fields(&refused), ["filter"], "{filter}");
        let description = details(&refused).bad_request().unwrap().field_violations[0]
            .description
            .clone();
        assert!(
            description.starts_with(starts),
            "{filter}: {description:?} does not start with {starts:?}"
        );
    }
}

#[tokio::test]
async fn a_customer_filters_only_on_fields_they_see_and_the_change_feed_refuses_custom_fields() {
    let app = TestApp::spawn().await;
    define_catalogue(&app).await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let mine = app
        .tickets
        .clone()
        .create_ticket(customer.request(v1::CreateTicketRequest {
            ticket: Some(v1::Ticket {
                subject: "Mine".to_owned(),
                description: "Please".to_owned(),
                custom_fields: values(&[("plan", text("pro"))]),
                ..Default::default()
            }),
        }))
        .await
        .expect("created")
        .into_inner();
    update_values(
        &app,
        &mine.id,
        values(&[("seats", number(4.0))]),
        &["custom_fields.seats"],
    )
    .await
    .expect("the desk sets seats");
    let list = |filter: &str| {
        customer.request(v1::ListTicketsRequest {
            filter: filter.to_owned(),
            ..Default::default()
        })
    };
    let listed = app
        .tickets
        .clone()
        .list_tickets(list("custom_fields.plan = pro"))
        .await
        .expect("plan is the customer's to see")
        .into_inner();
    assert_eq!(listed.tickets.len(), 1);
    let refused = app
        .tickets
        .clone()
        .list_tickets(list("custom_fields.seats = 4"))
        .await
        .expect_err("seats is the desk's: a customer probing it learns nothing");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["filter"]);

    let refused = app
        .tickets
        .clone()
        .list_ticket_changes(app.as_admin(v1::ListTicketChangesRequest {
            filter: "custom_fields.plan = pro".to_owned(),
            ..Default::default()
        }))
        .await
        .expect_err("custom field values change");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["filter"]);
}

#[tokio::test]
async fn a_view_filters_on_custom_fields_the_account_has_and_counts_by_them() {
    let app = TestApp::spawn().await;
    define_catalogue(&app).await;
    create_with(&app, values(&[("plan", text("pro"))]))
        .await
        .expect("created");
    create_with(
        &app,
        values(&[("plan", text("pro")), ("vip", boolean(true))]),
    )
    .await
    .expect("created");
    create_with(&app, values(&[("plan", text("free"))]))
        .await
        .expect("created");
    let save = |filter: &str| {
        app.as_admin(v1::CreateViewRequest {
            view: Some(v1::View {
                name: filter.to_owned(),
                filter: filter.to_owned(),
                scope: v1::ViewScope::Account.into(),
                ..Default::default()
            }),
        })
    };
    let pro = views(&app)
        .create_view(save("custom_fields.plan = pro"))
        .await
        .expect("plan is a field of the account")
        .into_inner();
    let vip = views(&app)
        .create_view(save(
            "custom_fields.vip = true AND custom_fields.plan != free",
        ))
        .await
        .expect("saved")
        .into_inner();
    for (filter, problem) in [
        (
            "custom_fields.nope = 1",
            "at 1: the account has no custom field with the key \"nope\"",
        ),
        (
            "custom_fields.seats = many",
            "at 23: \"many\" is not a whole number",
        ),
    ] {
        let refused = views(&app)
            .create_view(save(filter))
            .await
            .expect_err(filter);
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&refused), ["view.filter"], "{filter}");
        let description = details(&refused).bad_request().unwrap().field_violations[0]
            .description
            .clone();
        assert!(description.starts_with(problem), "{filter}: {description}");
    }
    let counted = views(&app)
        .count_views(app.as_admin(v1::CountViewsRequest {
            view_ids: vec![pro.id.clone(), vip.id.clone()],
        }))
        .await
        .expect("counted")
        .into_inner();
    let counts: Vec<(String, i32)> = counted
        .counts
        .into_iter()
        .map(|count| (count.view_id, count.count))
        .collect();
    assert_eq!(counts, [(pro.id, 2), (vip.id, 1)]);
}
