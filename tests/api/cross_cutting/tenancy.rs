//! Tenant isolation, RPC by RPC: every RPC of the API is called by the admin of another account
//! and by a customer of the same account who owns none of the resources, aimed at the account's
//! resources. Nothing may leak and nothing may change. The list of RPCs comes from the
//! descriptor set, so a new RPC fails this test until it is given a probe.

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use supportdesk::wire::proto::google::longrunning as lro;
use supportdesk::wire::proto::v1;
use tonic::{Code, Status};

use super::rpcs::{self, Attack};
use crate::support::{TestApp, TestUser, every_rpc, keyed};

/// What the attack is aimed at: resources of the target account.
/// The tag of the target's ticket, which no other account's ListTags may list.
pub(crate) const TARGET_TAG: &str = "target-only";

pub(crate) struct Target {
    pub(crate) admin: TestUser,
    pub(crate) owner: TestUser,
    pub(crate) agent: TestUser,
    pub(crate) ticket: v1::Ticket,
    /// A ready attachment of the ticket.
    pub(crate) attachment: v1::Attachment,
    /// A paid charge of the owner.
    pub(crate) charge: v1::Charge,
    pub(crate) api_key_id: String,
    /// A dead webhook event about the charge, and the bytes the provider signed.
    pub(crate) webhook_event: (String, Vec<u8>),
    /// The dead acknowledgement of the ticket; its recipient (the owner) is suppressed.
    pub(crate) notification_id: String,
    /// A queued import of the account (the test app runs no operation workers), by name.
    pub(crate) operation: String,
    /// A webhook endpoint of the account, and the pending delivery of a test event to it.
    pub(crate) endpoint_id: String,
    pub(crate) delivery_id: String,
    /// A group of the account, with `agent` as its member.
    pub(crate) group_id: String,
    /// A custom field of the account.
    pub(crate) custom_field_id: String,
    /// An account view of the account, whose filter names `me`.
    pub(crate) view_id: String,
    /// A schedule (business hours) of the account.
    pub(crate) schedule_id: String,
    /// An SLA policy of the account, measured on the schedule.
    pub(crate) sla_policy_id: String,
}

#[derive(diesel::QueryableByName)]
struct Snapshot {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    rows: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    table_name: String,
}

/// The tables that hold an account's rows: `accounts` itself and every table with an
/// `account_id` column, read from information_schema so that a table added by a migration is
/// in the snapshot the day it exists.
async fn tenant_tables(conn: &mut diesel_async::AsyncPgConnection) -> Vec<String> {
    let tables: Vec<TableName> = diesel::sql_query(
        "SELECT table_name::text AS table_name FROM information_schema.columns \
         WHERE table_schema = 'public' AND column_name = 'account_id' ORDER BY table_name",
    )
    .load(conn)
    .await
    .expect("the tables with an account_id");
    let mut names: Vec<String> = tables.into_iter().map(|table| table.table_name).collect();
    names.insert(0, "accounts".to_owned());
    names
}

/// Every row of the target account, as text: equal snapshots mean nothing changed.
async fn snapshot(app: &TestApp) -> String {
    let mut conn = app.database.connect().await;
    let mut all = String::new();
    for table in tenant_tables(&mut conn).await {
        let column = if table == "accounts" {
            "id"
        } else {
            "account_id"
        };
        let rows: Vec<Snapshot> = diesel::sql_query(format!(
            "SELECT json_agg(t ORDER BY t::text)::text AS rows FROM {table} t WHERE {column} = $1"
        ))
        .bind::<SqlUuid, _>(app.account_id.as_uuid())
        .load(&mut conn)
        .await
        .expect("snapshot");
        all.push_str(&table);
        all.push_str(rows[0].rows.as_deref().unwrap_or("[]"));
    }
    all
}

#[tokio::test]
async fn the_snapshot_covers_every_table_that_holds_an_accounts_rows() {
    let app = TestApp::spawn().await;
    let mut conn = app.database.connect().await;
    let tables = tenant_tables(&mut conn).await;
    for expected in [
        "accounts",
        "api_keys",
        "charge_activities",
        "charge_disputes",
        "charges",
        "email_events",
        "email_suppressions",
        "group_members",
        "groups",
        "notifications",
        "operations",
        "refunds",
        "schedules",
        "sla_policies",
        "sla_policy_revisions",
        "ticket_activities",
        "ticket_comments",
        "tickets",
        "users",
        "webhook_events",
    ] {
        assert!(
            tables.iter().any(|table| table == expected),
            "{expected}: {tables:?}"
        );
    }
}

