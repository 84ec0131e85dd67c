//! Quarantine: a signed event whose fields name charges that disagree (the metadata one
//! account's charge, the payment another's) is filed under no account and applied to none, and
//! operators see why; checked through Envoy, the real workers, PostgreSQL and the binary.

use std::process::Command;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::json;
use supportdesk::errors::Reason;
use supportdesk::wire::proto::v1;
use uuid::Uuid;

use crate::support::envoy::Envoy;
use crate::support::{
    Scrape, TEST_FINGERPRINT_KEY, TEST_JWT_SECRET, TEST_WEBHOOK_SECRET, TestApp, TestUser,
    assert_reason, redis_url, with_metrics,
};
use crate::webhooks::processing::{
    audit_trail, charge_state, disputes_of, keyed_charge, quick_workers, wait_for_state,
};
use crate::webhooks::receiving::{deliver, event, signed, stored_events};

/// An application with a worker running, Envoy in front of it and metrics on.
async fn app_with_a_worker() -> (TestApp, Envoy) {
    let app = TestApp::spawn_with(|settings| {
        with_metrics(settings);
        settings.webhook_workers = quick_workers(1);
        settings.billing_completer_interval = std::time::Duration::from_secs(3600);
    })
    .await;
    let envoy = Envoy::start_in_front_of(app.address.port()).await;
    (app, envoy)
}

/// A charge paid through the API in `admin`'s account.
async fn paid_in(app: &TestApp, admin: &TestUser, cents: i64) -> v1::Charge {
    let customer = app.add_user(admin, v1::UserRole::Customer).await;
    app.billing
        .clone()
        .create_charge(keyed_charge(
            admin,
            &customer.id.to_string(),
            cents,
            &Uuid::now_v7().to_string(),
        ))
        .await
        .expect("the charge is paid")
        .into_inner()
}

