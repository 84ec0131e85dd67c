//! Rotating an endpoint's signing secret (docs/webhooks.md, "Rotation"): every retired secret
//! keeps signing until its own expiry, however many rotations follow within the overlap (up to
//! the stated number), one past its expiry (by PostgreSQL's clock) signs no more, and a keyed
//! rotation replayed after its answer was lost returns the secret it issued. Each delivery is
//! verified by the receiver with the Standard Webhooks reference library, and each expiry is
//! read where it lives, in PostgreSQL.

use std::time::Duration;

use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use tonic::Request;
use tonic::metadata::MetadataValue;

use super::{delivering_app, endpoints, register};
use crate::support::webhook_receiver::WebhookReceiver;
use crate::support::{PATIENCE, TestApp, assert_reason, count_of, details, keyed};

/// Long enough that no retired secret expires by itself during a test.
const OVERLAP: Duration = Duration::from_secs(3600);

/// How many retired secrets sign beside the current one (docs/webhooks.md).
const MOST_RETIRED: usize = 5;

/// Rotates endpoint `id`'s secret under a fresh idempotency key; the new secret.
async fn rotate(app: &TestApp, id: &str) -> String {
    endpoints(app)
        .rotate_webhook_endpoint_secret(keyed(
            app.as_admin(v1::RotateWebhookEndpointSecretRequest { id: id.to_owned() }),
        ))
        .await
        .expect("the secret is rotated")
        .into_inner()
        .secret
}

/// The `v1,` signatures a delivery carried.
fn signatures(header: Option<&str>) -> usize {
    header
        .unwrap_or_default()
        .split(' ')
        .filter(|signature| signature.starts_with("v1,"))
        .count()
}

#[tokio::test]
async fn a_receiver_still_on_the_first_secret_keeps_verifying_after_two_rotations_within_the_overlap()
 {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|settings| {
        settings.outbound_webhooks.secret_overlap = OVERLAP;
    })
    .await;
    let (endpoint, first) =
        register(&app, &receiver.url("slow-to-deploy"), &["ticket.created"]).await;
    let second = rotate(&app, &endpoint.id).await;
    let third = rotate(&app, &endpoint.id).await;
    assert!(first != second && second != third && first != third);
    // The receiver has deployed none of the new secrets yet.
    receiver.configure("slow-to-deploy", &[&first], "ok").await;

    app.create_ticket("After two rotations").await;
    let received = receiver
        .wait_for_attempts("slow-to-deploy", 1, PATIENCE)
        .await;
    assert_eq!(
        received[0].verified_with,
        [0],
        "the first secret still verifies within its overlap: {:?}",
        received[0].webhook_signature
    );
    assert_eq!(
        signatures(received[0].webhook_signature.as_deref()),
        3,
        "the current secret and both retired ones sign"
    );
    // And the receiver that moved to the newest secret verifies the same delivery with it.
    receiver.configure("slow-to-deploy", &[&third], "ok").await;
    app.create_ticket("Verified with the newest").await;
    let received = receiver
        .wait_for_attempts("slow-to-deploy", 2, PATIENCE)
        .await;
    assert_eq!(received[1].verified_with, [0]);
}

#[tokio::test]
async fn a_retired_secret_past_its_expiry_no_longer_signs_while_a_later_one_still_does() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|settings| {
        settings.outbound_webhooks.secret_overlap = OVERLAP;
    })
    .await;
    let (endpoint, first) = register(&app, &receiver.url("expiring"), &["ticket.created"]).await;
    let second = rotate(&app, &endpoint.id).await;
    let third = rotate(&app, &endpoint.id).await;
    receiver
        .configure("expiring", &[&first, &second, &third], "ok")
        .await;

    app.create_ticket("All three sign").await;
    let received = receiver.wait_for_attempts("expiring", 1, PATIENCE).await;
    assert_eq!(
        received[0].verified_with,
        [0, 1, 2],
        "every secret within its overlap signs"
    );

    // The first retired secret reaches its own expiry, by PostgreSQL's clock; the second keeps
    // the overlap its rotation promised.
    let mut conn = app.database.connect().await;
    let expired = diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE webhook_endpoint_secrets SET expires_at = now() - interval '1 second' \
             WHERE endpoint_id = '{}' AND retired_at = (SELECT min(retired_at) \
                 FROM webhook_endpoint_secrets WHERE endpoint_id = '{}')",
            endpoint.id, endpoint.id
        )),
        &mut conn,
    )
    .await
    .expect("the oldest retired secret expires");
    assert_eq!(expired, 1);

    app.create_ticket("Only two sign").await;
    let received = receiver.wait_for_attempts("expiring", 2, PATIENCE).await;
    assert_eq!(
        received[1].verified_with,
        [1, 2],
        "the expired secret signs no more, the later retired one still does"
    );
    assert_eq!(signatures(received[1].webhook_signature.as_deref()), 2);
}

