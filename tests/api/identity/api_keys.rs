//! ApiKeyService and calling with an API key.

use diesel::sql_types::{Bytea, Text};
use diesel_async::RunQueryDsl;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Code;

use crate::support::{TestApp, assert_reason, violated_fields, with_token};

async fn create_key(app: &TestApp, roles: &[v1::UserRole]) -> v1::CreateApiKeyResponse {
    app.api_key("billing sync").roles(roles).create().await
}

#[derive(diesel::QueryableByName)]
struct StoredKey {
    #[diesel(sql_type = Text)]
    prefix: String,
    #[diesel(sql_type = Bytea)]
    secret_hash: Vec<u8>,
}

#[tokio::test]
async fn a_key_is_shown_once_stored_as_a_hash_and_works_with_its_roles() {
    let app = TestApp::spawn().await;
    let created = create_key(&app, &[v1::UserRole::Agent]).await;
    let key = created.api_key.expect("the key");
    assert!(created.secret.starts_with("sd_live_"));
    assert!(created.secret.starts_with(&key.prefix));
    assert!(key.last_use_time.is_none());

    let mut conn = app.database.connect().await;
    let stored: Vec<StoredKey> = diesel::sql_query("SELECT prefix, secret_hash FROM api_keys")
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].prefix, key.prefix);
    assert_eq!(stored[0].secret_hash.len(), 32, "a SHA-256, not the secret");

    app.create_ticket("visible to the key").await;
    let listed = app
        .tickets
        .clone()
        .list_tickets(with_token(
            &created.secret,
            v1::ListTicketsRequest::default(),
        ))
        .await
        .expect("an agent key lists tickets")
        .into_inner();
    assert_eq!(listed.tickets.len(), 1);

    let status = app
        .users
        .clone()
        .create_user(with_token(
            &created.secret,
            v1::CreateUserRequest::default(),
        ))
        .await
        .expect_err("an agent key is no admin");
    assert_eq!(status.code(), Code::PermissionDenied);

    // The use is written beside the call, in the background (best effort): polled, not slept for.
    let recorded_by = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let keys = app
            .api_keys
            .clone()
            .list_api_keys(app.as_admin(v1::ListApiKeysRequest::default()))
            .await
            .expect("listed")
            .into_inner()
            .api_keys;
        assert_eq!(keys.len(), 1);
        if keys[0].last_use_time.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < recorded_by,
            "the use was recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_on_its_next_call() {
    let app = TestApp::spawn().await;
    let created = create_key(&app, &[v1::UserRole::Admin]).await;
    let key = created.api_key.expect("the key");
    app.tickets
        .clone()
        .list_tickets(with_token(
            &created.secret,
            v1::ListTicketsRequest::default(),
        ))
        .await
        .expect("works before");

    let revoked = app
        .api_keys
        .clone()
        .revoke_api_key(app.as_admin(v1::RevokeApiKeyRequest { id: key.id.clone() }))
        .await
        .expect("revoked")
        .into_inner();
    assert!(revoked.revoke_time.is_some());

    let status = app
        .tickets
        .clone()
        .list_tickets(with_token(
            &created.secret,
            v1::ListTicketsRequest::default(),
        ))
        .await
        .expect_err("refused after");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_reason(&status, Reason::ApiKeyRevoked);
}

#[tokio::test]
async fn keys_need_a_name_and_staff_roles_and_only_admins_manage_them() {
    let app = TestApp::spawn().await;
    let status = app
        .api_key("")
        .roles(&[v1::UserRole::Customer])
        .try_create()
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["api_key.name", "api_key.roles"]);

    let agent = app.add_user(&app.admin, v1::UserRole::Agent).await;
    let status = app
        .api_keys
        .clone()
        .list_api_keys(agent.request(v1::ListApiKeysRequest::default()))
        .await
        .expect_err("agents do not manage keys");
    assert_eq!(status.code(), Code::PermissionDenied);
}
