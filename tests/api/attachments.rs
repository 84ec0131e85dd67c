//! Attachments against a real S3-compatible store that verifies SigV4 (SeaweedFS): presigned
//! uploads and downloads, what the store refuses, what completion refuses, tenancy, the sweeper,
//! and the store dying and coming back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use supportdesk::errors::Reason;
use supportdesk::service::attachments::max_pieces_held;
use supportdesk::wire::proto::v1;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::support::attachments::{
    direct_upload, http, png_bytes, put, put_with, ready_attachment, sha256_hex, streamed,
    upload_request, upload_through, uploaded,
};
use crate::support::storage::{
    SHARED_STORAGE, StorageServer, TEST_ACCESS_KEY, TEST_BUCKET, TEST_SECRET_KEY,
};
use crate::support::store_proxy::StoreProxy;
use crate::support::{PATIENCE, Scrape, TestApp, assert_reason, details, wait_until};

/// A URL the test signs itself with the store's credentials (a client the service never saw),
/// through rusty-s3's signer directly.
fn signed_by_the_test(app_store: &url::Url, method: &str, key: &str) -> url::Url {
    use rusty_s3::S3Action;
    let bucket = rusty_s3::Bucket::new(
        app_store.clone(),
        rusty_s3::UrlStyle::Path,
        TEST_BUCKET,
        "us-east-1",
    )
    .unwrap();
    let credentials = rusty_s3::Credentials::new(TEST_ACCESS_KEY, TEST_SECRET_KEY);
    let ttl = Duration::from_secs(60);
    match method {
        "GET" => rusty_s3::actions::GetObject::new(&bucket, Some(&credentials), key).sign(ttl),
        "PUT" => rusty_s3::actions::PutObject::new(&bucket, Some(&credentials), key).sign(ttl),
        other => panic!("no signed {other} in these tests"),
    }
}

/// The HTTP status of a GET of the object `key`, signed by the test.
async fn object_status(app: &TestApp, key: &str) -> u16 {
    let endpoint = &app.settings.attachments.storage.as_ref().unwrap().endpoint;
    http()
        .get(signed_by_the_test(endpoint, "GET", key))
        .send()
        .await
        .expect("the store answers")
        .status()
        .as_u16()
}

#[derive(diesel::QueryableByName)]
struct Stored {
    #[diesel(sql_type = Text)]
    object_key: String,
    #[diesel(sql_type = Text)]
    state: String,
}

/// The attachment's object key and state as PostgreSQL holds them; `None` when no row is left.
async fn stored(app: &TestApp, id: &str) -> Option<Stored> {
    let mut conn = app.database.connect().await;
    diesel::sql_query("SELECT object_key, state FROM attachments WHERE id = $1")
        .bind::<SqlUuid, _>(uuid::Uuid::parse_str(id).unwrap())
        .load::<Stored>(&mut conn)
        .await
        .expect("read the attachment")
        .pop()
}

#[tokio::test]
async fn a_file_uploaded_through_its_url_downloads_with_the_same_bytes_and_forced_headers() {
    let app = TestApp::spawn_with(crate::support::with_metrics).await;
    let ticket = app.create_ticket("a screenshot").await;
    let bytes = png_bytes(7);
    let started = app
        .attachments
        .clone()
        .create_upload(app.as_admin(upload_request(
            &ticket.id,
            "../../Screen shot \u{202E}gnp.html",
            "image/png",
            &bytes,
        )))
        .await
        .expect("the upload starts")
        .into_inner();
    let pending = started.attachment.clone().unwrap();
    assert_eq!(pending.state(), v1::AttachmentState::Pending);
    assert_eq!(pending.filename, "Screen shot gnp.html");
    let key = stored(&app, &pending.id).await.unwrap().object_key;
    assert!(
        key.starts_with(&format!("{}/", app.account_id)),
        "the service chose {key}"
    );
    let expires_in = started.expire_time.unwrap().seconds - chrono::Utc::now().timestamp();
    assert!((0..=900).contains(&expires_in), "{expires_in}");

    let answer = put(&started, bytes.clone()).await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    let ready = app
        .attachments
        .clone()
        .complete_upload(app.as_admin(v1::CompleteUploadRequest {
            id: pending.id.clone(),
        }))
        .await
        .expect("completed")
        .into_inner();
    assert_eq!(ready.state(), v1::AttachmentState::Ready);
    assert_eq!(ready.size_bytes, bytes.len() as i64);
    assert_eq!(stored(&app, &ready.id).await.unwrap().state, "ready");
    let scrape = crate::support::Scrape::of(&app).await;
    for (series, count) in [
        (
            "supportdesk_attachment_uploads_total{outcome=\"started\"}",
            1,
        ),
        (
            "supportdesk_attachment_uploads_total{outcome=\"completed\"}",
            1,
        ),
        (
            "supportdesk_attachment_uploads_total{outcome=\"mismatch\"}",
            0,
        ),
        (
            "supportdesk_attachment_upload_bytes_total{outcome=\"completed\"}",
            bytes.len() as u64,
        ),
    ] {
        assert_eq!(scrape.get(series), count, "{series}");
    }
    let listed = app
        .attachments
        .clone()
        .list_attachments(app.as_admin(v1::ListAttachmentsRequest {
            ticket_id: ticket.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.attachments, vec![ready.clone()]);

    let download = app
        .attachments
        .clone()
        .get_download_url(app.as_admin(v1::GetDownloadUrlRequest { id: ready.id }))
        .await
        .unwrap()
        .into_inner();
    let expires_in = download.expire_time.unwrap().seconds - chrono::Utc::now().timestamp();
    assert!((0..=300).contains(&expires_in), "{expires_in}");
    let response = http().get(&download.download_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"Screen shot gnp.html\"; filename*=UTF-8''Screen%20shot%20gnp.html"
    );
    assert_eq!(response.bytes().await.unwrap().to_vec(), bytes);
}

#[tokio::test]
async fn the_store_refuses_a_tampered_url_and_a_length_or_type_other_than_signed() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("refusals").await;
    let bytes = png_bytes(3);
    let started = app
        .attachments
        .clone()
        .create_upload(app.as_admin(upload_request(&ticket.id, "a.png", "image/png", &bytes)))
        .await
        .unwrap()
        .into_inner();

    let mut tampered = started.clone();
    tampered.upload_url = started
        .upload_url
        .replace("X-Amz-Expires=900", "X-Amz-Expires=901");
    assert_ne!(tampered.upload_url, started.upload_url);
    assert_eq!(put(&tampered, bytes.clone()).await.status(), 403);

    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(put(&started, longer).await.status(), 403);
    assert_eq!(
        put_with(&started, bytes.clone(), &[("content-type", "text/html")])
            .await
            .status(),
        403
    );
    let key = stored(&app, &started.attachment.unwrap().id)
        .await
        .unwrap()
        .object_key;
    assert_eq!(object_status(&app, &key).await, 404, "nothing was stored");
}

#[tokio::test]
async fn the_store_refuses_an_upload_url_once_it_expired() {
    let app = TestApp::spawn_with(|settings| {
        settings.attachments.upload_url_ttl = Duration::from_secs(1);
    })
    .await;
    let ticket = app.create_ticket("late").await;
    let bytes = png_bytes(4);
    let started = app
        .attachments
        .clone()
        .create_upload(app.as_admin(upload_request(&ticket.id, "a.png", "image/png", &bytes)))
        .await
        .unwrap()
        .into_inner();
    // X-Amz-Date has a one-second resolution: wait past the second after expiry.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(put(&started, bytes).await.status(), 403);
}

#[tokio::test]
async fn an_object_that_differs_from_its_declaration_is_refused_at_completion_and_deleted() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("mismatch").await;
    let declared = png_bytes(5);
    let started = app
        .attachments
        .clone()
        .create_upload(app.as_admin(upload_request(&ticket.id, "a.png", "image/png", &declared)))
        .await
        .unwrap()
        .into_inner();
    let id = started.attachment.unwrap().id;
    let key = stored(&app, &id).await.unwrap().object_key;
    // A client that bypasses the signed URL (the store's own credentials): other bytes, shorter.
    let endpoint = &app.settings.attachments.storage.as_ref().unwrap().endpoint;
    let other = png_bytes(6)[..1000].to_vec();
    let written = http()
        .put(signed_by_the_test(endpoint, "PUT", &key))
        .body(other)
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 200);

    let status = app
        .attachments
        .clone()
        .complete_upload(app.as_admin(v1::CompleteUploadRequest { id: id.clone() }))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_reason(&status, Reason::UploadMismatch);
    let violations: Vec<(String, String)> = details(&status)
        .precondition_failure()
        .expect("PreconditionFailure")
        .violations
        .iter()
        .map(|violation| (violation.r#type.clone(), violation.description.clone()))
        .collect();
    assert_eq!(
        violations[0],
        (
            "UPLOAD_SIZE_BYTES".to_owned(),
            format!(
                "declared {} bytes, the stored object has 1000",
                declared.len()
            )
        )
    );
    assert_eq!(object_status(&app, &key).await, 404, "the object is gone");
    assert_eq!(stored(&app, &id).await.unwrap().state, "pending");
}

#[tokio::test]
async fn a_checksum_other_than_declared_is_refused_at_completion_and_the_object_deleted() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("checksum").await;
    let bytes = png_bytes(8);
    let mut request = upload_request(&ticket.id, "a.png", "image/png", &bytes);
    let mut other = bytes.clone();
    *other.last_mut().unwrap() ^= 0xFF;
    let started = app
        .attachments
        .clone()
        .create_upload(app.as_admin(request.clone()))
        .await
        .unwrap()
        .into_inner();
    let id = started.attachment.clone().unwrap().id;
    let key = stored(&app, &id).await.unwrap().object_key;
    let answer = put(&started, other.clone()).await;
    if answer.status().is_success() {
        // A store that does not check the signed checksum itself: completion does.
        let status = app
            .attachments
            .clone()
            .complete_upload(app.as_admin(v1::CompleteUploadRequest { id: id.clone() }))
            .await
            .expect_err("refused");
        assert_reason(&status, Reason::UploadMismatch);
        assert!(status.message().contains("sha256"), "{}", status.message());
    } else {
        assert_eq!(
            answer.status(),
            400,
            "the store refuses the wrong bytes itself"
        );
    }
    assert_eq!(object_status(&app, &key).await, 404, "no object is left");
    request.sha256 = "0".repeat(63);
    let status = app
        .attachments
        .clone()
        .create_upload(app.as_admin(request))
        .await
        .expect_err("a malformed digest");
    assert_reason(&status, Reason::InvalidArgument);
}

