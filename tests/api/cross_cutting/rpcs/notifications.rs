//! The NotificationService rows of the RPC fixture table: for each RPC, its contract case (a call through
//! Envoy that succeeds and one that fails as documented) and its tenancy probe (the same call
//! aimed at another account's resources).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use supportdesk::wire::proto::v1;
use tonic::Code;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call, email_delivery};
use crate::cross_cutting::tenancy::{DENIED, HIDDEN_OR_DENIED, assert_refused, notifications};
use crate::support::TEST_EMAIL_WEBHOOK_SECRET;

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "NotificationService.ListNotifications",
        case: Some(list_notifications_case),
        probe: list_notifications_probe,
    },
    RpcFixture {
        rpc: "NotificationService.GetNotification",
        case: Some(get_notification_case),
        probe: get_notification_probe,
    },
    RpcFixture {
        rpc: "NotificationService.RedriveNotification",
        case: Some(redrive_notification_case),
        probe: redrive_notification_probe,
    },
    RpcFixture {
        rpc: "NotificationService.GetNotificationSettings",
        case: Some(get_notification_settings_case),
        probe: get_notification_settings_probe,
    },
    RpcFixture {
        rpc: "NotificationService.UpdateNotificationSettings",
        case: Some(update_notification_settings_case),
        probe: update_notification_settings_probe,
    },
    RpcFixture {
        rpc: "NotificationService.ListSuppressions",
        case: Some(list_suppressions_case),
        probe: list_suppressions_probe,
    },
    RpcFixture {
        rpc: "NotificationService.DeleteSuppression",
        case: Some(delete_suppression_case),
        probe: delete_suppression_probe,
    },
    RpcFixture {
        rpc: "NotificationService.ReceiveEmailEvent",
        case: Some(receive_email_event_case),
        probe: receive_email_event_probe,
    },
];

