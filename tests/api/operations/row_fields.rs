//! What an imported row carries besides subject and requester: tags, a group (and an assignee
//! who must be in it) and custom field values, each checked as CreateTicket checks it and
//! refused as the row's error naming its field; a CSV column for no custom field the importer
//! may write fails the whole file.

use diesel_async::RunQueryDsl;
use serde_json::json;
use supportdesk::wire::proto::v1;

use super::{done, error, import, metadata, response, spawn};
use crate::cross_cutting::tenancy::custom_fields as catalogue_client;
use crate::support::count_of;
use crate::tickets::custom_values::{choices, define, field};
use crate::tickets::groups::{add_member, create_group};

#[derive(Debug, PartialEq, diesel::QueryableByName)]
struct ImportedTags {
    #[diesel(sql_type = diesel::sql_types::Text)]
    subject: String,
    #[diesel(sql_type = diesel::sql_types::Array<diesel::sql_types::Text>)]
    tags: Vec<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    audited: Option<String>,
}

#[tokio::test]
async fn imported_rows_carry_their_tags_normalized_into_the_ticket_its_audit_and_the_tag_counts() {
    let app = spawn().await;
    let csv = "subject,description,requester_email,tags\n\
               tag-csv-1,d,a@example.com,\"VIP, Refund\"\n\
               tag-csv-2,d,a@example.com,\n\
               tag-csv-3,d,a@example.com,not!a-tag\n"
        .to_owned();
    let csv_result = response(
        &done(
            &app,
            &app.admin,
            &import(&app, v1::ImportFormat::Csv, csv).await.name,
        )
        .await,
    );
    let ndjson =
        json!({"subject": "tag-nd-1", "description": "d", "requester_email": "b@example.com",
                        "tags": ["vip", "bug"]})
        .to_string();
    let nd_result = response(
        &done(
            &app,
            &app.admin,
            &import(&app, v1::ImportFormat::Ndjson, ndjson).await.name,
        )
        .await,
    );

    assert_eq!((csv_result.rows_imported, csv_result.rows_failed), (2, 1));
    let refused: Vec<(i64, &str)> = csv_result
        .row_errors
        .iter()
        .map(|error| (error.row, error.field.as_str()))
        .collect();
    assert_eq!(refused, [(4, "tags")]);
    assert_eq!((nd_result.rows_imported, nd_result.rows_failed), (1, 0));
    let mut conn = app.database.connect().await;
    let stored: Vec<ImportedTags> = diesel::sql_query(
        "SELECT t.subject, t.tags, a.changes -> 'tags' ->> 'new' AS audited \
         FROM tickets t JOIN ticket_activities a ON a.ticket_id = t.id AND a.action = 'created' \
         WHERE t.subject LIKE 'tag-%' ORDER BY t.subject",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let row = |subject: &str, tags: &[&str], audited: Option<&str>| ImportedTags {
        subject: subject.to_owned(),
        tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
        audited: audited.map(str::to_owned),
    };
    assert_eq!(
        stored,
        [
            row("tag-csv-1", &["refund", "vip"], Some("refund,vip")),
            row("tag-csv-2", &[], None),
            row("tag-nd-1", &["bug", "vip"], Some("bug,vip")),
        ]
    );
    let counted = app
        .tickets
        .clone()
        .list_tags(app.as_admin(v1::ListTagsRequest::default()))
        .await
        .expect("tags")
        .into_inner();
    let counts: Vec<(&str, i64)> = counted
        .tags
        .iter()
        .map(|count| (count.tag.as_str(), count.ticket_count))
        .collect();
    assert_eq!(counts, [("vip", 2), ("bug", 1), ("refund", 1)]);
}

#[derive(Debug, PartialEq, diesel::QueryableByName)]
struct ImportedRouting {
    #[diesel(sql_type = diesel::sql_types::Text)]
    subject: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    group_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    assignee_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    audited_group: Option<String>,
}

#[tokio::test]
async fn imported_rows_carry_their_group_and_an_unknown_group_or_an_assignee_outside_it_is_the_rows_error()
 {
    let app = spawn().await;
    let billing = create_group(&app, &app.admin, "Billing").await;
    let member = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let outsider = app.add_user(&app.admin, v1::UserRole::Agent).await;
    add_member(&app, &billing, &member).await;
    let unknown = uuid::Uuid::now_v7();
    let csv = format!(
        "subject,description,requester_email,group_id,assignee_id\n\
         routed-1,d,a@example.com,{group},{member}\n\
         routed-2,d,a@example.com,{group},\n\
         routed-3,d,a@example.com,{group},{outsider}\n\
         routed-4,d,a@example.com,{unknown},\n\
         routed-5,d,a@example.com,billing,\n\
         routed-6,d,a@example.com,,{outsider}\n",
        group = billing.id,
        member = member.id,
        outsider = outsider.id,
    );

    let result = response(
        &done(
            &app,
            &app.admin,
            &import(&app, v1::ImportFormat::Csv, csv).await.name,
        )
        .await,
    );

    let refused: Vec<(i64, &str)> = result
        .row_errors
        .iter()
        .map(|error| (error.row, error.field.as_str()))
        .collect();
    assert_eq!(
        refused,
        [(4, "assignee_id"), (5, "group_id"), (6, "group_id")]
    );
    assert!(
        result.row_errors[0]
            .reason
            .contains(&format!("groups/{}", billing.id)),
        "{}",
        result.row_errors[0].reason
    );
    assert_eq!((result.rows_imported, result.rows_failed), (3, 3));
    let mut conn = app.database.connect().await;
    let stored: Vec<ImportedRouting> = diesel::sql_query(
        "SELECT t.subject, t.group_id::text AS group_id, t.assignee_id::text AS assignee_id, \
         a.changes -> 'group_id' ->> 'new' AS audited_group \
         FROM tickets t JOIN ticket_activities a ON a.ticket_id = t.id AND a.action = 'created' \
         WHERE t.subject LIKE 'routed-%' ORDER BY t.subject",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let row = |subject: &str, group: Option<&str>, assignee: Option<String>| ImportedRouting {
        subject: subject.to_owned(),
        group_id: group.map(str::to_owned),
        assignee_id: assignee,
        audited_group: group.map(str::to_owned),
    };
    assert_eq!(
        stored,
        [
            row("routed-1", Some(&billing.id), Some(member.id.to_string())),
            row("routed-2", Some(&billing.id), None),
            // No group: any agent of the account, as CreateTicket allows.
            row("routed-6", None, Some(outsider.id.to_string())),
        ]
    );
}

#[derive(Debug, PartialEq, diesel::QueryableByName)]
struct ImportedValues {
    #[diesel(sql_type = diesel::sql_types::Text)]
    subject: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    custom_fields: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    audited_seats: Option<String>,
}

#[tokio::test]
async fn imported_custom_field_values_are_typed_by_their_field_stored_and_audited_and_a_refused_one_names_its_field()
 {
    let app = spawn().await;
    define(&app, field("seats", v1::CustomFieldKind::Integer)).await;
    define(&app, field("vip", v1::CustomFieldKind::Checkbox)).await;
    define(
        &app,
        choices(
            "areas",
            v1::CustomFieldKind::MultipleChoice,
            &["billing", "login"],
        ),
    )
    .await;
    let csv = "subject,description,requester_email,custom_fields.seats,custom_fields.vip,\
               custom_fields.areas\n\
               valued-csv-1,d,a@example.com,12,yes,\"login billing\"\n\
               valued-csv-2,d,a@example.com,,,\n\
               valued-csv-3,d,a@example.com,a dozen,true,login\n"
        .to_owned();
    let ndjson = [
        json!({"subject": "valued-nd-1", "description": "d", "requester_email": "b@example.com",
               "custom_fields": {"seats": 3, "vip": false, "areas": ["login"]}}),
        json!({"subject": "valued-nd-2", "description": "d", "requester_email": "b@example.com",
               "custom_fields": {"plan": "pro"}}),
    ]
    .map(|row| row.to_string())
    .join("\n");

    let csv_result = response(
        &done(
            &app,
            &app.admin,
            &import(&app, v1::ImportFormat::Csv, csv).await.name,
        )
        .await,
    );
    let nd_result = response(
        &done(
            &app,
            &app.admin,
            &import(&app, v1::ImportFormat::Ndjson, ndjson).await.name,
        )
        .await,
    );

    let refused = |result: &v1::ImportTicketsResponse| -> Vec<(i64, String)> {
        result
            .row_errors
            .iter()
            .map(|error| (error.row, error.field.clone()))
            .collect()
    };
    assert_eq!(
        refused(&csv_result),
        [(4, "custom_fields.seats".to_owned())]
    );
    assert_eq!(refused(&nd_result), [(2, "custom_fields.plan".to_owned())]);
    let mut conn = app.database.connect().await;
    let stored: Vec<ImportedValues> = diesel::sql_query(
        "SELECT t.subject, t.custom_fields::text AS custom_fields, \
         a.changes -> 'custom_fields.seats' ->> 'new' AS audited_seats \
         FROM tickets t JOIN ticket_activities a ON a.ticket_id = t.id AND a.action = 'created' \
         WHERE t.subject LIKE 'valued-%' ORDER BY t.subject",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let values: Vec<(&str, serde_json::Value, Option<&str>)> = stored
        .iter()
        .map(|row| {
            (
                row.subject.as_str(),
                serde_json::from_str(&row.custom_fields).expect("JSON"),
                row.audited_seats.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        values,
        [
            (
                "valued-csv-1",
                json!({"seats": 12, "vip": true, "areas": ["billing", "login"]}),
                Some("12")
            ),
            ("valued-csv-2", json!({}), None),
            (
                "valued-nd-1",
                json!({"seats": 3, "vip": false, "areas": ["login"]}),
                Some("3")
            ),
        ]
    );
}

#[tokio::test]
async fn a_csv_column_for_an_unknown_or_retired_custom_field_fails_the_import_and_imports_nothing()
{
    let app = spawn().await;
    let legacy = define(&app, field("legacy", v1::CustomFieldKind::Text)).await;
    catalogue_client(&app)
        .retire_custom_field(app.as_admin(v1::RetireCustomFieldRequest { id: legacy.id }))
        .await
        .expect("retired");

    for key in ["plan", "legacy"] {
        let csv = format!(
            "subject,description,requester_email,custom_fields.{key}\ncolumn-{key},d,a@example.com,x\n"
        );
        let finished = done(
            &app,
            &app.admin,
            &import(&app, v1::ImportFormat::Csv, csv).await.name,
        )
        .await;

        assert_eq!(metadata(&finished).state(), v1::OperationState::Failed);
        let status = error(&finished);
        assert_eq!(status.code, tonic::Code::InvalidArgument as i32);
        assert!(
            status.message.contains(&format!("`custom_fields.{key}`")),
            "{}",
            status.message
        );
    }
    assert_eq!(
        count_of(&app.database, "SELECT count(*) AS count FROM tickets").await,
        0
    );
}