/// Delivers `body` through Envoy, signed now with the test instances' secret; the answer's
/// status must be 200.
async fn delivered(envoy: &Envoy, body: &[u8]) {
    let signature = signed(body, &[TEST_WEBHOOK_SECRET], chrono::Utc::now().timestamp());
    let (status, answer) = deliver(envoy, body, Some(&signature)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// The quarantine row of `event_id`: reason, named account and charge, payment, payment's
/// account and charge.
type QuarantineRow = (String, Uuid, Uuid, String, Option<Uuid>, Option<Uuid>);

async fn quarantine_of(app: &TestApp, event_id: &str) -> Option<QuarantineRow> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use supportdesk::db::schema::webhook_event_quarantines as q;
    let mut conn = app.database.connect().await;
    q::table
        .filter(q::event_id.eq(event_id))
        .select((
            q::reason,
            q::named_account_id,
            q::named_charge_id,
            q::payment_id,
            q::payment_account_id,
            q::payment_charge_id,
        ))
        .first(&mut conn)
        .await
        .optional()
        .expect("read webhook_event_quarantines")
}

#[tokio::test]
async fn a_dispute_naming_one_accounts_charge_and_anothers_payment_is_quarantined_and_applied_to_neither()
 {
    let (app, envoy) = app_with_a_worker().await;
    let other_admin = app.sign_up_another_account().await;
    let ours = paid_in(&app, &app.admin, 1_500).await;
    let theirs = paid_in(&app, &other_admin, 2_500).await;
    // Signed, so it passes every check of the receiving side; its metadata names our charge and
    // its payment is the other account's.
    let (event_id, body) = event(
        "charge.dispute.created",
        json!({"id": "dp_crossed", "object": "dispute", "amount": 2_500, "currency": "usd",
               "payment_intent": theirs.provider_payment_id, "reason": "fraudulent",
               "status": "needs_response", "created": chrono::Utc::now().timestamp(),
               "metadata": {"charge_id": ours.id}}),
    );
    delivered(&envoy, &body).await;

    let stored = stored_events(&app).await;
    let row = stored
        .iter()
        .find(|row| row.id == event_id)
        .expect("stored");
    assert_eq!(
        (row.account_id, row.charge_id),
        (None, None),
        "filed under neither account"
    );
    let processed = wait_for_state(&app.database, &event_id, "processed").await;
    assert_eq!(processed.outcome.as_deref(), Some("quarantined"));
    assert_eq!(processed.charge_id, None);
    assert_eq!(
        quarantine_of(&app, &event_id).await,
        Some((
            "accounts_disagree".to_owned(),
            app.account_id.as_uuid(),
            ours.id.parse().unwrap(),
            theirs.provider_payment_id.clone(),
            Some(other_admin.account_id.as_uuid()),
            Some(theirs.id.parse().unwrap()),
        ))
    );
    // Applied to neither charge: no dispute, no audit row, no change.
    for charge in [&ours, &theirs] {
        assert!(disputes_of(&app.database, &charge.id).await.is_empty());
        assert_eq!(
            audit_trail(&app.database, &charge.id).await.len(),
            2,
            "created and succeeded only"
        );
        assert_eq!(
            charge_state(&app.database, &charge.id).await,
            ("succeeded".to_owned(), 0)
        );
    }
    // Neither account's admin sees it.
    for admin in [&app.admin, &other_admin] {
        let hidden = app
            .webhooks
            .clone()
            .get_webhook_event(admin.request(v1::GetWebhookEventRequest {
                id: event_id.clone(),
            }))
            .await
            .expect_err("hidden from both accounts");
        assert_eq!(hidden.code(), tonic::Code::NotFound);
        assert_reason(&hidden, Reason::WebhookEventNotFound);
    }
    let scrape = Scrape::of(&app).await;
    assert_eq!(
        scrape.get("supportdesk_webhook_events_quarantined_total"),
        1
    );
}

#[tokio::test]
async fn events_whose_metadata_names_another_charge_of_the_account_or_a_charge_the_payment_is_not_of_are_quarantined_with_that_reason()
 {
    let (app, envoy) = app_with_a_worker().await;
    let first = paid_in(&app, &app.admin, 1_000).await;
    let second = paid_in(&app, &app.admin, 2_000).await;
    // A refund event about the second payment naming the first charge.
    let (crossed, body) = event(
        "charge.refunded",
        json!({"id": "ch_crossed", "object": "charge", "payment_intent": second.provider_payment_id,
               "metadata": {"charge_id": first.id}}),
    );
    delivered(&envoy, &body).await;
    // A payment made at the provider by no charge of ours, whose event names our first charge.
    let elsewhere: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/payment_intents", app.simulator.base_url()))
        .bearer_auth(app.simulator.api_key())
        .form(&[
            ("amount", "1000"),
            ("currency", "usd"),
            ("payment_method", "pm_card_visa"),
            ("confirm", "true"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let elsewhere_id = elsewhere["id"].as_str().unwrap().to_owned();
    let (not_of_it, body) = event(
        "payment_intent.succeeded",
        json!({"id": elsewhere_id, "object": "payment_intent",
               "metadata": {"charge_id": first.id}}),
    );
    delivered(&envoy, &body).await;

    for event_id in [&crossed, &not_of_it] {
        let processed = wait_for_state(&app.database, event_id, "processed").await;
        assert_eq!(processed.outcome.as_deref(), Some("quarantined"));
    }
    let first_id: Uuid = first.id.parse().unwrap();
    let account = app.account_id.as_uuid();
    assert_eq!(
        quarantine_of(&app, &crossed).await,
        Some((
            "charges_disagree".to_owned(),
            account,
            first_id,
            second.provider_payment_id.clone(),
            Some(account),
            Some(second.id.parse().unwrap()),
        ))
    );
    assert_eq!(
        quarantine_of(&app, &not_of_it).await,
        Some((
            "payment_not_of_named_charge".to_owned(),
            account,
            first_id,
            elsewhere_id.clone(),
            None,
            None,
        ))
    );

    // Operators list them, newest first, with the binary's `quarantined-webhooks`.
    let url = app.database.url();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_supportdesk"))
            .args(["quarantined-webhooks", "--limit", "10"])
            .env_clear()
            .env("DATABASE_URL", url.expose_secret())
            .env("REDIS_URL", redis_url())
            .env("JWT_SECRET", TEST_JWT_SECRET)
            .env("IDEMPOTENCY_FINGERPRINT_KEY", TEST_FINGERPRINT_KEY)
            .env("LOG_FORMAT", "json")
            .output()
            .expect("run supportdesk")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Vec<Vec<String>> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| line.split('\t').skip(1).map(str::to_owned).collect())
        .collect();
    let mut expected = vec![
        vec![
            crossed.clone(),
            "charge.refunded".to_owned(),
            "charges_disagree".to_owned(),
            account.to_string(),
            first.id.clone(),
            second.provider_payment_id.clone(),
            account.to_string(),
            second.id.clone(),
        ],
        vec![
            not_of_it.clone(),
            "payment_intent.succeeded".to_owned(),
            "payment_not_of_named_charge".to_owned(),
            account.to_string(),
            first.id.clone(),
            elsewhere_id,
            "-".to_owned(),
            "-".to_owned(),
        ],
    ];
    // Newest first: the worker may have taken them in either order.
    expected.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    assert_eq!(
        Scrape::of(&app)
            .await
            .get("supportdesk_webhook_events_quarantined_total"),
        2
    );
    // Nothing was applied to either charge.
    assert_eq!(audit_trail(&app.database, &first.id).await.len(), 2);
    assert_eq!(audit_trail(&app.database, &second.id).await.len(), 2);
}

#[tokio::test]
async fn an_event_whose_metadata_and_payment_name_the_same_charge_is_applied_as_before() {
    let (app, envoy) = app_with_a_worker().await;
    let charge = paid_in(&app, &app.admin, 3_000).await;
    app.simulator
        .refund_outside(
            &charge.provider_payment_id,
            payment_simulator::OutsideRefund {
                amount: Some(1_000),
                reason: None,
            },
        )
        .unwrap();
    let (event_id, body) = event(
        "charge.refunded",
        json!({"id": "ch_same", "object": "charge", "payment_intent": charge.provider_payment_id,
               "metadata": {"charge_id": charge.id}}),
    );
    delivered(&envoy, &body).await;
    let processed = wait_for_state(&app.database, &event_id, "processed").await;
    assert_eq!(processed.outcome.as_deref(), Some("applied"));
    assert_eq!(
        charge_state(&app.database, &charge.id).await,
        ("partially_refunded".to_owned(), 1_000)
    );
    assert_eq!(quarantine_of(&app, &event_id).await, None);
    assert_eq!(
        Scrape::of(&app)
            .await
            .get("supportdesk_webhook_events_quarantined_total"),
        0
    );
}