fn list_notifications_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(
                Method::GET,
                "/v1/notifications?state=NOTIFICATION_STATE_RECEIVED",
                admin,
                None,
            ),
            None,
            call(
                Method::GET,
                "/v1/notifications?state=NOTIFICATION_STATE_RECEIVED",
                Some(&harness.agent.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn list_notifications_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = notifications(app)
            .await
            .list_notifications(attacker.request(v1::ListNotificationsRequest {
                state: v1::NotificationState::Dead.into(),
                ..Default::default()
            }))
            .await;
        if foreign {
            let listed = result.expect("their own list").into_inner();
            assert!(listed.notifications.is_empty(), "{rpc}: {listed:?}");
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn get_notification_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let ticket = harness.new_ticket().await;
        let id = crate::support::notifications::acknowledgement_of(&harness.app, &ticket).await;
        (
            call(Method::GET, format!("/v1/notifications/{id}"), admin, None),
            None,
            call(
                Method::GET,
                format!("/v1/notifications/{unknown}"),
                admin,
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn get_notification_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = notifications(app)
            .await
            .get_notification(attacker.request(v1::GetNotificationRequest {
                id: target.notification_id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn redrive_notification_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        use crate::support::notifications::{acknowledgement_of, make_ended};
        let dead = acknowledgement_of(&harness.app, &harness.new_ticket().await).await;
        make_ended(&harness.app, &dead, "dead").await;
        let sent = acknowledgement_of(&harness.app, &harness.new_ticket().await).await;
        make_ended(&harness.app, &sent, "sent").await;
        (
            call(
                Method::POST,
                format!("/v1/notifications/{dead}:redrive"),
                admin,
                Some(json!({})),
            ),
            None,
            call(
                Method::POST,
                format!("/v1/notifications/{sent}:redrive"),
                admin,
                Some(json!({})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn redrive_notification_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = notifications(app)
            .await
            .redrive_notification(attacker.request(v1::RedriveNotificationRequest {
                id: target.notification_id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn get_notification_settings_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(Method::GET, "/v1/me/notification-settings", admin, None),
            None,
            call(
                Method::GET,
                "/v1/me/notification-settings",
                Some(&harness.api_key),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn get_notification_settings_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack { app, attacker, .. } = attack;
        // Self-scoped: the caller's own settings, whoever they are.
        let settings = notifications(app)
            .await
            .get_notification_settings(attacker.request(v1::GetNotificationSettingsRequest {}))
            .await
            .expect("the caller's own settings")
            .into_inner();
        assert!(settings.comment_notifications);
    })
}

fn update_notification_settings_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        (
            call(
                Method::PATCH,
                "/v1/me/notification-settings?updateMask=commentNotifications",
                Some(&harness.customer.access_token),
                Some(json!({"commentNotifications": false})),
            ),
            None,
            call(
                Method::PATCH,
                "/v1/me/notification-settings",
                Some(&harness.customer.access_token),
                Some(json!({"commentNotifications": false})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn update_notification_settings_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            attacker,
            target,
            ..
        } = attack;
        // Self-scoped: it can only ever change the caller's own row (set here to the value it
        // has, so the target account's snapshot holds).
        let settings = notifications(app)
            .await
            .update_notification_settings(attacker.request(v1::UpdateNotificationSettingsRequest {
                notification_settings: Some(v1::NotificationSettings {
                    comment_notifications: true,
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["comment_notifications".to_owned()],
                }),
            }))
            .await
            .expect("the caller's own settings")
            .into_inner();
        assert!(settings.comment_notifications);
        let owner = notifications(app)
            .await
            .get_notification_settings(target.owner.request(v1::GetNotificationSettingsRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert!(!owner.comment_notifications, "the owner's choice stands");
    })
}

fn list_suppressions_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(Method::GET, "/v1/suppressions", admin, None),
            None,
            call(
                Method::GET,
                "/v1/suppressions",
                Some(&harness.customer.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn list_suppressions_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = notifications(app)
            .await
            .list_suppressions(attacker.request(v1::ListSuppressionsRequest::default()))
            .await;
        if foreign {
            let listed = result.expect("their own list").into_inner();
            assert!(listed.suppressions.is_empty(), "{rpc}: {listed:?}");
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}

fn delete_suppression_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let address = format!("gone-{}@example.com", uuid::Uuid::now_v7().simple());
        crate::support::notifications::suppress(&harness.app, &address).await;
        (
            call(
                Method::DELETE,
                format!("/v1/suppressions/{address}"),
                admin,
                None,
            ),
            None,
            call(
                Method::DELETE,
                "/v1/suppressions/never-suppressed@example.com",
                admin,
                None,
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn delete_suppression_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = notifications(app)
            .await
            .delete_suppression(attacker.request(v1::DeleteSuppressionRequest {
                address: target.owner.email.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn receive_email_event_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let ticket = harness.new_ticket().await;
        let id = crate::support::notifications::acknowledgement_of(&harness.app, &ticket).await;
        let event = json!({
            "type": "email.bounced",
            "data": {"bounce": {"type": "Permanent", "message": "no such mailbox"},
                     "tags": {"notification_id": id}}
        });
        (
            email_delivery(event.clone(), TEST_EMAIL_WEBHOOK_SECRET),
            None,
            email_delivery(event, "whsec_b3RoZXJfc2VjcmV0X29mXzI0X2J5dGVz"),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn receive_email_event_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app, rpc, target, ..
        } = attack;
        // Public, and answerable only with the endpoint's secret: a complaint about the
        // target's notification, signed with a secret of the attacker's making.
        let body = crate::support::notifications::resend_event(
            "email.complained",
            &target.notification_id,
        );
        let result = notifications(app)
            .await
            .receive_email_event(crate::support::notifications::signed_delivery(
                body,
                "msg_attacker",
                "whsec_b3RoZXJfc2VjcmV0X29mXzI0X2J5dGVz",
            ))
            .await;
        assert_refused(rpc, result, &[Code::InvalidArgument]);
    })
}