/// A refused upload whose object the store fails to delete stays with its PENDING attachment,
/// never queued for the sweeper on its own: the client's corrected PUT to the same URL writes
/// that object again, and a queued deletion would take it from the completed attachment.
/// Completes attachment `id` READY and downloads exactly `declared` from it.
async fn completes_with(app: &TestApp, id: String, declared: &[u8]) {
    let ready = complete_while_the_store_is_up(app, &id).await;
    assert_eq!(ready.state(), v1::AttachmentState::Ready);
    let download = app
        .attachments
        .clone()
        .get_download_url(app.as_admin(v1::GetDownloadUrlRequest { id }))
        .await
        .unwrap()
        .into_inner();
    let response = http().get(&download.download_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().to_vec(), declared);
}

/// An app whose own calls to the store go through `proxy`, while the URLs it signs lead to the
/// store itself.
async fn behind_the_proxy(proxy: &StoreProxy) -> TestApp {
    TestApp::spawn_with(|settings| {
        let storage = settings.attachments.storage.as_mut().unwrap();
        storage.public_endpoint = Some(storage.endpoint.clone());
        storage.endpoint = proxy.endpoint();
    })
    .await
}

/// An upload declared as `declared` whose object holds other bytes (1,000 of the PNG of `seed`),
/// written with the store's own credentials: the upload, its attachment's id and object key.
async fn holding_another_file(
    app: &TestApp,
    ticket_id: &str,
    declared: &[u8],
    seed: u8,
) -> (v1::CreateUploadResponse, String, String) {
    let started = app
        .attachments
        .clone()
        .create_upload(app.as_admin(upload_request(ticket_id, "a.png", "image/png", declared)))
        .await
        .unwrap()
        .into_inner();
    let id = started.attachment.clone().unwrap().id;
    let key = stored(app, &id).await.unwrap().object_key;
    let written = http()
        .put(signed_by_the_test(&SHARED_STORAGE.endpoint(), "PUT", &key))
        .body(png_bytes(seed)[..1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 200);
    (started, id, key)
}

#[tokio::test]
async fn a_refused_upload_the_store_fails_to_delete_is_not_queued_and_the_corrected_upload_keeps_its_bytes()
 {
    let proxy = StoreProxy::start(SHARED_STORAGE.endpoint()).await;
    let app = behind_the_proxy(&proxy).await;
    let ticket = app.create_ticket("a delete the store fails").await;
    let declared = png_bytes(9);
    let (started, id, key) = holding_another_file(&app, &ticket.id, &declared, 10).await;

    proxy.refuse_deletes(true);
    let status = app
        .attachments
        .clone()
        .complete_upload(app.as_admin(v1::CompleteUploadRequest { id: id.clone() }))
        .await
        .expect_err("refused");
    assert_reason(&status, Reason::UploadMismatch);
    assert_eq!(proxy.deletes_refused(), 1);
    proxy.refuse_deletes(false);
    assert_eq!(queued_deletions(&app).await, 0, "nothing is queued");
    assert_eq!(stored(&app, &id).await.unwrap().state, "pending");
    assert_eq!(
        object_status(&app, &key).await,
        200,
        "kept under its attachment"
    );

    let answer = put(&started, declared.clone()).await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    completes_with(&app, id, &declared).await;
}

#[tokio::test]
async fn a_corrected_file_put_while_the_refused_one_is_deleted_is_kept_and_completes() {
    let proxy = StoreProxy::start(SHARED_STORAGE.endpoint()).await;
    let app = behind_the_proxy(&proxy).await;
    let ticket = app.create_ticket("corrected while checked").await;
    let declared = png_bytes(11);
    let (started, id, key) = holding_another_file(&app, &ticket.id, &declared, 12).await;

    // The wrong file is checked and refused; its delete is held on its way to the store...
    proxy.hold_deletes();
    let mut attachments = app.attachments.clone();
    let request = app.as_admin(v1::CompleteUploadRequest { id: id.clone() });
    let completing = tokio::spawn(async move { attachments.complete_upload(request).await });
    wait_until(
        "the refused file's delete is on its way",
        PATIENCE,
        async || proxy.deletes_held() == 1,
    )
    .await;
    // ...while the client's corrected file lands.
    let answer = put(&started, declared.clone()).await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    proxy.release_a_delete();
    let refused = completing
        .await
        .unwrap()
        .expect_err("the first file differs");
    assert_reason(&refused, Reason::UploadMismatch);
    assert!(
        refused.message().contains("the new file was kept"),
        "{}",
        refused.message()
    );

    // The corrected file is still there, and completes.
    assert_eq!(object_status(&app, &key).await, 200, "kept");
    completes_with(&app, id, &declared).await;
}

/// Migration 25 forgets the deletions earlier versions queued for objects an attachment still
/// holds, and only those.
#[tokio::test]
async fn migration_25_forgets_only_the_queued_deletions_of_objects_an_attachment_holds() {
    let app = TestApp::spawn().await;
    let attachment = ready_attachment(&app).await;
    let held = stored(&app, &attachment.id).await.unwrap().object_key;
    let mut conn = app.database.connect().await;
    diesel::sql_query("INSERT INTO storage_deletions (object_key) VALUES ($1), ('gone/object')")
        .bind::<Text, _>(&held)
        .execute(&mut conn)
        .await
        .unwrap();
    let migration = std::fs::read_to_string(
        crate::support::repository_root()
            .join("migrations/2026-12-01-000025_no_deletion_of_a_held_object/up.sql"),
    )
    .unwrap();
    diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, &migration)
        .await
        .unwrap();
    let left: Vec<String> = diesel::sql_query("SELECT object_key FROM storage_deletions")
        .load::<QueuedKey>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.object_key)
        .collect();
    assert_eq!(left, vec!["gone/object".to_owned()]);
}

#[derive(diesel::QueryableByName)]
struct QueuedKey {
    #[diesel(sql_type = Text)]
    object_key: String,
}