#[derive(diesel::QueryableByName)]
struct Payload {
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    payload: Vec<u8>,
}

pub(crate) fn assert_refused<T: std::fmt::Debug>(
    rpc: &str,
    result: Result<T, Status>,
    codes: &[Code],
) {
    match result {
        Ok(answer) => panic!("{rpc} answered {answer:?}"),
        Err(status) => assert!(
            codes.contains(&status.code()),
            "{rpc}: {:?} {}",
            status.code(),
            status.message()
        ),
    }
}

/// An Operations client to `app`.
pub(crate) fn operations(
    app: &TestApp,
) -> lro::operations_client::OperationsClient<tonic::transport::Channel> {
    lro::operations_client::OperationsClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", app.address))
            .expect("a valid uri")
            .connect_lazy(),
    )
}

/// A NotificationService client to `app`.
pub(crate) async fn notifications(
    app: &TestApp,
) -> v1::notification_service_client::NotificationServiceClient<tonic::transport::Channel> {
    crate::support::notifications::client(app).await
}

/// A CustomFieldService client to `app`.
pub(crate) fn custom_fields(
    app: &TestApp,
) -> v1::custom_field_service_client::CustomFieldServiceClient<tonic::transport::Channel> {
    v1::custom_field_service_client::CustomFieldServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", app.address))
            .unwrap()
            .connect_lazy(),
    )
}

/// A WebhookEndpointService client to `app`.
pub(crate) fn endpoints(
    app: &TestApp,
) -> v1::webhook_endpoint_service_client::WebhookEndpointServiceClient<tonic::transport::Channel> {
    v1::webhook_endpoint_service_client::WebhookEndpointServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", app.address))
            .unwrap()
            .connect_lazy(),
    )
}

/// A GroupService client to `app`.
pub(crate) fn groups(
    app: &TestApp,
) -> v1::group_service_client::GroupServiceClient<tonic::transport::Channel> {
    v1::group_service_client::GroupServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", app.address))
            .unwrap()
            .connect_lazy(),
    )
}

/// A ScheduleService client to `app`.
pub(crate) fn schedules(
    app: &TestApp,
) -> v1::schedule_service_client::ScheduleServiceClient<tonic::transport::Channel> {
    v1::schedule_service_client::ScheduleServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", app.address))
            .unwrap()
            .connect_lazy(),
    )
}

/// Monday to Friday, 09:00 to 17:00 in Berlin, named `name`.
pub(crate) fn office_hours(name: &str) -> v1::Schedule {
    v1::Schedule {
        name: name.to_owned(),
        time_zone: "Europe/Berlin".to_owned(),
        intervals: (1..=5)
            .map(|weekday| v1::BusinessInterval {
                weekday,
                start: "09:00".to_owned(),
                end: "17:00".to_owned(),
            })
            .collect(),
        ..Default::default()
    }
}

/// An SlaPolicyService client to `app`.
pub(crate) fn sla_policies(
    app: &TestApp,
) -> v1::sla_policy_service_client::SlaPolicyServiceClient<tonic::transport::Channel> {
    v1::sla_policy_service_client::SlaPolicyServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", app.address))
            .unwrap()
            .connect_lazy(),
    )
}

/// A policy named `name`: urgent tickets answered within an hour of `schedule_id`'s business
/// hours (calendar time without one), resolved within a day.
pub(crate) fn urgent_policy(name: &str, schedule_id: &str) -> v1::SlaPolicy {
    v1::SlaPolicy {
        name: name.to_owned(),
        filter: "priority = urgent".to_owned(),
        schedule_id: schedule_id.to_owned(),
        targets: vec![
            v1::SlaTarget {
                priority: v1::TicketPriority::Urgent.into(),
                metric: v1::SlaMetric::FirstReply.into(),
                minutes: 60,
                business_hours: !schedule_id.is_empty(),
            },
            v1::SlaTarget {
                priority: v1::TicketPriority::Urgent.into(),
                metric: v1::SlaMetric::Resolution.into(),
                minutes: 1440,
                business_hours: false,
            },
        ],
        warning_minutes: 15,
        ..Default::default()
    }
}

