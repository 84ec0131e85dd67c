//! GroupService: groups of agents, their members, and who may manage them.

use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::cross_cutting::tenancy::groups;
use crate::support::{TestApp, TestUser, assert_reason, violated_fields};

async fn create_group(app: &TestApp, name: &str) -> Result<v1::Group, tonic::Status> {
    groups(app)
        .create_group(app.as_admin(v1::CreateGroupRequest {
            group: Some(v1::Group {
                name: name.to_owned(),
                description: "Refunds and invoices".to_owned(),
                ..Default::default()
            }),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn add_member(
    app: &TestApp,
    group: &v1::Group,
    user: &TestUser,
) -> Result<v1::GroupMember, tonic::Status> {
    groups(app)
        .add_group_member(app.as_admin(v1::AddGroupMemberRequest {
            group_id: group.id.clone(),
            user_id: user.id.to_string(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

#[derive(Debug, PartialEq, diesel::QueryableByName)]
struct StoredGroup {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    description: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    deleted_at: Option<chrono::DateTime<chrono::Utc>>,
}

async fn stored_group(app: &TestApp, id: &str) -> StoredGroup {
    let mut conn = app.database.connect().await;
    diesel::sql_query("SELECT name, description, deleted_at FROM groups WHERE id = $1::uuid")
        .bind::<Text, _>(id)
        .get_result(&mut conn)
        .await
        .expect("the stored group")
}

#[derive(diesel::QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

async fn stored_members(app: &TestApp, group_id: &str) -> i64 {
    let mut conn = app.database.connect().await;
    let counted: Counted =
        diesel::sql_query("SELECT count(*) AS count FROM group_members WHERE group_id = $1::uuid")
            .bind::<Text, _>(group_id)
            .get_result(&mut conn)
            .await
            .unwrap();
    counted.count
}

#[tokio::test]
async fn an_admin_creates_renames_and_lists_groups_which_postgresql_holds_as_sent() {
    let app = TestApp::spawn().await;
    let billing = create_group(&app, "  Billing ").await.expect("created");
    assert_eq!(billing.name, "Billing");
    assert_eq!(billing.description, "Refunds and invoices");
    assert_eq!(billing.member_count, 0);
    assert!(billing.delete_time.is_none());
    let tier2 = create_group(&app, "Tier 2").await.expect("created");

    let renamed = groups(&app)
        .update_group(app.as_admin(v1::UpdateGroupRequest {
            group: Some(v1::Group {
                id: billing.id.clone(),
                name: "Billing and refunds".to_owned(),
                description: "ignored: not in the mask".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".to_owned()],
            }),
        }))
        .await
        .expect("renamed")
        .into_inner();
    assert_eq!(renamed.name, "Billing and refunds");
    assert_eq!(
        stored_group(&app, &billing.id).await,
        StoredGroup {
            name: "Billing and refunds".to_owned(),
            description: "Refunds and invoices".to_owned(),
            deleted_at: None,
        }
    );

    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let listed = groups(&app)
        .list_groups(agent.request(v1::ListGroupsRequest::default()))
        .await
        .expect("agents read groups")
        .into_inner();
    let names: Vec<&str> = listed
        .groups
        .iter()
        .map(|group| group.name.as_str())
        .collect();
    assert_eq!(names, ["Billing and refunds", "Tier 2"]);
    let read = groups(&app)
        .get_group(agent.request(v1::GetGroupRequest {
            id: tier2.id.clone(),
        }))
        .await
        .expect("agents read a group")
        .into_inner();
    assert_eq!(read, tier2);
}

#[tokio::test]
async fn a_name_taken_by_a_live_group_whatever_its_case_is_refused_and_freed_by_its_deletion() {
    let app = TestApp::spawn().await;
    let first = create_group(&app, "Billing").await.expect("created");
    let refused = create_group(&app, "BILLING").await.expect_err("taken");
    assert_eq!(refused.code(), Code::AlreadyExists);
    assert_reason(&refused, Reason::GroupNameTaken);
    assert!(refused.message().starts_with("name: "), "{refused:?}");

    let other = create_group(&app, "Tier 2").await.expect("created");
    let renamed = groups(&app)
        .update_group(app.as_admin(v1::UpdateGroupRequest {
            group: Some(v1::Group {
                id: other.id.clone(),
                name: "billing".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".to_owned()],
            }),
        }))
        .await
        .expect_err("taken");
    assert_reason(&renamed, Reason::GroupNameTaken);

    groups(&app)
        .delete_group(app.as_admin(v1::DeleteGroupRequest {
            id: first.id.clone(),
        }))
        .await
        .expect("deleted");
    let again = create_group(&app, "billing")
        .await
        .expect("the name is free");
    assert_ne!(again.id, first.id);
}

#[tokio::test]
async fn bad_names_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    for name in ["", "   ", &"x".repeat(101), "two\nlines"] {
        let refused = create_group(&app, name).await.expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "{name:?}");
        assert_eq!(violated_fields(&refused), ["group.name"], "{name:?}");
    }
}

#[tokio::test]
async fn only_agents_and_admins_can_be_members_and_a_users_groups_are_listed_by_user_id() {
    let app = TestApp::spawn().await;
    let billing = create_group(&app, "Billing").await.unwrap();
    let tier2 = create_group(&app, "Tier 2").await.unwrap();
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;

    let member = add_member(&app, &billing, &agent)
        .await
        .expect("an agent joins");
    assert_eq!(member.group_id, billing.id);
    assert_eq!(member.user_id, agent.id.to_string());
    let again = add_member(&app, &billing, &agent)
        .await
        .expect("answered as it is");
    assert_eq!(again, member);
    add_member(&app, &tier2, &app.admin)
        .await
        .expect("an admin joins");

    let refused = add_member(&app, &billing, &customer)
        .await
        .expect_err("a customer");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["user_id"]);
    assert_eq!(stored_members(&app, &billing.id).await, 1);

    let agents_groups = groups(&app)
        .list_groups(agent.request(v1::ListGroupsRequest {
            user_id: agent.id.to_string(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(agents_groups.groups.len(), 1);
    assert_eq!(agents_groups.groups[0].id, billing.id);
    assert_eq!(agents_groups.groups[0].member_count, 1);

    let members = groups(&app)
        .list_group_members(agent.request(v1::ListGroupMembersRequest {
            group_id: billing.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.group_members, [member]);

    groups(&app)
        .remove_group_member(app.as_admin(v1::RemoveGroupMemberRequest {
            group_id: billing.id.clone(),
            user_id: agent.id.to_string(),
        }))
        .await
        .expect("removed");
    assert_eq!(stored_members(&app, &billing.id).await, 0);
    let gone = groups(&app)
        .remove_group_member(app.as_admin(v1::RemoveGroupMemberRequest {
            group_id: billing.id.clone(),
            user_id: agent.id.to_string(),
        }))
        .await
        .expect_err("no longer a member");
    assert_eq!(gone.code(), Code::NotFound);
    assert_reason(&gone, Reason::GroupMemberNotFound);
}

#[tokio::test]
async fn customers_are_refused_and_agents_read_but_do_not_write() {
    let app = TestApp::spawn().await;
    let group = create_group(&app, "Billing").await.unwrap();
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let listed = groups(&app)
        .list_groups(customer.request(v1::ListGroupsRequest::default()))
        .await
        .expect_err("customers see no groups");
    assert_eq!(listed.code(), Code::PermissionDenied);
    assert_reason(&listed, Reason::RoleRequired);
    let deleted = groups(&app)
        .delete_group(agent.request(v1::DeleteGroupRequest {
            id: group.id.clone(),
        }))
        .await
        .expect_err("agents do not delete");
    assert_eq!(deleted.code(), Code::PermissionDenied);
    assert_eq!(stored_group(&app, &group.id).await.deleted_at, None);
}

#[tokio::test]
async fn a_group_with_open_tickets_is_not_deleted_and_a_deleted_one_stays_readable() {
    let app = TestApp::spawn().await;
    let group = create_group(&app, "Billing").await.unwrap();
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    add_member(&app, &group, &agent).await.unwrap();
    let open = app.create_ticket("routed to billing").await;
    let solved = app.create_ticket("done with").await;
    {
        let mut conn = app.database.connect().await;
        diesel::sql_query("UPDATE tickets SET group_id = $1::uuid WHERE id = ANY($2::uuid[])")
            .bind::<Text, _>(&group.id)
            .bind::<diesel::sql_types::Array<Text>, _>(vec![open.id.clone(), solved.id.clone()])
            .execute(&mut conn)
            .await
            .unwrap();
        diesel::sql_query("UPDATE tickets SET status = 'closed' WHERE id = $1::uuid")
            .bind::<Text, _>(&solved.id)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let refused = groups(&app)
        .delete_group(app.as_admin(v1::DeleteGroupRequest {
            id: group.id.clone(),
        }))
        .await
        .expect_err("an open ticket is assigned to it");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_reason(&refused, Reason::GroupHasOpenTickets);
    assert!(refused.message().starts_with("1 tickets"), "{refused:?}");
    assert_eq!(stored_group(&app, &group.id).await.deleted_at, None);

    {
        let mut conn = app.database.connect().await;
        diesel::sql_query("UPDATE tickets SET status = 'solved' WHERE id = $1::uuid")
            .bind::<Text, _>(&open.id)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    groups(&app)
        .delete_group(app.as_admin(v1::DeleteGroupRequest {
            id: group.id.clone(),
        }))
        .await
        .expect("deleted once nothing open is assigned");
    assert!(stored_group(&app, &group.id).await.deleted_at.is_some());
    assert_eq!(stored_members(&app, &group.id).await, 0);

    let read = groups(&app)
        .get_group(app.as_admin(v1::GetGroupRequest {
            id: group.id.clone(),
        }))
        .await
        .expect("still readable")
        .into_inner();
    assert!(read.delete_time.is_some());
    let listed = groups(&app)
        .list_groups(app.as_admin(v1::ListGroupsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.groups.is_empty());
    let changed = add_member(&app, &group, &agent).await.expect_err("deleted");
    assert_eq!(changed.code(), Code::NotFound);
    assert_reason(&changed, Reason::GroupNotFound);
}

#[tokio::test]
async fn an_account_has_at_most_500_live_groups() {
    let app = TestApp::spawn().await;
    {
        let mut conn = app.database.connect().await;
        diesel::sql_query(
            "INSERT INTO groups (id, account_id, name) \
             SELECT gen_random_uuid(), $1, 'group ' || n FROM generate_series(1, 500) n",
        )
        .bind::<SqlUuid, _>(app.account_id.as_uuid())
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let refused = create_group(&app, "one too many")
        .await
        .expect_err("the limit");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_reason(&refused, Reason::GroupLimit);
}
