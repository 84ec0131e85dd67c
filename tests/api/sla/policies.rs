//! SlaPolicyService: what admins promise on which tickets, every revision kept in PostgreSQL,
//! and the schedules policies measure on.

use diesel::sql_types::{Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use serde_json::json;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::cross_cutting::tenancy::{office_hours, schedules, sla_policies, urgent_policy};
use crate::support::{TestApp, assert_reason, violated_fields};

async fn create(app: &TestApp, policy: v1::SlaPolicy) -> Result<v1::SlaPolicy, tonic::Status> {
    sla_policies(app)
        .create_sla_policy(app.as_admin(v1::CreateSlaPolicyRequest {
            sla_policy: Some(policy),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn update(
    app: &TestApp,
    policy: v1::SlaPolicy,
    paths: &[&str],
) -> Result<v1::SlaPolicy, tonic::Status> {
    sla_policies(app)
        .update_sla_policy(app.as_admin(v1::UpdateSlaPolicyRequest {
            sla_policy: Some(policy),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|path| (*path).to_owned()).collect(),
            }),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn new_schedule(app: &TestApp, name: &str) -> String {
    schedules(app)
        .create_schedule(app.as_admin(v1::CreateScheduleRequest {
            schedule: Some(office_hours(name)),
        }))
        .await
        .expect("a schedule")
        .into_inner()
        .id
}

fn target(
    priority: v1::TicketPriority,
    metric: v1::SlaMetric,
    minutes: i32,
    business_hours: bool,
) -> v1::SlaTarget {
    v1::SlaTarget {
        priority: priority.into(),
        metric: metric.into(),
        minutes,
        business_hours,
    }
}

#[derive(Debug, PartialEq, diesel::QueryableByName)]
struct StoredRevision {
    #[diesel(sql_type = Integer)]
    revision: i32,
    #[diesel(sql_type = Text)]
    filter: String,
    #[diesel(sql_type = Nullable<diesel::sql_types::Uuid>)]
    schedule_id: Option<uuid::Uuid>,
    #[diesel(sql_type = Jsonb)]
    targets: serde_json::Value,
    #[diesel(sql_type = Integer)]
    warning_minutes: i32,
}

/// Every kept revision of the policy, oldest first.
async fn stored_revisions(app: &TestApp, id: &str) -> Vec<StoredRevision> {
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "SELECT revision, filter, schedule_id, targets, warning_minutes \
         FROM sla_policy_revisions WHERE policy_id = $1::uuid ORDER BY revision",
    )
    .bind::<Text, _>(id)
    .load(&mut conn)
    .await
    .expect("the revisions")
}

#[derive(diesel::QueryableByName)]
struct Deleted {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    deleted_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[tokio::test]
async fn an_admin_creates_a_policy_and_every_change_is_a_revision_kept_in_postgresql() {
    let app = TestApp::spawn().await;
    let berlin = new_schedule(&app, "Berlin").await;
    let created = create(&app, urgent_policy("  Urgent promises ", &berlin))
        .await
        .expect("created");
    assert_eq!(created.name, "Urgent promises");
    assert_eq!(created.revision, 1);
    assert_eq!(created.schedule_id, berlin);
    assert_eq!(created.filter, "priority = urgent");
    assert_eq!(
        created.targets,
        urgent_policy("", &berlin).targets,
        "as sent"
    );

    let changed = update(
        &app,
        v1::SlaPolicy {
            id: created.id.clone(),
            filter: "priority = urgent AND tags: vip".to_owned(),
            warning_minutes: 45,
            ..Default::default()
        },
        &["filter", "warning_minutes"],
    )
    .await
    .expect("changed");
    assert_eq!(changed.revision, 2);
    assert_eq!(
        changed.targets, created.targets,
        "the mask named no targets"
    );

    let revisions = stored_revisions(&app, &created.id).await;
    let berlin_id = uuid::Uuid::parse_str(&berlin).unwrap();
    assert_eq!(
        revisions,
        [
            StoredRevision {
                revision: 1,
                filter: "priority = urgent".to_owned(),
                schedule_id: Some(berlin_id),
                targets: json!([
                    {"priority": "urgent", "metric": "first_reply", "minutes": 60, "business_hours": true},
                    {"priority": "urgent", "metric": "resolution", "minutes": 1440, "business_hours": false},
                ]),
                warning_minutes: 15,
            },
            StoredRevision {
                revision: 2,
                filter: "priority = urgent AND tags: vip".to_owned(),
                schedule_id: Some(berlin_id),
                targets: revisions[0].targets.clone(),
                warning_minutes: 45,
            },
        ],
        "an edit adds a revision and rewrites none"
    );

    let read = sla_policies(&app)
        .get_sla_policy(app.as_admin(v1::GetSlaPolicyRequest {
            id: created.id.clone(),
        }))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(read, changed);
}

#[tokio::test]
async fn policies_are_listed_in_the_order_they_are_matched() {
    let app = TestApp::spawn().await;
    let mut fallback = urgent_policy("Everything else", "");
    fallback.filter = String::new();
    fallback.position = 100;
    let fallback = create(&app, fallback).await.expect("created");
    let vip = create(
        &app,
        v1::SlaPolicy {
            position: 1,
            ..urgent_policy("VIP", "")
        },
    )
    .await
    .expect("created");
    let also_first = create(
        &app,
        v1::SlaPolicy {
            position: 1,
            ..urgent_policy("Also position 1, newer", "")
        },
    )
    .await
    .expect("created");
    let page = |page_token: String| {
        let app = &app;
        async move {
            sla_policies(app)
                .list_sla_policies(app.as_admin(v1::ListSlaPoliciesRequest {
                    page_size: 2,
                    page_token,
                }))
                .await
                .expect("listed")
                .into_inner()
        }
    };
    let first = page(String::new()).await;
    let second = page(first.next_page_token.clone()).await;
    let ids: Vec<String> = first
        .sla_policies
        .iter()
        .chain(&second.sla_policies)
        .map(|policy| policy.id.clone())
        .collect();
    assert_eq!(ids, [vip.id, also_first.id, fallback.id]);
    assert!(second.next_page_token.is_empty());
}

#[tokio::test]
async fn every_refused_part_of_a_policy_is_named_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let mut policy = urgent_policy("", "");
    policy.filter = "assignee = me".to_owned();
    policy.warning_minutes = 10_081;
    policy.targets.push(target(
        v1::TicketPriority::Urgent,
        v1::SlaMetric::FirstReply,
        30,
        false,
    ));
    policy.targets[1].minutes = 0;
    let refused = create(&app, policy).await.expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&refused);
    fields.sort();
    assert_eq!(
        fields,
        [
            "sla_policy.filter",
            "sla_policy.name",
            "sla_policy.targets[1].minutes",
            "sla_policy.warning_minutes",
        ]
    );

    // Targets that parse one by one are checked together: a repeat is named by its index.
    let mut repeated = urgent_policy("Repeated", "");
    repeated.targets.push(target(
        v1::TicketPriority::Urgent,
        v1::SlaMetric::FirstReply,
        30,
        false,
    ));
    let refused = create(&app, repeated).await.expect_err("refused");
    assert_eq!(violated_fields(&refused), ["sla_policy.targets[2]"]);

    // Business hours need a schedule; a time is not what a ticket has.
    let mut business = urgent_policy("Business", "");
    business.targets[0].business_hours = true;
    business.filter = "priority = urgent AND create_time > now(-1h)".to_owned();
    let refused = create(&app, business).await.expect_err("refused");
    let mut fields = violated_fields(&refused);
    fields.sort();
    assert_eq!(fields, ["sla_policy.filter"], "checked before the schedule");

    // A custom field the account does not have.
    let mut unknown_field = urgent_policy("Unknown field", "");
    unknown_field.filter = "custom_fields.plan = \"pro\"".to_owned();
    let refused = create(&app, unknown_field).await.expect_err("refused");
    assert_eq!(violated_fields(&refused), ["sla_policy.filter"]);

    let mut business = urgent_policy("Business", "");
    business.targets[0].business_hours = true;
    let refused = create(&app, business).await.expect_err("refused");
    assert_eq!(violated_fields(&refused), ["sla_policy.schedule_id"]);

    let listed = sla_policies(&app)
        .list_sla_policies(app.as_admin(v1::ListSlaPoliciesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.sla_policies.is_empty());
}

#[tokio::test]
async fn a_policy_takes_twelve_targets_one_per_priority_and_metric() {
    let app = TestApp::spawn().await;
    let priorities = [
        v1::TicketPriority::Low,
        v1::TicketPriority::Normal,
        v1::TicketPriority::High,
        v1::TicketPriority::Urgent,
    ];
    let metrics = [
        v1::SlaMetric::FirstReply,
        v1::SlaMetric::NextReply,
        v1::SlaMetric::Resolution,
    ];
    let every: Vec<v1::SlaTarget> = priorities
        .iter()
        .flat_map(|priority| metrics.map(|metric| target(*priority, metric, 120, false)))
        .collect();
    let mut policy = urgent_policy("Every target", "");
    policy.targets = every.clone();
    let created = create(&app, policy).await.expect("twelve targets");
    assert_eq!(created.targets, every);

    let mut none = urgent_policy("No target", "");
    none.targets.clear();
    let refused = create(&app, none).await.expect_err("refused");
    assert_eq!(violated_fields(&refused), ["sla_policy.targets"]);

    // 33 items: a thirteenth target repeats one, and is named.
    let mut too_many = urgent_policy("Too many", "");
    too_many.targets = every.iter().cycle().take(33).cloned().collect();
    let refused = create(&app, too_many).await.expect_err("refused");
    assert_eq!(violated_fields(&refused), ["sla_policy.targets[12]"]);
}

#[tokio::test]
async fn a_schedule_is_not_deleted_while_a_live_policy_measures_on_it() {
    let app = TestApp::spawn().await;
    let berlin = new_schedule(&app, "Berlin").await;
    let policy = create(&app, urgent_policy("On Berlin hours", &berlin))
        .await
        .expect("created");
    let delete_schedule = async || {
        schedules(&app)
            .delete_schedule(app.as_admin(v1::DeleteScheduleRequest { id: berlin.clone() }))
            .await
    };
    let refused = delete_schedule().await.expect_err("in use");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_reason(&refused, Reason::ScheduleInUse);
    let mut conn = app.database.connect().await;
    let schedule: Deleted =
        diesel::sql_query("SELECT deleted_at FROM schedules WHERE id = $1::uuid")
            .bind::<Text, _>(&berlin)
            .get_result(&mut conn)
            .await
            .unwrap();
    assert!(schedule.deleted_at.is_none());

    sla_policies(&app)
        .delete_sla_policy(app.as_admin(v1::DeleteSlaPolicyRequest {
            id: policy.id.clone(),
        }))
        .await
        .expect("policy deleted");
    delete_schedule().await.expect("no live policy uses it now");

    // A deleted schedule takes no new policy.
    let refused = create(&app, urgent_policy("Too late", &berlin))
        .await
        .expect_err("deleted schedule");
    assert_reason(&refused, Reason::ScheduleNotFound);
    // The deleted policy stays readable, with its revision.
    let read = sla_policies(&app)
        .get_sla_policy(app.as_admin(v1::GetSlaPolicyRequest { id: policy.id }))
        .await
        .expect("readable")
        .into_inner();
    assert!(read.delete_time.is_some());
    assert_eq!(read.revision, 1);
    // ... and takes no change.
    let changed = update(
        &app,
        v1::SlaPolicy {
            id: read.id,
            warning_minutes: 5,
            ..Default::default()
        },
        &["warning_minutes"],
    )
    .await
    .expect_err("deleted");
    assert_eq!(changed.code(), Code::NotFound);
    assert_reason(&changed, Reason::SlaPolicyNotFound);
}

#[tokio::test]
async fn a_name_is_unique_among_live_policies_and_the_limit_is_100() {
    let app = TestApp::spawn().await;
    for number in 0..100 {
        create(&app, urgent_policy(&format!("Policy {number}"), ""))
            .await
            .expect("within the limit");
    }
    let taken = create(&app, urgent_policy("POLICY 7", ""))
        .await
        .expect_err("taken");
    assert_eq!(
        taken.code(),
        Code::FailedPrecondition,
        "the limit is checked first"
    );
    assert_reason(&taken, Reason::SlaPolicyLimit);

    let listed = sla_policies(&app)
        .list_sla_policies(app.as_admin(v1::ListSlaPoliciesRequest {
            page_size: 1,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let first = listed.sla_policies[0].clone();
    let renamed = update(
        &app,
        v1::SlaPolicy {
            id: first.id.clone(),
            name: "policy 8".to_owned(),
            ..Default::default()
        },
        &["name"],
    )
    .await
    .expect_err("taken");
    assert_eq!(renamed.code(), Code::AlreadyExists);
    assert_reason(&renamed, Reason::SlaPolicyNameTaken);
}