#[tokio::test]
async fn a_replayed_keyed_rotation_returns_the_secret_the_first_answer_issued_and_it_verifies() {
    let receiver = WebhookReceiver::start().await;
    let (app, _seam) = delivering_app(|settings| {
        settings.outbound_webhooks.secret_overlap = OVERLAP;
    })
    .await;
    let (endpoint, _) = register(&app, &receiver.url("lost-answer"), &["ticket.created"]).await;
    let key = uuid::Uuid::now_v7().to_string();
    let rotation = || {
        let mut request: Request<_> = app.as_admin(v1::RotateWebhookEndpointSecretRequest {
            id: endpoint.id.clone(),
        });
        request.metadata_mut().insert(
            "idempotency-key",
            MetadataValue::try_from(key.as_str()).expect("ascii"),
        );
        request
    };
    let first = endpoints(&app)
        .rotate_webhook_endpoint_secret(rotation())
        .await
        .expect("the rotation")
        .into_inner();
    // The answer was lost: the client sends the same request with the same key again.
    let replayed = endpoints(&app)
        .rotate_webhook_endpoint_secret(rotation())
        .await
        .expect("the replay");
    assert_eq!(
        replayed
            .metadata()
            .get("idempotent-replayed")
            .and_then(|value| value.to_str().ok()),
        Some("true")
    );
    let replayed = replayed.into_inner();
    assert!(first.secret.starts_with("whsec_"), "{:?}", first.secret);
    assert_eq!(
        replayed.secret, first.secret,
        "the replay returns the secret the rotation issued"
    );
    assert_eq!(replayed.webhook_endpoint, first.webhook_endpoint);
    // One rotation happened: the original secret and the issued one sign, nothing else.
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM webhook_endpoint_secrets WHERE endpoint_id = '{}'",
                endpoint.id
            ),
        )
        .await,
        1
    );

    receiver
        .configure("lost-answer", &[&replayed.secret], "ok")
        .await;
    app.create_ticket("Signed with the replayed secret").await;
    let received = receiver.wait_for_attempts("lost-answer", 1, PATIENCE).await;
    assert_eq!(received[0].verified_with, [0]);
}

#[tokio::test]
async fn a_rotation_beyond_the_retired_secrets_that_may_sign_is_refused_and_none_is_dropped() {
    let app = TestApp::spawn_with(|settings| {
        settings.outbound_webhooks.secret_overlap = OVERLAP;
    })
    .await;
    let (endpoint, _) = register(&app, "https://hooks.example.com/rotated", &[]).await;
    let mut current = String::new();
    for _ in 0..MOST_RETIRED {
        current = rotate(&app, &endpoint.id).await;
    }
    let refused = endpoints(&app)
        .rotate_webhook_endpoint_secret(keyed(app.as_admin(
            v1::RotateWebhookEndpointSecretRequest {
                id: endpoint.id.clone(),
            },
        )))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert_reason(&refused, Reason::WebhookSecretRotationLimit);
    let violations = details(&refused)
        .precondition_failure()
        .expect("a PreconditionFailure")
        .violations
        .clone();
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].r#type, "WEBHOOK_SECRET_ROTATION_LIMIT");
    assert_eq!(
        violations[0].subject,
        format!("webhookEndpoints/{}", endpoint.id)
    );
    // Every retired secret still signs until its own expiry, and the secret is the last one
    // issued.
    assert_eq!(
        count_of(
            &app.database,
            &format!(
                "SELECT count(*) AS count FROM webhook_endpoint_secrets \
                 WHERE endpoint_id = '{}' AND expires_at > now()",
                endpoint.id
            ),
        )
        .await,
        i64::try_from(MOST_RETIRED).unwrap()
    );
    assert!(current.starts_with("whsec_"));
}
