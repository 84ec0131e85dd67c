//! CustomFieldService: the catalogue of typed fields an account's admins define for its tickets
//! (docs/tickets.md, "Custom fields"), checked where it lives, in PostgreSQL.

use diesel::sql_types::{Bool, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use supportdesk::domain::custom_field::MAX_FIELDS_PER_ACCOUNT;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::cross_cutting::tenancy::custom_fields as client;
use crate::support::envoy::Envoy;
use crate::support::{TestApp, assert_json_reason, assert_reason, violated_fields};

fn declaration(key: &str, kind: v1::CustomFieldKind) -> v1::CustomField {
    v1::CustomField {
        key: key.to_owned(),
        title: format!("The {key}"),
        kind: kind.into(),
        ..Default::default()
    }
}

fn choice(key: &str, options: &[&str]) -> v1::CustomField {
    v1::CustomField {
        choices: options.iter().map(|option| (*option).to_owned()).collect(),
        ..declaration(key, v1::CustomFieldKind::SingleChoice)
    }
}

async fn define(app: &TestApp, field: v1::CustomField) -> Result<v1::CustomField, tonic::Status> {
    client(app)
        .create_custom_field(app.as_admin(v1::CreateCustomFieldRequest {
            custom_field: Some(field),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn update(
    app: &TestApp,
    field: v1::CustomField,
    paths: &[&str],
) -> Result<v1::CustomField, tonic::Status> {
    client(app)
        .update_custom_field(app.as_admin(v1::UpdateCustomFieldRequest {
            custom_field: Some(field),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|path| (*path).to_owned()).collect(),
            }),
        }))
        .await
        .map(tonic::Response::into_inner)
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct StoredField {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    choices: String,
    #[diesel(sql_type = Bool)]
    retired: bool,
}

/// The account's fields as PostgreSQL holds them, by key.
async fn stored(app: &TestApp) -> Vec<StoredField> {
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "SELECT key, kind, array_to_string(choices, ',') AS choices, retired_at IS NOT NULL AS retired \
         FROM custom_fields WHERE account_id = $1 ORDER BY key",
    )
    .bind::<SqlUuid, _>(app.account_id.as_uuid())
    .load(&mut conn)
    .await
    .expect("the stored fields")
}

fn field(key: &str, kind: &str, choices: &str, retired: bool) -> StoredField {
    StoredField {
        key: key.to_owned(),
        kind: kind.to_owned(),
        choices: choices.to_owned(),
        retired,
    }
}

#[tokio::test]
async fn an_admin_defines_fields_of_every_kind_and_agents_list_them_in_position_order() {
    let app = TestApp::spawn().await;
    let kinds = [
        ("summary", v1::CustomFieldKind::Text),
        ("notes", v1::CustomFieldKind::LongText),
        ("seats", v1::CustomFieldKind::Integer),
        ("amount", v1::CustomFieldKind::Decimal),
        ("vip", v1::CustomFieldKind::Checkbox),
        ("renewal", v1::CustomFieldKind::Date),
    ];
    for (position, (key, kind)) in kinds.into_iter().enumerate() {
        let defined = define(
            &app,
            v1::CustomField {
                position: i32::try_from(position).unwrap() + 10,
                ..declaration(key, kind)
            },
        )
        .await
        .unwrap();
        assert_eq!((defined.key.as_str(), defined.kind), (key, i32::from(kind)));
    }
    define(
        &app,
        v1::CustomField {
            position: 1,
            ..choice("plan", &["free", "pro"])
        },
    )
    .await
    .unwrap();
    define(
        &app,
        v1::CustomField {
            kind: v1::CustomFieldKind::MultipleChoice.into(),
            position: 2,
            ..choice("areas", &["api", "ui"])
        },
    )
    .await
    .unwrap();
    let order = define(
        &app,
        v1::CustomField {
            pattern: "ORD-[0-9]{6}".to_owned(),
            position: 3,
            ..declaration("order_number", v1::CustomFieldKind::Pattern)
        },
    )
    .await
    .unwrap();
    assert_eq!(order.pattern, "ORD-[0-9]{6}");

    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let listed = client(&app)
        .list_custom_fields(agent.request(v1::ListCustomFieldsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<&str> = listed
        .custom_fields
        .iter()
        .map(|field| field.key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "plan",
            "areas",
            "order_number",
            "summary",
            "notes",
            "seats",
            "amount",
            "vip",
            "renewal"
        ]
    );
    let stored = stored(&app).await;
    assert_eq!(stored.len(), 9);
    assert!(stored.contains(&field("plan", "single_choice", "free,pro", false)));
    assert!(stored.contains(&field("areas", "multiple_choice", "api,ui", false)));
    assert!(stored.contains(&field("seats", "integer", "", false)));
}

#[tokio::test]
async fn a_declaration_is_refused_naming_the_part_that_is_wrong() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            declaration("Plan", v1::CustomFieldKind::Text),
            "custom_field.key",
        ),
        (
            declaration("1st", v1::CustomFieldKind::Text),
            "custom_field.key",
        ),
        (
            declaration("plan", v1::CustomFieldKind::Unspecified),
            "custom_field.kind",
        ),
        (
            v1::CustomField {
                title: " ".to_owned(),
                ..declaration("plan", v1::CustomFieldKind::Text)
            },
            "custom_field.title",
        ),
        (choice("plan", &[]), "custom_field.choices"),
        (
            v1::CustomField {
                kind: v1::CustomFieldKind::Text.into(),
                ..choice("plan", &["free"])
            },
            "custom_field.kind",
        ),
        (
            v1::CustomField {
                pattern: "(unclosed".to_owned(),
                ..declaration("order", v1::CustomFieldKind::Pattern)
            },
            "custom_field.pattern",
        ),
        (
            declaration("order", v1::CustomFieldKind::Pattern),
            "custom_field.pattern",
        ),
        (
            v1::CustomField {
                customer_editable: true,
                ..declaration("plan", v1::CustomFieldKind::Text)
            },
            "custom_field.customer_editable",
        ),
    ];
    for (declared, named) in cases {
        let refusal = define(&app, declared.clone()).await.unwrap_err();
        assert_eq!(
            refusal.code(),
            Code::InvalidArgument,
            "{declared:?}: {refusal:?}"
        );
        assert!(
            violated_fields(&refusal).contains(&named.to_owned()),
            "{declared:?} should name {named}: {refusal:?}"
        );
    }
    assert!(stored(&app).await.is_empty());
}

