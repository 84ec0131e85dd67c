//! Attachments as the suites that cover every RPC need them: a PNG's bytes, an upload request,
//! a presigned PUT, and an attachment uploaded and completed.

use super::{TestApp, TestUser};
use sha2::{Digest, Sha256};
use std::time::Duration;
use supportdesk::wire::proto::v1;

/// The first bytes of a PNG, then some more: enough for the sniffing check.
pub(crate) fn png_bytes(seed: u8) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend((0..2000u32).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    bytes
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A CreateUpload request for `bytes`, declared truthfully.
pub(crate) fn upload_request(
    ticket_id: &str,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> v1::CreateUploadRequest {
    v1::CreateUploadRequest {
        ticket_id: ticket_id.to_owned(),
        comment_id: String::new(),
        filename: filename.to_owned(),
        content_type: content_type.to_owned(),
        size_bytes: bytes.len() as i64,
        sha256: sha256_hex(bytes),
    }
}

/// PUTs `body` to the upload URL with the signed headers; reqwest sets `content-length` from
/// the body, so a body of another length than signed is sent as such.
pub(crate) async fn put(started: &v1::CreateUploadResponse, body: Vec<u8>) -> reqwest::Response {
    put_with(started, body, &[]).await
}

/// An attachment of `bytes` uploaded by `user` to `ticket_id` and completed.
pub(crate) async fn uploaded(
    app: &TestApp,
    user: &TestUser,
    request: v1::CreateUploadRequest,
    bytes: Vec<u8>,
) -> v1::Attachment {
    let started = app
        .attachments
        .clone()
        .create_upload(user.request(request))
        .await
        .expect("the upload starts")
        .into_inner();
    let answer = put(&started, bytes).await;
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
    app.attachments
        .clone()
        .complete_upload(user.request(v1::CompleteUploadRequest {
            id: started.attachment.unwrap().id,
        }))
        .await
        .expect("the upload completes")
        .into_inner()
}

/// An attachment of the admin's on a new ticket.
pub(crate) async fn ready_attachment(app: &TestApp) -> v1::Attachment {
    let ticket = app.create_ticket("with a file").await;
    let bytes = png_bytes(1);
    uploaded(
        app,
        &app.admin,
        upload_request(&ticket.id, "screen.png", "image/png", &bytes),
        bytes,
    )
    .await
}

/// [`put`] with some headers replaced.
pub(crate) async fn put_with(
    started: &v1::CreateUploadResponse,
    body: Vec<u8>,
    replaced: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = http().put(&started.upload_url);
    for (name, value) in &started.upload_headers {
        if name == "content-length" {
            continue;
        }
        let value = replaced
            .iter()
            .find(|(replaced, _)| replaced == name)
            .map_or(value.as_str(), |(_, value)| value);
        request = request.header(name, value);
    }
    request.body(body).send().await.expect("the store answers")
}

/// An HTTP client that gives up after a while rather than hanging a test.
/// A direct upload over REST through `envoy`, as a browser sends it: the raw body with its
/// content type, its declared size and SHA-256 in the query.
pub(crate) async fn upload_through(
    envoy: &super::envoy::Envoy,
    token: &str,
    ticket_id: &str,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> reqwest::Response {
    http()
        .post(envoy.url(&format!(
            "/v1/attachments:upload?ticketId={ticket_id}&filename={filename}&sizeBytes={}&sha256={}",
            bytes.len(),
            sha256_hex(bytes)
        )))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("an answer from Envoy")
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("a client")
}

/// UploadAttachment's messages for `bytes`, declared truthfully as `content_type`, cut into
/// pieces of `piece` bytes: the first message declares the file and carries the first piece,
/// each following one only the next piece, as Envoy's transcoder sends a REST body.
pub(crate) fn direct_upload(
    ticket_id: &str,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
    piece: usize,
) -> Vec<v1::UploadAttachmentRequest> {
    let mut pieces = bytes.chunks(piece);
    let first = v1::UploadAttachmentRequest {
        ticket_id: ticket_id.to_owned(),
        comment_id: String::new(),
        filename: filename.to_owned(),
        file: Some(supportdesk::wire::proto::google::api::HttpBody {
            content_type: content_type.to_owned(),
            data: pieces.next().unwrap_or_default().to_vec(),
            extensions: Vec::new(),
        }),
        sha256: sha256_hex(bytes),
        size_bytes: bytes.len() as i64,
    };
    std::iter::once(first)
        .chain(pieces.map(|piece| v1::UploadAttachmentRequest {
            file: Some(supportdesk::wire::proto::google::api::HttpBody {
                data: piece.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .collect()
}

/// The same messages as the body of a gRPC client stream.
pub(crate) fn streamed(
    messages: Vec<v1::UploadAttachmentRequest>,
) -> tokio_stream::Iter<std::vec::IntoIter<v1::UploadAttachmentRequest>> {
    tokio_stream::iter(messages)
}