/// A ViewService client to `app`.
pub(crate) fn views(
    app: &TestApp,
) -> v1::view_service_client::ViewServiceClient<tonic::transport::Channel> {
    v1::view_service_client::ViewServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", app.address))
            .unwrap()
            .connect_lazy(),
    )
}

pub(crate) const HIDDEN: &[Code] = &[Code::NotFound];
pub(crate) const DENIED: &[Code] = &[Code::PermissionDenied];
pub(crate) const HIDDEN_OR_DENIED: &[Code] = &[Code::NotFound, Code::PermissionDenied];

/// Calls `rpc` as `attacker` against `target` and checks that nothing of the target leaks; the
/// RPC's entry in the fixture table holds the call.
async fn probe(app: &TestApp, rpc: &str, attacker: &TestUser, target: &Target) {
    let fixture = rpcs::fixture_of(rpc).unwrap_or_else(|| {
        panic!("{rpc} has no tenancy probe: add one to tests/api/cross_cutting/rpcs/")
    });
    (fixture.probe)(Attack {
        app,
        rpc,
        attacker,
        target,
    })
    .await;
}

#[tokio::test]
async fn no_rpc_lets_another_account_or_a_non_owning_customer_see_or_change_anything() {
    let app = TestApp::spawn().await;
    let owner = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let ticket = app
        .ticket("owned by the customer")
        .requester(&owner.email)
        .tags(&[TARGET_TAG])
        .create()
        .await;
    let charge = app
        .billing
        .clone()
        .create_charge(keyed(app.as_admin(v1::CreateChargeRequest {
            charge: Some(v1::Charge {
                customer_id: owner.id.to_string(),
                amount: Some(v1::Money {
                    amount_minor: 2_500,
                    currency_code: "USD".to_owned(),
                }),
                payment_method: "pm_card_visa".to_owned(),
                ..Default::default()
            }),
        })))
        .await
        .expect("the target's charge")
        .into_inner();
    let api_key_id = app
        .api_keys
        .clone()
        .create_api_key(keyed(app.as_admin(v1::CreateApiKeyRequest {
            api_key: Some(v1::ApiKey {
                name: "target key".to_owned(),
                roles: vec![v1::UserRole::Agent.into()],
                ..Default::default()
            }),
        })))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap()
        .id;
    let webhook_event = {
        let id = crate::webhooks::admin::deliver_about(&app, &charge.id).await;
        crate::webhooks::admin::make_dead(&app, &id).await;
        let mut conn = app.database.connect().await;
        let payload: Vec<Payload> =
            diesel::sql_query("SELECT payload FROM webhook_events WHERE id = $1")
                .bind::<Text, _>(&id)
                .load(&mut conn)
                .await
                .expect("the stored payload");
        (id, payload[0].payload.clone())
    };
    // The owner turned comment notices off, the acknowledgement died and its address is
    // suppressed: the target account has a row in every notification table.
    let notification_id = crate::support::notifications::acknowledgement_of(&app, &ticket.id).await;
    crate::support::notifications::make_ended(&app, &notification_id, "dead").await;
    crate::support::notifications::suppress(&app, &owner.email).await;
    notifications(&app)
        .await
        .update_notification_settings(owner.request(v1::UpdateNotificationSettingsRequest {
            notification_settings: Some(v1::NotificationSettings {
                comment_notifications: false,
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["comment_notifications".to_owned()],
            }),
        }))
        .await
        .expect("the owner's own settings");
    let bytes = crate::support::attachments::png_bytes(9);
    let attachment = crate::support::attachments::uploaded(
        &app,
        &app.admin,
        crate::support::attachments::upload_request(&ticket.id, "target.png", "image/png", &bytes),
        bytes,
    )
    .await;
    let operation = app
        .tickets
        .clone()
        .import_tickets(app.as_admin(v1::ImportTicketsRequest {
            format: v1::ImportFormat::Csv.into(),
            content:
                "subject,description,requester_email\nTarget,target,a@example.com\n".to_owned(),
        }))
        .await
        .expect("the target's import")
        .into_inner()
        .name;
    let endpoint_id = endpoints(&app)
        .create_webhook_endpoint(keyed(app.as_admin(v1::CreateWebhookEndpointRequest {
            webhook_endpoint: Some(v1::WebhookEndpoint {
                url: "https://target.example.com/hook".to_owned(),
                ..Default::default()
            }),
        })))
        .await
        .expect("the target's endpoint")
        .into_inner()
        .webhook_endpoint
        .unwrap()
        .id;
    let delivery_id = endpoints(&app)
        .send_test_webhook_event(app.as_admin(v1::SendTestWebhookEventRequest {
            id: endpoint_id.clone(),
        }))
        .await
        .expect("the target's test delivery")
        .into_inner()
        .id;
    let custom_field_id = custom_fields(&app)
        .create_custom_field(app.as_admin(v1::CreateCustomFieldRequest {
            custom_field: Some(v1::CustomField {
                key: "plan".to_owned(),
                title: "Plan".to_owned(),
                kind: v1::CustomFieldKind::SingleChoice.into(),
                choices: vec!["free".to_owned(), "pro".to_owned()],
                ..Default::default()
            }),
        }))
        .await
        .expect("the target's custom field")
        .into_inner()
        .id;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let group_id = groups(&app)
        .create_group(app.as_admin(v1::CreateGroupRequest {
            group: Some(v1::Group {
                name: "Target team".to_owned(),
                ..Default::default()
            }),
        }))
        .await
        .expect("the target's group")
        .into_inner()
        .id;
    groups(&app)
        .add_group_member(app.as_admin(v1::AddGroupMemberRequest {
            group_id: group_id.clone(),
            user_id: agent.id.to_string(),
        }))
        .await
        .expect("the target's member");
    let view_id = views(&app)
        .create_view(app.as_admin(v1::CreateViewRequest {
            view: Some(v1::View {
                name: "Target view".to_owned(),
                filter: "assignee = me".to_owned(),
                scope: v1::ViewScope::Account.into(),
                ..Default::default()
            }),
        }))
        .await
        .expect("the target's view")
        .into_inner()
        .id;
    let schedule_id = schedules(&app)
        .create_schedule(app.as_admin(v1::CreateScheduleRequest {
            schedule: Some(office_hours("Target hours")),
        }))
        .await
        .expect("the target's schedule")
        .into_inner()
        .id;
    let sla_policy_id = sla_policies(&app)
        .create_sla_policy(app.as_admin(v1::CreateSlaPolicyRequest {
            sla_policy: Some(urgent_policy("Target promises", &schedule_id)),
        }))
        .await
        .expect("the target's SLA policy")
        .into_inner()
        .id;
    let target = Target {
        sla_policy_id,
        schedule_id,
        view_id,
        group_id,
        custom_field_id,
        endpoint_id,
        delivery_id,
        operation,
        notification_id,
        attachment,
        webhook_event,
        charge,
        admin: app.admin.clone(),
        agent,
        owner,
        ticket,
        api_key_id,
    };
    let other_admin = app.sign_up_another_account().await;
    let other_customer = app.add_user(&app.admin, v1::UserRole::Customer).await;

    let mut rpcs: Vec<String> = every_rpc()
        .into_iter()
        .map(|(service, method)| format!("{service}/{method}"))
        .collect();
    // LogoutAll ends every session of its caller at once, access tokens included: each
    // attacker's last probe.
    rpcs.sort_by_key(|rpc| rpc.ends_with("/LogoutAll"));
    assert!(rpcs.len() >= 26, "the descriptor lists the API: {rpcs:?}");
    for attacker in [&other_admin, &other_customer] {
        for rpc in &rpcs {
            let before = snapshot(&app).await;
            probe(&app, rpc, attacker, &target).await;
            assert_eq!(
                snapshot(&app).await,
                before,
                "{rpc} called by {} changed the target account",
                attacker.email
            );
        }
    }
    app.auth
        .clone()
        .refresh_token(v1::RefreshTokenRequest {
            refresh_token: target.owner.refresh_token.clone(),
        })
        .await
        .expect("no logout of another ended the target's session");
}