#[tokio::test]
async fn a_key_stays_taken_once_retired_but_another_account_may_use_it() {
    let app = TestApp::spawn().await;
    let plan = define(&app, choice("plan", &["free", "pro"]))
        .await
        .unwrap();
    let taken = define(&app, declaration("plan", v1::CustomFieldKind::Text))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert_reason(&taken, Reason::CustomFieldKeyTaken);
    assert!(taken.message().starts_with("key:"), "{taken:?}");

    let retired = client(&app)
        .retire_custom_field(app.as_admin(v1::RetireCustomFieldRequest {
            id: plan.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(retired.retired && retired.retire_time.is_some());
    let still_taken = define(&app, declaration("plan", v1::CustomFieldKind::Text))
        .await
        .unwrap_err();
    assert_reason(&still_taken, Reason::CustomFieldKeyTaken);
    assert_eq!(
        stored(&app).await,
        [field("plan", "single_choice", "free,pro", true)]
    );

    // Another account's catalogue is its own: same key, and neither sees the other's field.
    let other = app.sign_up_another_account().await;
    let theirs = client(&app)
        .create_custom_field(other.request(v1::CreateCustomFieldRequest {
            custom_field: Some(declaration("plan", v1::CustomFieldKind::Text)),
        }))
        .await
        .unwrap()
        .into_inner();
    let hidden = client(&app)
        .get_custom_field(app.as_admin(v1::GetCustomFieldRequest { id: theirs.id }))
        .await
        .unwrap_err();
    assert_reason(&hidden, Reason::CustomFieldNotFound);
    let listed = client(&app)
        .list_custom_fields(other.request(v1::ListCustomFieldsRequest { show_retired: true }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.custom_fields.len(), 1);
    assert_eq!(
        listed.custom_fields[0].kind,
        i32::from(v1::CustomFieldKind::Text)
    );
}

#[tokio::test]
async fn a_retired_field_is_listed_only_when_asked_for_and_retiring_again_answers_it_as_it_is() {
    let app = TestApp::spawn().await;
    let plan = define(&app, choice("plan", &["free", "pro"]))
        .await
        .unwrap();
    define(&app, declaration("seats", v1::CustomFieldKind::Integer))
        .await
        .unwrap();
    let retire = async || {
        client(&app)
            .retire_custom_field(app.as_admin(v1::RetireCustomFieldRequest {
                id: plan.id.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
    };
    let first = retire().await;
    let again = retire().await;
    assert_eq!(first.retire_time, again.retire_time);
    let list = async |show_retired| -> Vec<String> {
        client(&app)
            .list_custom_fields(app.as_admin(v1::ListCustomFieldsRequest { show_retired }))
            .await
            .unwrap()
            .into_inner()
            .custom_fields
            .into_iter()
            .map(|field| field.key)
            .collect()
    };
    let live = list(false).await;
    let all = list(true).await;
    assert_eq!(live, ["seats"]);
    assert_eq!(all, ["plan", "seats"]);
}

#[tokio::test]
async fn a_fields_key_and_kind_never_change_while_its_options_title_and_flags_do() {
    let app = TestApp::spawn().await;
    let plan = define(&app, choice("plan", &["free", "pro"]))
        .await
        .unwrap();
    for path in ["kind", "key"] {
        let refusal = update(
            &app,
            v1::CustomField {
                id: plan.id.clone(),
                key: "tier".to_owned(),
                kind: v1::CustomFieldKind::Text.into(),
                ..Default::default()
            },
            &[path],
        )
        .await
        .unwrap_err();
        assert_eq!(refusal.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&refusal), ["update_mask"], "{refusal:?}");
    }
    let changed = update(
        &app,
        v1::CustomField {
            id: plan.id.clone(),
            title: "Plan".to_owned(),
            choices: vec!["pro".to_owned(), "enterprise".to_owned()],
            customer_visible: true,
            customer_editable: true,
            required_to_solve: true,
            position: 7,
            ..Default::default()
        },
        &[
            "title",
            "choices",
            "customer_visible",
            "customer_editable",
            "required_to_solve",
            "position",
        ],
    )
    .await
    .unwrap();
    assert_eq!(changed.title, "Plan");
    assert_eq!(changed.choices, ["pro", "enterprise"]);
    assert!(changed.customer_visible && changed.customer_editable && changed.required_to_solve);
    assert_eq!(changed.position, 7);
    assert_eq!(
        stored(&app).await,
        [field("plan", "single_choice", "pro,enterprise", false)]
    );

    // A pattern belongs to the pattern kind only; options to the choice kinds only.
    let refusal = update(
        &app,
        v1::CustomField {
            id: plan.id.clone(),
            pattern: "[0-9]+".to_owned(),
            ..Default::default()
        },
        &["pattern"],
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&refusal), ["custom_field.kind"]);
    let refusal = update(
        &app,
        v1::CustomField {
            id: plan.id.clone(),
            customer_visible: false,
            ..Default::default()
        },
        &["customer_visible"],
    )
    .await
    .unwrap_err();
    assert_eq!(
        violated_fields(&refusal),
        ["custom_field.customer_editable"]
    );
    assert_eq!(
        stored(&app).await,
        [field("plan", "single_choice", "pro,enterprise", false)]
    );
}

#[tokio::test]
async fn an_account_defines_at_most_a_hundred_fields_retired_ones_included() {
    let app = TestApp::spawn().await;
    let mut conn = app.database.connect().await;
    diesel::sql_query(
        "INSERT INTO custom_fields (id, account_id, key, title, kind, retired_at) \
         SELECT gen_random_uuid(), $1, 'field_' || n, 'Field ' || n, 'text', \
                CASE WHEN n % 2 = 0 THEN now() END \
         FROM generate_series(1, $2) AS n",
    )
    .bind::<SqlUuid, _>(app.account_id.as_uuid())
    .bind::<diesel::sql_types::Integer, _>(i32::try_from(MAX_FIELDS_PER_ACCOUNT).unwrap())
    .execute(&mut conn)
    .await
    .unwrap();
    let refusal = define(&app, declaration("one_more", v1::CustomFieldKind::Text))
        .await
        .unwrap_err();
    assert_eq!(refusal.code(), Code::FailedPrecondition);
    assert_reason(&refusal, Reason::CustomFieldLimit);
    assert_eq!(stored(&app).await.len(), MAX_FIELDS_PER_ACCOUNT);
}

#[tokio::test]
async fn customers_read_none_of_the_catalogue_and_agents_change_none_of_it() {
    let app = TestApp::spawn().await;
    let plan = define(&app, choice("plan", &["free", "pro"]))
        .await
        .unwrap();
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let refusal = client(&app)
        .list_custom_fields(customer.request(v1::ListCustomFieldsRequest::default()))
        .await
        .unwrap_err();
    assert_reason(&refusal, Reason::RoleRequired);
    let refusal = client(&app)
        .retire_custom_field(agent.request(v1::RetireCustomFieldRequest {
            id: plan.id.clone(),
        }))
        .await
        .unwrap_err();
    assert_reason(&refusal, Reason::RoleRequired);
    let seen = client(&app)
        .get_custom_field(agent.request(v1::GetCustomFieldRequest { id: plan.id }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.choices, ["free", "pro"]);
    assert_eq!(
        stored(&app).await,
        [field("plan", "single_choice", "free,pro", false)]
    );
}

#[tokio::test]
async fn a_field_is_defined_and_refused_over_rest_through_envoy() {
    let app = TestApp::spawn().await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    let http = reqwest::Client::new();
    let created = http
        .post(envoy.url("/v1/customFields"))
        .bearer_auth(&app.admin.access_token)
        .json(&serde_json::json!({
            "key": "plan",
            "title": "Plan",
            "kind": "CUSTOM_FIELD_KIND_SINGLE_CHOICE",
            "choices": ["free", "pro"],
            "customerVisible": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let body: serde_json::Value = created.json().await.unwrap();
    assert_eq!(body["key"], "plan");
    assert_eq!(body["choices"], serde_json::json!(["free", "pro"]));
    assert_eq!(body["customerVisible"], true);

    let refused = http
        .post(envoy.url("/v1/customFields"))
        .bearer_auth(&app.admin.access_token)
        .json(&serde_json::json!({
            "key": "plan",
            "title": "Plan again",
            "kind": "CUSTOM_FIELD_KIND_TEXT",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::CONFLICT);
    assert_json_reason(&refused.json().await.unwrap(), Reason::CustomFieldKeyTaken);
    assert_eq!(
        stored(&app).await,
        [field("plan", "single_choice", "free,pro", false)]
    );
}