#[tokio::test]
async fn an_html_file_named_png_is_refused_at_completion() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("html").await;
    let html = b"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>".to_vec();
    let started = app
        .attachments
        .clone()
        .create_upload(app.as_admin(upload_request(&ticket.id, "cat.png", "image/png", &html)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(put(&started, html).await.status(), 200);
    let status = app
        .attachments
        .clone()
        .complete_upload(app.as_admin(v1::CompleteUploadRequest {
            id: started.attachment.unwrap().id,
        }))
        .await
        .expect_err("refused");
    assert_reason(&status, Reason::UploadMismatch);
    let kinds: Vec<String> = details(&status)
        .precondition_failure()
        .unwrap()
        .violations
        .iter()
        .map(|violation| violation.r#type.clone())
        .collect();
    assert_eq!(kinds, vec!["UPLOAD_CONTENT".to_owned()]);
}

#[tokio::test]
async fn completing_before_uploading_or_downloading_a_pending_file_is_refused() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("early").await;
    let bytes = png_bytes(9);
    let started = app
        .attachments
        .clone()
        .create_upload(app.as_admin(upload_request(&ticket.id, "a.png", "image/png", &bytes)))
        .await
        .unwrap()
        .into_inner();
    let id = started.attachment.unwrap().id;
    let status = app
        .attachments
        .clone()
        .complete_upload(app.as_admin(v1::CompleteUploadRequest { id: id.clone() }))
        .await
        .expect_err("nothing uploaded");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_reason(&status, Reason::UploadIncomplete);
    let status = app
        .attachments
        .clone()
        .get_download_url(app.as_admin(v1::GetDownloadUrlRequest { id }))
        .await
        .expect_err("still pending");
    assert_reason(&status, Reason::UploadIncomplete);
}

#[tokio::test]
async fn another_accounts_attachment_answers_exactly_like_a_missing_one() {
    let app = TestApp::spawn().await;
    let attachment = ready_attachment(&app).await;
    let other = app.sign_up_another_account().await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let foreign = app
        .attachments
        .clone()
        .get_attachment(other.request(v1::GetAttachmentRequest {
            id: attachment.id.clone(),
        }))
        .await
        .expect_err("hidden");
    let missing = app
        .attachments
        .clone()
        .get_attachment(other.request(v1::GetAttachmentRequest {
            id: unknown.clone(),
        }))
        .await
        .expect_err("missing");
    assert_eq!(foreign.code(), Code::NotFound);
    assert_reason(&foreign, Reason::AttachmentNotFound);
    assert_eq!(
        foreign.message().replace(&attachment.id, "ID"),
        missing.message().replace(&unknown, "ID")
    );
    let bytes = |status: &tonic::Status, id: &str| {
        String::from_utf8_lossy(status.details()).replace(id, "ID")
    };
    assert_eq!(bytes(&foreign, &attachment.id), bytes(&missing, &unknown));
    for status in [
        app.attachments
            .clone()
            .get_download_url(other.request(v1::GetDownloadUrlRequest {
                id: attachment.id.clone(),
            }))
            .await
            .expect_err("hidden"),
        app.attachments
            .clone()
            .delete_attachment(other.request(v1::DeleteAttachmentRequest {
                id: attachment.id.clone(),
            }))
            .await
            .expect_err("hidden"),
        app.attachments
            .clone()
            .complete_upload(other.request(v1::CompleteUploadRequest {
                id: attachment.id.clone(),
            }))
            .await
            .expect_err("hidden"),
    ] {
        assert_reason(&status, Reason::AttachmentNotFound);
    }
}

#[tokio::test]
async fn a_customer_sees_files_of_their_own_tickets_but_never_those_of_internal_notes() {
    let app = TestApp::spawn().await;
    let customer = app.add_user(&app.admin, v1::UserRole::Customer).await;
    let mut request = crate::support::valid_create_request("mine");
    request.ticket.as_mut().unwrap().requester_email = customer.email.clone();
    let ticket = app
        .tickets
        .clone()
        .create_ticket(app.as_admin(request))
        .await
        .unwrap()
        .into_inner();
    let note = app.comment(&ticket.id, "internal: see the log").add().await;
    let log = b"2026-11-24 error: disk full\n".to_vec();
    let mut on_note = upload_request(&ticket.id, "server.log", "text/plain", &log);
    on_note.comment_id = note.id.clone();
    let internal = uploaded(&app, &app.admin, on_note.clone(), log.clone()).await;
    let bytes = png_bytes(2);
    let own = uploaded(
        &app,
        &customer,
        upload_request(&ticket.id, "mine.png", "image/png", &bytes),
        bytes,
    )
    .await;

    let listed = app
        .attachments
        .clone()
        .list_attachments(customer.request(v1::ListAttachmentsRequest {
            ticket_id: ticket.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .attachments;
    assert_eq!(listed, vec![own.clone()]);
    let status = app
        .attachments
        .clone()
        .get_attachment(customer.request(v1::GetAttachmentRequest {
            id: internal.id.clone(),
        }))
        .await
        .expect_err("an internal note's file");
    assert_reason(&status, Reason::AttachmentNotFound);
    let status = app
        .attachments
        .clone()
        .create_upload(customer.request(on_note))
        .await
        .expect_err("a customer cannot attach to an internal note");
    assert_reason(&status, Reason::InvalidArgument);
    let by_agents = app
        .attachments
        .clone()
        .list_attachments(app.as_admin(v1::ListAttachmentsRequest {
            ticket_id: ticket.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .attachments;
    assert_eq!(by_agents, vec![internal, own]);
}

#[tokio::test]
async fn deleting_an_attachment_hides_it_at_once_and_the_sweeper_deletes_its_object() {
    let app = TestApp::spawn_with(|settings| {
        // Its object is deleted once its upload URL has expired (a test below).
        settings.attachments.upload_url_ttl = Duration::from_secs(5);
        settings.attachments.abandon_grace = Duration::ZERO;
        settings.attachments.sweep_interval = Duration::from_millis(200);
    })
    .await;
    let attachment = ready_attachment(&app).await;
    let key = stored(&app, &attachment.id).await.unwrap().object_key;
    assert_eq!(object_status(&app, &key).await, 200);
    app.attachments
        .clone()
        .delete_attachment(app.as_admin(v1::DeleteAttachmentRequest {
            id: attachment.id.clone(),
        }))
        .await
        .expect("deleted");
    assert!(stored(&app, &attachment.id).await.is_none());
    let status = app
        .attachments
        .clone()
        .get_attachment(app.as_admin(v1::GetAttachmentRequest {
            id: attachment.id.clone(),
        }))
        .await
        .expect_err("gone");
    assert_reason(&status, Reason::AttachmentNotFound);
    wait_until("the object is deleted", PATIENCE, || async {
        object_status(&app, &key).await == 404
    })
    .await;
    wait_until("the deletion is forgotten", PATIENCE, || async {
        queued_deletions(&app).await == 0
    })
    .await;
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    count: i64,
}

async fn queued_deletions(app: &TestApp) -> i64 {
    let mut conn = app.database.connect().await;
    diesel::sql_query("SELECT count(*) AS count FROM storage_deletions")
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .count
}

#[tokio::test]
async fn an_upload_never_completed_is_swept_with_its_object_after_its_url_expired() {
    let app = TestApp::spawn_with(|settings| {
        // Long enough for the PUT below to reach the store before the URL expires on a loaded
        // machine (1 s was not, once); the sweep then waits for the expiry.
        settings.attachments.upload_url_ttl = Duration::from_secs(5);
        settings.attachments.abandon_grace = Duration::ZERO;
        settings.attachments.sweep_interval = Duration::from_millis(200);
    })
    .await;
    let ticket = app.create_ticket("abandoned").await;
    let bytes = png_bytes(11);
    let started = app
        .attachments
        .clone()
        .create_upload(app.as_admin(upload_request(&ticket.id, "a.png", "image/png", &bytes)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(put(&started, bytes).await.status(), 200);
    let id = started.attachment.unwrap().id;
    let key = stored(&app, &id).await.unwrap().object_key;
    wait_until("the abandoned upload is swept", PATIENCE, || async {
        stored(&app, &id).await.is_none()
    })
    .await;
    wait_until("its object is deleted", PATIENCE, || async {
        object_status(&app, &key).await == 404
    })
    .await;
}

/// Whether the upload is completed (READY) before it is deleted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DeletedWhen {
    Pending,
    Ready,
}

/// An upload deleted while its URL still writes: the object a client PUTs afterwards is deleted
/// once the URL has expired, not lost to a deletion that ran before the PUT arrived.
async fn deleted_while_its_url_writes_loses_the_object_put_after_its_deletion(when: DeletedWhen) {
    let app = TestApp::spawn_with(|settings| {
        // Long enough for the PUT below to reach the store before the URL expires on a loaded
        // machine; the deletion then waits for the expiry.
        settings.attachments.upload_url_ttl = Duration::from_secs(5);
        settings.attachments.abandon_grace = Duration::ZERO;
        settings.attachments.sweep_interval = Duration::from_millis(200);
    })
    .await;
    let ticket = app.create_ticket("deleted while its URL writes").await;
    let bytes = png_bytes(12);
    let started = app
        .attachments
        .clone()
        .create_upload(app.as_admin(upload_request(&ticket.id, "a.png", "image/png", &bytes)))
        .await
        .unwrap()
        .into_inner();
    let id = started.attachment.clone().unwrap().id;
    let key = stored(&app, &id).await.unwrap().object_key;
    if when == DeletedWhen::Ready {
        assert_eq!(put(&started, bytes.clone()).await.status(), 200);
        completes_with(&app, id.clone(), &bytes).await;
    }
    app.attachments
        .clone()
        .delete_attachment(app.as_admin(v1::DeleteAttachmentRequest { id: id.clone() }))
        .await
        .expect("deleted");
    let expires = started.expire_time.unwrap().seconds;
    assert_eq!(
        crate::support::count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM storage_deletions \
                 WHERE object_key = '{key}' AND due_at >= to_timestamp({expires})"
            ),
        )
        .await,
        1,
        "the deletion is due once the URL has expired"
    );

    assert_eq!(put(&started, bytes).await.status(), 200);
    assert_eq!(object_status(&app, &key).await, 200);
    wait_until(
        "the object put after the deletion is deleted",
        PATIENCE,
        || async { object_status(&app, &key).await == 404 },
    )
    .await;
    wait_until("the deletion is forgotten", PATIENCE, || async {
        queued_deletions(&app).await == 0
    })
    .await;
}

#[tokio::test]
async fn an_upload_deleted_while_pending_loses_the_object_put_after_its_deletion_once_its_url_expired()
 {
    deleted_while_its_url_writes_loses_the_object_put_after_its_deletion(DeletedWhen::Pending)
        .await;
}

/// A READY file's upload URL writes until it expires too (a client retrying its upload, or a
/// CreateUpload replayed with its key, which hands the URL out again).
#[tokio::test]
async fn a_file_deleted_while_its_upload_url_still_writes_loses_the_object_put_after_its_deletion()
{
    deleted_while_its_url_writes_loses_the_object_put_after_its_deletion(DeletedWhen::Ready).await;
}

#[tokio::test]
async fn a_ticket_takes_at_most_its_limit_of_attachments() {
    let app = TestApp::spawn_with(|settings| {
        settings.attachments.max_per_ticket = 1;
        settings.attachments.max_bytes = 5_000;
    })
    .await;
    let ticket = app.create_ticket("limit").await;
    let bytes = png_bytes(12);
    let request = upload_request(&ticket.id, "a.png", "image/png", &bytes);
    app.attachments
        .clone()
        .create_upload(app.as_admin(request.clone()))
        .await
        .expect("the first");
    let status = app
        .attachments
        .clone()
        .create_upload(app.as_admin(request.clone()))
        .await
        .expect_err("the second");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_reason(&status, Reason::AttachmentLimit);

    let other = app.create_ticket("too big").await;
    let mut large = upload_request(&other.id, "a.png", "image/png", &bytes);
    large.size_bytes = 5_001;
    let status = app
        .attachments
        .clone()
        .create_upload(app.as_admin(large))
        .await
        .expect_err("over the size limit");
    assert_reason(&status, Reason::InvalidArgument);
    let mut html = upload_request(&other.id, "a.html", "text/html", &bytes);
    html.filename = "\u{202E}".to_owned();
    let status = app
        .attachments
        .clone()
        .create_upload(app.as_admin(html))
        .await
        .expect_err("not allowed");
    let fields: Vec<String> = details(&status)
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|violation| violation.field.clone())
        .collect();
    assert_eq!(fields, vec!["filename", "content_type"]);
}

#[tokio::test]
async fn without_object_storage_attachments_are_not_configured_and_not_serving() {
    let app = TestApp::spawn_with(|settings| settings.attachments.storage = None).await;
    app.wait_for_health("Serving", PATIENCE).await;
    assert_eq!(
        app.health_of("supportdesk.v1.AttachmentService").await,
        "NotServing"
    );
    let ticket = app.create_ticket("no storage").await;
    let bytes = png_bytes(13);
    let status = app
        .attachments
        .clone()
        .create_upload(app.as_admin(upload_request(&ticket.id, "a.png", "image/png", &bytes)))
        .await
        .expect_err("not configured");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_reason(&status, Reason::AttachmentsNotConfigured);
}

#[tokio::test]
async fn when_the_store_dies_attachments_answer_unavailable_and_recover_without_a_restart() {
    let mut store = tokio::task::spawn_blocking(StorageServer::start)
        .await
        .unwrap();
    let app = TestApp::spawn_with(|settings| {
        store.configure(settings);
        crate::support::with_metrics(settings);
    })
    .await;
    let service = "supportdesk.v1.AttachmentService";
    wait_until("attachments serve", PATIENCE, || async {
        app.health_of(service).await == "Serving"
    })
    .await;
    let attachment = ready_attachment(&app).await;
    let breaker = |state: &str| {
        format!(r#"supportdesk_provider_breaker_state{{provider="storage",state="{state}"}}"#)
    };
    assert_eq!(Scrape::of(&app).await.get(&breaker("closed")), 1);

    store.kill();
    wait_until("attachments stop serving", PATIENCE, || async {
        app.health_of(service).await == "NotServing"
    })
    .await;
    wait_until("the storage breaker is seen open", PATIENCE, || async {
        Scrape::of(&app).await.get(&breaker("open")) == 1
    })
    .await;
    assert_eq!(
        app.health_of("supportdesk.v1.TicketService").await,
        "Serving"
    );
    let ticket = app.create_ticket("while the store is down").await;
    let bytes = png_bytes(14);
    let started = tokio::time::Instant::now();
    let mut request = app.as_admin(upload_request(&ticket.id, "a.png", "image/png", &bytes));
    request.set_timeout(Duration::from_secs(3));
    let status = app
        .attachments
        .clone()
        .create_upload(request)
        .await
        .expect_err("the store is down");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(status.code(), Code::Unavailable);
    assert_reason(&status, Reason::StorageUnavailable);
    assert!(details(&status).retry_info().is_some(), "RetryInfo");
    let got = app
        .attachments
        .clone()
        .get_attachment(app.as_admin(v1::GetAttachmentRequest {
            id: attachment.id.clone(),
        }))
        .await
        .expect("reads need no storage")
        .into_inner();
    assert_eq!(got, attachment);

    tokio::task::spawn_blocking(move || {
        store.restart();
        store
    })
    .await
    .map(|store| {
        // Kept alive until the end of the test.
        std::mem::forget(store);
    })
    .unwrap();
    wait_until("attachments serve again", PATIENCE, || async {
        app.health_of(service).await == "Serving"
    })
    .await;
    let bytes = png_bytes(15);
    let again = uploaded(
        &app,
        &app.admin,
        upload_request(&ticket.id, "b.png", "image/png", &bytes),
        bytes,
    )
    .await;
    assert_eq!(again.state(), v1::AttachmentState::Ready);
}

/// A call cut short by its request's deadline, sooner than the store's own timeout, tells the
/// breaker nothing: impatient clients cannot open it for every account. The service's own probe,
/// on its own time, still counts a store that does not answer.
#[tokio::test]
async fn a_request_deadline_shorter_than_the_stores_timeout_never_opens_the_breaker() {
    let store = tokio::task::spawn_blocking(StorageServer::start)
        .await
        .unwrap();
    let settings = supportdesk::configuration::StorageSettings {
        timeout: Duration::from_secs(5),
        breaker_failure_threshold: 3,
        breaker_cool_down: Duration::from_secs(60),
        ..store.settings()
    };
    let storage = supportdesk::providers::storage::ObjectStorage::new(&settings).unwrap();
    let soon = || tokio::time::Instant::now() + Duration::from_millis(200);
    storage.probe(soon()).await.expect("the store answers");

    store.pause();
    for _ in 0..5 {
        let error = storage
            .inspect("some/key", 10, soon())
            .await
            .expect_err("the store is stopped");
        assert!(
            matches!(
                error,
                supportdesk::providers::storage::StorageError::DeadlineExceeded
            ),
            "{error:?}"
        );
    }
    assert!(
        storage.is_available(),
        "five impatient requests left it closed"
    );
    for _ in 0..3 {
        let error = storage
            .probe(soon())
            .await
            .expect_err("the store is stopped");
        assert!(
            matches!(
                error,
                supportdesk::providers::storage::StorageError::Unavailable(_)
            ),
            "{error:?}"
        );
    }
    assert!(!storage.is_available(), "three probes unanswered opened it");
    store.resume();
}

#[tokio::test]
async fn the_storage_breaker_opens_after_consecutive_failures_sends_nothing_while_open_and_closes_on_a_probe()
 {
    let mut store = tokio::task::spawn_blocking(StorageServer::start)
        .await
        .unwrap();
    let settings = supportdesk::configuration::StorageSettings {
        breaker_failure_threshold: 3,
        breaker_cool_down: Duration::from_millis(300),
        ..store.settings()
    };
    let storage = supportdesk::providers::storage::ObjectStorage::new(&settings).unwrap();
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(2);
    storage.probe(deadline()).await.expect("the store answers");
    assert!(storage.is_available());

    store.kill();
    for _ in 0..3 {
        let error = storage
            .probe(deadline())
            .await
            .expect_err("the store is dead");
        assert!(
            matches!(
                error,
                supportdesk::providers::storage::StorageError::Unavailable(_)
            ),
            "{error:?}"
        );
    }
    assert!(!storage.is_available(), "three failures in a row open it");
    let sent = storage.calls_sent();
    assert_eq!(sent, 4);
    // While open every call is refused at once, and none reaches the store.
    for _ in 0..5 {
        assert!(matches!(
            storage.delete("some/key", deadline()).await,
            Err(supportdesk::providers::storage::StorageError::Open { .. })
        ));
        assert!(matches!(
            storage.inspect("some/key", 10, deadline()).await,
            Err(supportdesk::providers::storage::StorageError::Open { .. })
        ));
    }
    assert_eq!(storage.calls_sent(), sent, "nothing was sent while open");

    let store = tokio::task::spawn_blocking(move || {
        store.restart();
        store
    })
    .await
    .unwrap();
    wait_until("the cool-down ends", PATIENCE, || async {
        storage.refusing_for() == Some(Duration::ZERO)
    })
    .await;
    storage
        .probe(deadline())
        .await
        .expect("the half-open probe reaches the store again");
    assert!(storage.is_available(), "its success closed the breaker");
    assert_eq!(storage.refusing_for(), None);
    assert_eq!(storage.calls_sent(), sent + 1, "one probe went through");
    assert_eq!(storage.delete("some/key", deadline()).await.ok(), Some(()));
    drop(store);
}

/// Whatever is left of a direct upload on `ticket_id` of the admin's account: attachment rows,
/// queued object deletions, and objects in the store under the account.
async fn left_of_direct_uploads(app: &TestApp, ticket_id: &str) -> (i64, i64, usize) {
    let (rows, _) = attachments_of(app, ticket_id).await;
    let queued = crate::support::count_of(
        &app.database,
        "SELECT count(*) AS count FROM storage_deletions",
    )
    .await;
    let objects = objects_under(app, &format!("{}/", app.admin.account_id)).await;
    (rows, queued, objects)
}

/// The metrics of direct uploads: messages received, the largest piece, the most pieces and
/// bytes one upload held at once.
fn direct_upload_metrics(scrape: &Scrape) -> (u64, u64, u64, u64) {
    (
        scrape.get("supportdesk_attachment_direct_upload_messages_total"),
        scrape.get("supportdesk_attachment_direct_upload_largest_piece_bytes"),
        scrape.get("supportdesk_attachment_direct_upload_pieces_held_max"),
        scrape.get("supportdesk_attachment_direct_upload_bytes_held_max"),
    )
}

/// The bytes of a PNG of `size` bytes: its signature, then bytes that vary.
fn png_of_size(size: usize, seed: u8) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..size - 8).map(|i| {
        (i as u8)
            .wrapping_mul(131)
            .wrapping_add(seed ^ (i >> 9) as u8)
    }));
    bytes
}

#[tokio::test]
async fn a_file_streamed_in_many_messages_is_stored_byte_identical_holding_a_few_pieces_at_a_time()
{
    let app = TestApp::spawn_with(crate::support::with_metrics).await;
    let ticket = app.create_ticket("direct").await;
    let bytes = png_of_size(300_000, 21);
    let messages = direct_upload(&ticket.id, "direct.png", "image/png", &bytes, 7_000);
    let sent = messages.len() as u64;
    assert_eq!(sent, 43);
    let attachment = app
        .attachments
        .clone()
        .upload_attachment(app.as_admin(streamed(messages)))
        .await
        .expect("stored")
        .into_inner();
    assert_eq!(attachment.state(), v1::AttachmentState::Ready);
    assert_eq!(attachment.sha256, sha256_hex(&bytes));
    assert_eq!(attachment.size_bytes, bytes.len() as i64);
    assert_eq!(stored(&app, &attachment.id).await.unwrap().state, "ready");
    let download = app
        .attachments
        .clone()
        .get_download_url(app.as_admin(v1::GetDownloadUrlRequest { id: attachment.id }))
        .await
        .unwrap()
        .into_inner();
    let response = http().get(&download.download_url).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "image/png");
    assert!(
        response.bytes().await.unwrap().to_vec() == bytes,
        "byte-identical"
    );

    let (messages, largest, pieces_held, bytes_held) =
        direct_upload_metrics(&Scrape::of(&app).await);
    assert_eq!(messages, sent, "every message was received as a piece");
    assert_eq!(largest, 7_000);
    assert!(
        pieces_held <= supportdesk::service::attachments::MAX_PIECES_HELD as u64,
        "{pieces_held} pieces held at once"
    );
    assert!(
        bytes_held <= 7_000 * pieces_held,
        "{bytes_held} bytes held at once"
    );
    assert!(
        bytes_held < bytes.len() as u64 / 4,
        "never the whole file: {bytes_held}"
    );
}

/// The pieces of a file the client has handed to its stream (tonic pulled them to send), and
/// the service's direct upload metrics, once none of them has moved for a second.
async fn once_settled(app: &TestApp, pulled: &AtomicUsize) -> (usize, (u64, u64, u64, u64)) {
    let started = tokio::time::Instant::now();
    let mut last = None;
    let mut unchanged = 0;
    loop {
        let now = (
            pulled.load(Ordering::Relaxed),
            direct_upload_metrics(&Scrape::of(app).await),
        );
        if last == Some(now) {
            unchanged += 1;
            if unchanged == 10 {
                return now;
            }
        } else {
            unchanged = 0;
            last = Some(now);
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the upload never settled: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_store_that_stops_reading_holds_the_service_at_its_bound_and_stalls_the_client_until_it_resumes()
 {
    const PIECE: usize = 64 * 1024;
    const FILE: usize = 16 * 1024 * 1024;
    let store = tokio::task::spawn_blocking(StorageServer::start)
        .await
        .unwrap();
    let app = TestApp::spawn_with(|settings| {
        store.configure(settings);
        let storage = settings.attachments.storage.as_mut().unwrap();
        // The store is stopped for a while on purpose: that is no failure of the store's.
        storage.timeout = Duration::from_secs(60);
        settings.attachments.direct_max_bytes = FILE as u64;
        settings.server.request_timeout = Duration::from_secs(60);
        crate::support::with_metrics(settings);
    })
    .await;
    let ticket = app.create_ticket("a store that stops reading").await;
    let bytes = png_of_size(FILE, 33);
    let mut messages = direct_upload(&ticket.id, "large.png", "image/png", &bytes, PIECE);
    let total = messages.len();
    assert_eq!(total, FILE / PIECE);
    let (client, to_send) = tokio::sync::mpsc::unbounded_channel();
    let pulled = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&pulled);
    let stream =
        tokio_stream::wrappers::UnboundedReceiverStream::new(to_send).map(move |message| {
            counted.fetch_add(1, Ordering::Relaxed);
            message
        });
    let request = app.as_admin(stream);
    let mut attachments = app.attachments.clone();
    let upload = tokio::spawn(async move { attachments.upload_attachment(request).await });

    let rest = messages.split_off(4);
    for message in messages {
        client.send(message).unwrap();
    }
    wait_until("the upload has begun", PATIENCE, || async {
        direct_upload_metrics(&Scrape::of(&app).await).0 == 4
    })
    .await;
    store.pause();
    for message in rest {
        client.send(message).unwrap();
    }
    drop(client);
    // What a stopped store leaves held: the piece waiting to enter the full channel, the
    // channel's pieces, and the writer's queue, full at STORE_WRITER_BYTES (7 pieces of 64 KiB)
    // or one more when its first piece is partly written. Nothing else of the file: the client
    // is held back by HTTP/2 flow control, what the service received stays put.
    let (sent, (received, largest, pieces_held, bytes_held)) = once_settled(&app, &pulled).await;
    let bound = max_pieces_held(PIECE);
    assert_eq!(bound, 11);
    assert!(
        (bound - 1..=bound).contains(&(pieces_held as usize)),
        "{pieces_held} pieces held while the store is stopped, not {} or {bound}",
        bound - 1
    );
    assert_eq!(largest, PIECE as u64);
    assert_eq!(bytes_held, pieces_held * PIECE as u64, "whole pieces");
    assert!(
        received < sent as u64 && sent < total,
        "the client is held back: {sent} of {total} sent, {received} received"
    );
    assert!(!upload.is_finished(), "the upload waits for the store");

    store.resume();
    let attachment = upload.await.unwrap().expect("stored").into_inner();
    assert_eq!(attachment.state(), v1::AttachmentState::Ready);
    let download = app
        .attachments
        .clone()
        .get_download_url(app.as_admin(v1::GetDownloadUrlRequest { id: attachment.id }))
        .await
        .unwrap()
        .into_inner();
    let response = http().get(&download.download_url).send().await.unwrap();
    assert!(
        response.bytes().await.unwrap().to_vec() == bytes,
        "byte-identical"
    );
    let (received, _, after_pieces, after_bytes) = direct_upload_metrics(&Scrape::of(&app).await);
    assert_eq!(
        received, total as u64,
        "every piece arrived once the store read again"
    );
    assert_eq!(
        (after_pieces, after_bytes),
        (pieces_held, bytes_held),
        "never more held than while the store was stopped"
    );
}

#[tokio::test]
async fn a_raw_body_larger_than_one_envoy_piece_arrives_in_several_messages_and_round_trips() {
    let app = TestApp::spawn_with(|settings| {
        crate::support::with_metrics(settings);
        settings.attachments.direct_max_bytes = 3 * 1024 * 1024;
    })
    .await;
    let envoy = crate::support::envoy::Envoy::start_in_front_of(app.address.port()).await;
    let ticket = app.create_ticket("rest").await;
    let bytes = png_of_size(2_600_000, 5);
    let response = upload_through(
        &envoy,
        &app.admin.access_token,
        &ticket.id,
        "big.png",
        "image/png",
        &bytes,
    )
    .await;
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["state"], "ATTACHMENT_STATE_READY");
    assert_eq!(body["sha256"], sha256_hex(&bytes));
    assert_eq!(body["sizeBytes"], bytes.len().to_string());

    let (messages, largest, pieces_held, _) = direct_upload_metrics(&Scrape::of(&app).await);
    assert!(
        messages >= 3,
        "2.6 MB in pieces of at most 1 MiB: {messages} messages"
    );
    assert!(
        largest <= 1024 * 1024,
        "Envoy's pieces are at most 1 MiB: {largest}"
    );
    assert!(
        pieces_held <= supportdesk::service::attachments::MAX_PIECES_HELD as u64,
        "{pieces_held} pieces held at once"
    );
    let download = app
        .attachments
        .clone()
        .get_download_url(app.as_admin(v1::GetDownloadUrlRequest {
            id: body["id"].as_str().unwrap().to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    let stored = http().get(&download.download_url).send().await.unwrap();
    assert!(
        stored.bytes().await.unwrap().to_vec() == bytes,
        "byte-identical"
    );
}

#[tokio::test]
async fn a_file_longer_than_declared_is_refused_at_the_first_byte_too_many_and_nothing_is_kept() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("overrun").await;
    let bytes = png_of_size(3_000, 9);
    let mut messages = direct_upload(&ticket.id, "big.png", "image/png", &bytes, 1_000);
    // Declares 1,500 bytes (with their digest), then sends 2,000 and keeps the stream open.
    let first = messages.first_mut().unwrap();
    first.size_bytes = 1_500;
    first.sha256 = sha256_hex(&bytes[..1_500]);
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    for message in messages.into_iter().take(2) {
        sender.send(message).await.unwrap();
    }
    let status = tokio::time::timeout(
        PATIENCE,
        app.attachments
            .clone()
            .upload_attachment(app.as_admin(tokio_stream::wrappers::ReceiverStream::new(receiver))),
    )
    .await
    .expect("answered while the stream is still open")
    .expect_err("more bytes than declared");
    assert_reason(&status, Reason::InvalidArgument);
    assert_eq!(
        details(&status).bad_request().unwrap().field_violations[0].field,
        "file.data"
    );
    drop(sender);
    assert_eq!(
        left_of_direct_uploads(&app, &ticket.id).await,
        (0, 0, 0),
        "no row, no queued deletion, no object"
    );

    // Fewer bytes than declared: the stream's end is refused the same way.
    let mut messages = direct_upload(&ticket.id, "short.png", "image/png", &bytes, 1_000);
    messages.pop();
    let status = app
        .attachments
        .clone()
        .upload_attachment(app.as_admin(streamed(messages)))
        .await
        .expect_err("fewer bytes than declared");
    assert_reason(&status, Reason::InvalidArgument);
    assert_eq!(
        details(&status).bad_request().unwrap().field_violations[0].field,
        "file.data"
    );
    // And a declared size over ATTACHMENT_DIRECT_MAX_BYTES before anything is recorded.
    let mut messages = direct_upload(&ticket.id, "huge.png", "image/png", &bytes, 1_000);
    messages[0].size_bytes = 2 * 1024 * 1024;
    let status = app
        .attachments
        .clone()
        .upload_attachment(app.as_admin(streamed(messages)))
        .await
        .expect_err("over the direct limit");
    assert_eq!(
        details(&status).bad_request().unwrap().field_violations[0].field,
        "size_bytes"
    );
    assert_eq!(left_of_direct_uploads(&app, &ticket.id).await, (0, 0, 0));
}

#[tokio::test]
async fn a_file_whose_sha256_differs_is_refused_its_object_gone_and_a_retry_with_the_key_replays_it()
 {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("checksum").await;
    let bytes = png_of_size(5_000, 3);
    let mut messages = direct_upload(&ticket.id, "a.png", "image/png", &bytes, 1_200);
    messages[0].sha256 = sha256_hex(b"another file");
    let request =
        || crate::support::with_key(app.as_admin(streamed(messages.clone())), "wrong-sha");
    let status = app
        .attachments
        .clone()
        .upload_attachment(request())
        .await
        .expect_err("another SHA-256");
    assert_reason(&status, Reason::UploadMismatch);
    assert_eq!(
        details(&status).precondition_failure().unwrap().violations[0].r#type,
        "UPLOAD_SHA256"
    );
    assert_eq!(left_of_direct_uploads(&app, &ticket.id).await, (0, 0, 0));
    let replayed = app
        .attachments
        .clone()
        .upload_attachment(request())
        .await
        .expect_err("the refusal, replayed");
    assert_reason(&replayed, Reason::UploadMismatch);
    assert_eq!(
        replayed.metadata().get("idempotent-replayed").unwrap(),
        "true"
    );
    assert_eq!(left_of_direct_uploads(&app, &ticket.id).await, (0, 0, 0));
}

#[tokio::test]
async fn an_html_body_declared_as_a_png_is_refused_through_envoy_and_nothing_is_kept() {
    let app = TestApp::spawn().await;
    let envoy = crate::support::envoy::Envoy::start_in_front_of(app.address.port()).await;
    let ticket = app.create_ticket("html").await;
    let html = b"<!doctype html><p>not a picture</p>";
    let response = upload_through(
        &envoy,
        &app.admin.access_token,
        &ticket.id,
        "cat.png",
        "image/png",
        html,
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    crate::support::assert_json_reason(&body, Reason::UploadMismatch);
    assert_eq!(left_of_direct_uploads(&app, &ticket.id).await, (0, 0, 0));

    // A text body, declared truthfully, through the same route.
    let text = "first line\nsecond line, ünïcode\n";
    let response = upload_through(
        &envoy,
        &app.admin.access_token,
        &ticket.id,
        "notes.txt",
        "text/plain",
        text.as_bytes(),
    )
    .await;
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["state"], "ATTACHMENT_STATE_READY");
    assert_eq!(body["contentType"], "text/plain");
}

#[tokio::test]
async fn fifty_concurrent_uploads_all_complete() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("many").await;
    let uploads = (0..50u8).map(|seed| {
        let app = &app;
        let ticket_id = ticket.id.clone();
        async move {
            let id = png_uploaded_not_completed(app, &ticket_id, seed).await;
            // Fifty completions are more than the storage bulkhead's places: those that wait
            // too long are told PROVIDER_BUSY with a delay, and a client retries after it.
            complete_while_the_store_is_up(app, &id).await
        }
    });
    let done = futures_join_all(uploads).await;
    assert!(
        done.iter()
            .all(|attachment| attachment.state() == v1::AttachmentState::Ready)
    );
    let mut conn = app.database.connect().await;
    let ready: Count = diesel::sql_query(
        "SELECT count(*) AS count FROM attachments WHERE ticket_id = $1 AND state = 'ready'",
    )
    .bind::<SqlUuid, _>(uuid::Uuid::parse_str(&ticket.id).unwrap())
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(ready.count, 50);
}

#[tokio::test]
async fn fifty_uploads_with_the_store_killed_halfway_answer_unavailable_then_all_complete() {
    let mut store = tokio::task::spawn_blocking(StorageServer::start)
        .await
        .unwrap();
    let app = TestApp::spawn_with(|settings| store.configure(settings)).await;
    let service = "supportdesk.v1.AttachmentService";
    wait_until("attachments serve", PATIENCE, || async {
        app.health_of(service).await == "Serving"
    })
    .await;
    let ticket = app.create_ticket("many, through an outage").await;
    let uploads = (0..50u8).map(|seed| {
        let app = &app;
        let ticket_id = ticket.id.clone();
        async move { png_uploaded_not_completed(app, &ticket_id, seed).await }
    });
    let ids = futures_join_all(uploads).await;
    let (before, after) = ids.split_at(25);
    for id in before {
        let done = complete_while_the_store_is_up(&app, id).await;
        assert_eq!(done.state(), v1::AttachmentState::Ready);
    }

    store.kill();
    for id in after {
        let status = complete_until_not_busy(&app, id)
            .await
            .expect_err("the store is down");
        assert_eq!(status.code(), Code::Unavailable);
        assert_reason(&status, Reason::StorageUnavailable);
        assert!(details(&status).retry_info().is_some(), "RetryInfo");
    }
    assert_eq!(
        app.health_of("supportdesk.v1.TicketService").await,
        "Serving"
    );

    tokio::task::spawn_blocking(move || {
        store.restart();
        store
    })
    .await
    .map(|store| {
        // Kept alive until the end of the test.
        std::mem::forget(store);
    })
    .unwrap();
    wait_until("attachments serve again", PATIENCE, || async {
        app.health_of(service).await == "Serving"
    })
    .await;
    for id in after {
        let done = complete_while_the_store_is_up(&app, id).await;
        assert_eq!(done.state(), v1::AttachmentState::Ready);
    }
    let mut conn = app.database.connect().await;
    let ready: Count = diesel::sql_query(
        "SELECT count(*) AS count FROM attachments WHERE ticket_id = $1 AND state = 'ready'",
    )
    .bind::<SqlUuid, _>(uuid::Uuid::parse_str(&ticket.id).unwrap())
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(ready.count, 50);
}

/// Starts an upload of `png_bytes(seed)` and PUTs it through its URL; not yet completed. Fifty
/// at once on a loaded machine may find every database connection busy for a moment: the start
/// is then made again once its RetryInfo delay passed, as a client does.
async fn png_uploaded_not_completed(app: &TestApp, ticket_id: &str, seed: u8) -> String {
    let bytes = png_bytes(seed);
    let started = tokio::time::timeout(
        PATIENCE,
        retrying(&[Reason::DatabaseBusy], || {
            let mut attachments = app.attachments.clone();
            let request = app.as_admin(upload_request(
                ticket_id,
                &format!("{seed}.png"),
                "image/png",
                &bytes,
            ));
            async move { attachments.create_upload(request).await }
        }),
    )
    .await
    .expect("the upload starts within PATIENCE")
    .expect("the upload starts");
    assert!(put(&started, bytes).await.status().is_success());
    started.attachment.expect("the attachment").id
}

/// Completes an upload as a client does: after a PROVIDER_BUSY, again once its RetryInfo delay
/// passed; any other answer is returned.
async fn complete_until_not_busy(app: &TestApp, id: &str) -> Result<v1::Attachment, tonic::Status> {
    complete_retrying(app, id, &[Reason::ProviderBusy]).await
}

/// Completes an upload while the store is up, as a client does: after PROVIDER_BUSY, or after
/// a STORAGE_UNAVAILABLE (a call of the service to the store that ran out of its 2 s on a
/// loaded machine, and the breaker it may open), again once the RetryInfo delay passed; for at
/// most [`PATIENCE`], so a service that stays unavailable still fails the test.
async fn complete_while_the_store_is_up(app: &TestApp, id: &str) -> v1::Attachment {
    tokio::time::timeout(
        PATIENCE,
        complete_retrying(app, id, &[Reason::ProviderBusy, Reason::StorageUnavailable]),
    )
    .await
    .unwrap_or_else(|_| panic!("{id} was not completed within {PATIENCE:?}"))
    .unwrap_or_else(|status| panic!("{id} was not completed: {status:?}"))
}

/// Completes an upload, again after each refusal for one of `retried` once its RetryInfo delay
/// passed; any other answer is returned.
async fn complete_retrying(
    app: &TestApp,
    id: &str,
    retried: &[Reason],
) -> Result<v1::Attachment, tonic::Status> {
    retrying(retried, || {
        let mut attachments = app.attachments.clone();
        let request = app.as_admin(v1::CompleteUploadRequest { id: id.to_owned() });
        async move { attachments.complete_upload(request).await }
    })
    .await
}

/// Makes `call`, again after each refusal for one of `retried` once its RetryInfo delay passed;
/// any other answer is returned.
async fn retrying<T, Call>(
    retried: &[Reason],
    mut call: impl FnMut() -> Call,
) -> Result<T, tonic::Status>
where
    Call: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    loop {
        match call().await {
            Ok(done) => return Ok(done.into_inner()),
            Err(status)
                if details(&status).error_info().is_some_and(|info| {
                    retried.iter().any(|reason| info.reason == reason.as_str())
                }) =>
            {
                let delay = details(&status)
                    .retry_info()
                    .and_then(|info| info.retry_delay)
                    .expect("a retry delay");
                tokio::time::sleep(delay).await;
            }
            Err(status) => return Err(status),
        }
    }
}

/// Runs every future concurrently on this task and collects their outputs in order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut running: Vec<_> = futures.map(|future| Some(Box::pin(future))).collect();
    let mut outputs: Vec<Option<F::Output>> = running.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        for (slot, output) in running.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot
                && let std::task::Poll::Ready(value) = future.as_mut().poll(context)
            {
                *output = Some(value);
                *slot = None;
            }
        }
        if running.iter().all(Option::is_none) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// How many objects the app's store holds under `prefix`.
async fn objects_under(app: &TestApp, prefix: &str) -> usize {
    let endpoint = &app.settings.attachments.storage.as_ref().unwrap().endpoint;
    crate::support::storage::objects_under(endpoint, prefix).await
}

/// The number of attachments of `ticket_id`, and of those pending, as PostgreSQL holds them.
async fn attachments_of(app: &TestApp, ticket_id: &str) -> (i64, i64) {
    let total = crate::support::count_of(
        &app.database,
        &format!("SELECT count(*) AS count FROM attachments WHERE ticket_id = '{ticket_id}'"),
    )
    .await;
    let pending = crate::support::count_of(
        &app.database,
        &format!(
            "SELECT count(*) AS count FROM attachments WHERE ticket_id = '{ticket_id}' AND state = 'pending'"
        ),
    )
    .await;
    (total, pending)
}

#[tokio::test]
async fn a_create_upload_retried_with_its_key_answers_the_same_attachment_and_url_and_records_one()
{
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("retried upload").await;
    let bytes = png_bytes(31);
    let request = || {
        crate::support::with_key(
            app.as_admin(upload_request(&ticket.id, "a.png", "image/png", &bytes)),
            "upload-31",
        )
    };
    let first = app
        .attachments
        .clone()
        .create_upload(request())
        .await
        .expect("started");
    assert!(first.metadata().get("idempotent-replayed").is_none());
    let retried = app
        .attachments
        .clone()
        .create_upload(request())
        .await
        .expect("replayed");
    assert_eq!(
        retried.metadata().get("idempotent-replayed").unwrap(),
        "true"
    );
    assert_eq!(retried.get_ref(), first.get_ref());
    assert_eq!(
        attachments_of(&app, &ticket.id).await,
        (1, 1),
        "one PENDING row"
    );

    let other = png_bytes(32);
    let status = app
        .attachments
        .clone()
        .create_upload(crate::support::with_key(
            app.as_admin(upload_request(&ticket.id, "b.png", "image/png", &other)),
            "upload-31",
        ))
        .await
        .expect_err("the key was used for another file");
    assert_reason(&status, Reason::IdempotencyKeyReused);
    assert_eq!(attachments_of(&app, &ticket.id).await, (1, 1));

    // The replayed URL is the first one: the file PUT there completes the one attachment.
    let started = retried.into_inner();
    assert!(put(&started, bytes).await.status().is_success());
    let done = app
        .attachments
        .clone()
        .complete_upload(app.as_admin(v1::CompleteUploadRequest {
            id: started.attachment.unwrap().id,
        }))
        .await
        .expect("completed")
        .into_inner();
    assert_eq!(done.state(), v1::AttachmentState::Ready);
    assert_eq!(attachments_of(&app, &ticket.id).await, (1, 0));
}

#[tokio::test]
async fn a_direct_upload_retried_with_its_key_stores_one_object_and_answers_the_same_attachment() {
    let app = TestApp::spawn().await;
    let ticket = app.create_ticket("retried direct upload").await;
    let bytes = png_bytes(33);
    // The retry's pieces differ from the first's (Envoy cuts a body as it arrives): the key's
    // fingerprint is the declaration, not the pieces.
    let request = |piece: usize| {
        crate::support::with_key(
            app.as_admin(streamed(direct_upload(
                &ticket.id,
                "direct.png",
                "image/png",
                &bytes,
                piece,
            ))),
            "direct-33",
        )
    };
    let first = app
        .attachments
        .clone()
        .upload_attachment(request(500))
        .await
        .expect("stored");
    let retried = app
        .attachments
        .clone()
        .upload_attachment(request(700))
        .await
        .expect("replayed");
    assert_eq!(
        retried.metadata().get("idempotent-replayed").unwrap(),
        "true"
    );
    assert_eq!(retried.get_ref(), first.get_ref());
    assert_eq!(first.get_ref().state(), v1::AttachmentState::Ready);
    assert_eq!(attachments_of(&app, &ticket.id).await, (1, 0));
    let key = stored(&app, &first.get_ref().id).await.unwrap().object_key;
    let account_prefix = format!("{}/", key.split('/').next().unwrap());
    assert_eq!(objects_under(&app, &account_prefix).await, 1, "one object");

    // The same key with another declared file is refused.
    let other = png_bytes(34);
    let status = app
        .attachments
        .clone()
        .upload_attachment(crate::support::with_key(
            app.as_admin(streamed(direct_upload(
                &ticket.id,
                "direct.png",
                "image/png",
                &other,
                500,
            ))),
            "direct-33",
        ))
        .await
        .expect_err("another file under the same key");
    assert_reason(&status, Reason::IdempotencyKeyReused);
}

/// A direct upload halfway through has its key at a recovery point; unlike a charge's, the key
/// keeps its expiry (what a request that stops there leaves behind is swept within the hour), so
/// once it has expired the sweeper deletes it like any other.
#[tokio::test]
async fn the_key_of_a_direct_upload_halfway_through_keeps_its_expiry_and_is_swept_once_it_passed() {
    let app = TestApp::spawn_with(crate::support::with_metrics).await;
    let ticket = app.create_ticket("an upload halfway through").await;
    let bytes = png_of_size(5_000, 6);
    let (messages, _) = good_and_bad_uploads(&ticket.id, &bytes);
    let (sender, call) = keyed_upload_started(&app, &messages, "halfway");
    wait_until(
        "the upload's first piece is checked",
        PATIENCE,
        async || pieces_checked(&app).await == 1,
    )
    .await;
    let halfway = "SELECT count(*) AS count FROM idempotency_keys \
                   WHERE key = 'halfway' AND recovery_point IS NOT NULL AND expires_at IS NOT NULL";
    assert_eq!(crate::support::count_of(&app.database, halfway).await, 1);

    let mut conn = app.database.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "UPDATE idempotency_keys SET expires_at = now() - interval '1 minute' \
             WHERE key = 'halfway'",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    let pool = supportdesk::db::build_pool(&app.settings.database, Duration::from_secs(5));
    supportdesk::idempotency::sweep_expired(&pool, 500)
        .await
        .unwrap();

    assert_eq!(
        crate::support::count_of(
            &app.database,
            "SELECT count(*) AS count FROM idempotency_keys WHERE key = 'halfway'"
        )
        .await,
        0,
        "the expired key is swept"
    );
    call.abort();
    drop(sender);
}

/// A direct upload with idempotency key `key` that has sent only its first message; the rest
/// follow through the sender.
fn keyed_upload_started(
    app: &TestApp,
    messages: &[v1::UploadAttachmentRequest],
    key: &str,
) -> (
    tokio::sync::mpsc::Sender<v1::UploadAttachmentRequest>,
    tokio::task::JoinHandle<Result<tonic::Response<v1::Attachment>, tonic::Status>>,
) {
    let (sender, receiver) = tokio::sync::mpsc::channel(8);
    sender.try_send(messages[0].clone()).unwrap();
    let request = crate::support::with_key(
        app.as_admin(tokio_stream::wrappers::ReceiverStream::new(receiver)),
        key,
    );
    let mut client = app.attachments.clone();
    let call = tokio::spawn(async move { client.upload_attachment(request).await });
    (sender, call)
}

/// Sends the rest of a started upload's messages and ends its stream.
async fn send_the_rest(
    sender: tokio::sync::mpsc::Sender<v1::UploadAttachmentRequest>,
    messages: &[v1::UploadAttachmentRequest],
) {
    for message in &messages[1..] {
        sender.send(message.clone()).await.unwrap();
    }
}

/// A file's direct upload in pieces of 1,000 bytes, and the same declaration (so the same key's
/// request) with a last piece that is not the declared file's.
fn good_and_bad_uploads(
    ticket_id: &str,
    bytes: &[u8],
) -> (
    Vec<v1::UploadAttachmentRequest>,
    Vec<v1::UploadAttachmentRequest>,
) {
    let good = direct_upload(ticket_id, "both.png", "image/png", bytes, 1_000);
    let mut bad = good.clone();
    bad.last_mut().unwrap().file.as_mut().unwrap().data[0] ^= 0xff;
    (good, bad)
}

async fn pieces_checked(app: &TestApp) -> u64 {
    direct_upload_metrics(&Scrape::of(app).await).0
}

#[tokio::test]
async fn a_retry_with_the_key_whose_file_is_refused_leaves_the_upload_a_concurrent_retry_finished()
{
    let app = TestApp::spawn_with(crate::support::with_metrics).await;
    let ticket = app.create_ticket("two retries at once").await;
    let bytes = png_of_size(5_000, 5);
    let (good, bad) = good_and_bad_uploads(&ticket.id, &bytes);

    // The first request records the pending attachment and sends its first piece...
    let (first, first_call) = keyed_upload_started(&app, &good, "both-at-once");
    wait_until(
        "the first request's first piece is checked",
        PATIENCE,
        async || pieces_checked(&app).await == 1,
    )
    .await;
    // ...a second with the same key resumes that attachment and sends its first piece too...
    let (second, second_call) = keyed_upload_started(&app, &bad, "both-at-once");
    wait_until(
        "the second request's first piece is checked",
        PATIENCE,
        async || pieces_checked(&app).await == 2,
    )
    .await;
    // ...the first finishes...
    send_the_rest(first, &good).await;
    let finished = first_call.await.unwrap().expect("stored").into_inner();
    assert_eq!(finished.state(), v1::AttachmentState::Ready);
    // ...and the second's last piece is not the declared file's.
    send_the_rest(second, &bad).await;
    let refused = second_call.await.unwrap().expect_err("another SHA-256");
    assert_reason(&refused, Reason::UploadMismatch);

    // The finished attachment stands, with its bytes, and the key still answers it.
    assert_eq!(attachments_of(&app, &ticket.id).await, (1, 0));
    assert_eq!(stored(&app, &finished.id).await.unwrap().state, "ready");
    assert_eq!(queued_deletions(&app).await, 0);
    let download = app
        .attachments
        .clone()
        .get_download_url(app.as_admin(v1::GetDownloadUrlRequest {
            id: finished.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let response = http().get(&download.download_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.unwrap().to_vec() == bytes,
        "the first request's bytes"
    );
    let replayed = app
        .attachments
        .clone()
        .upload_attachment(crate::support::with_key(
            app.as_admin(streamed(good.clone())),
            "both-at-once",
        ))
        .await
        .expect("the key's answer");
    assert_eq!(
        replayed.metadata().get("idempotent-replayed").unwrap(),
        "true"
    );
    assert_eq!(replayed.into_inner(), finished);
}

#[tokio::test]
async fn a_file_stored_after_a_concurrent_retry_discarded_its_attachment_is_deleted_not_orphaned() {
    let app = TestApp::spawn_with(|settings| {
        crate::support::with_metrics(settings);
        // Only the request path may delete the object in this test.
        settings.attachments.sweep_interval = Duration::from_secs(3600);
    })
    .await;
    let ticket = app.create_ticket("refused while another streams").await;
    let bytes = png_of_size(5_000, 6);
    let (good, bad) = good_and_bad_uploads(&ticket.id, &bytes);
    let (first, first_call) = keyed_upload_started(&app, &good, "one-refused");
    wait_until(
        "the first request's first piece is checked",
        PATIENCE,
        async || pieces_checked(&app).await == 1,
    )
    .await;
    assert_eq!(attachments_of(&app, &ticket.id).await, (1, 1));
    let object_key: String = {
        #[derive(diesel::QueryableByName)]
        struct Key {
            #[diesel(sql_type = Text)]
            object_key: String,
        }
        let mut conn = app.database.connect().await;
        diesel::sql_query("SELECT object_key FROM attachments")
            .get_result::<Key>(&mut conn)
            .await
            .unwrap()
            .object_key
    };

    // A second request with the key sends a file that is refused: the attachment is discarded.
    let refused = app
        .attachments
        .clone()
        .upload_attachment(crate::support::with_key(
            app.as_admin(streamed(bad)),
            "one-refused",
        ))
        .await
        .expect_err("another SHA-256");
    assert_reason(&refused, Reason::UploadMismatch);
    assert_eq!(attachments_of(&app, &ticket.id).await, (0, 0));

    // The first then stores its whole file under the discarded attachment's key.
    send_the_rest(first, &good).await;
    let gone = first_call
        .await
        .unwrap()
        .expect_err("its attachment is gone");
    assert_eq!(gone.code(), Code::NotFound);

    assert_eq!(object_status(&app, &object_key).await, 404, "no orphan");
    assert_eq!(queued_deletions(&app).await, 0);
}
