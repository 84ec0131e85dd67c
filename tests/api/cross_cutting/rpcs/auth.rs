//! The AuthService rows of the RPC fixture table: for each RPC, its contract case (a call through
//! Envoy that succeeds and one that fails as documented) and its tenancy probe (the same call
//! aimed at another account's resources).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use supportdesk::wire::proto::v1;
use tonic::Code;

use super::{Attack, CaseFuture, Cases, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call};
use crate::cross_cutting::tenancy::assert_refused;
use crate::support::{TEST_PASSWORD, with_token};

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "AuthService.Login",
        case: Some(login_case),
        probe: login_probe,
    },
    RpcFixture {
        rpc: "AuthService.RequestPasswordReset",
        case: Some(request_password_reset_case),
        probe: request_password_reset_probe,
    },
    RpcFixture {
        rpc: "AuthService.ResetPassword",
        case: Some(reset_password_case),
        probe: reset_password_probe,
    },
    RpcFixture {
        rpc: "AuthService.RefreshToken",
        case: Some(refresh_token_case),
        probe: refresh_token_probe,
    },
    RpcFixture {
        rpc: "AuthService.Logout",
        case: Some(logout_case),
        probe: logout_or_logout_all_probe,
    },
    RpcFixture {
        rpc: "AuthService.LogoutAll",
        case: Some(logout_all_case),
        probe: logout_or_logout_all_probe,
    },
];

fn login_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let body = |password: &str| {
            json!({"account": harness.app.admin.account_slug, "email": harness.app.admin.email,
                   "password": password})
        };
        (
            call(
                Method::POST,
                "/v1/auth:login",
                None,
                Some(body(TEST_PASSWORD)),
            ),
            None,
            call(
                Method::POST,
                "/v1/auth:login",
                None,
                Some(body("wrong, wrong, wrong")),
            ),
            StatusCode::UNAUTHORIZED,
        )
    })
}

fn login_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        // The attacker's own password does not open the target's account.
        let result = app
            .auth
            .clone()
            .login(v1::LoginRequest {
                account: target.admin.account_slug.clone(),
                email: attacker.email.clone(),
                password: "not the target's password".to_owned(),
            })
            .await;
        assert_refused(rpc, result, &[Code::Unauthenticated]);
    })
}

fn request_password_reset_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let user = harness.fresh_session().await;
        (
            call(
                Method::POST,
                "/v1/auth:requestPasswordReset",
                None,
                Some(json!({"account": user.account_slug, "email": user.email})),
            ),
            None,
            call(
                Method::POST,
                "/v1/auth:requestPasswordReset",
                None,
                Some(json!({"account": user.account_slug, "email": "not an email"})),
            ),
            StatusCode::BAD_REQUEST,
        )
    })
}

fn request_password_reset_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            attacker,
            target,
            ..
        } = attack;
        // An address that is no user of the target account: the same answer as for one
        // that is, and nothing of the target is written.
        app.auth
            .clone()
            .request_password_reset(v1::RequestPasswordResetRequest {
                account: target.admin.account_slug.clone(),
                email: format!("not-{}", attacker.email),
            })
            .await
            .expect("the same empty answer");
    })
}

fn reset_password_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let user = harness.fresh_session().await;
        harness
            .app
            .auth
            .clone()
            .request_password_reset(tonic::Request::new(v1::RequestPasswordResetRequest {
                account: user.account_slug.clone(),
                email: user.email.clone(),
            }))
            .await
            .expect("a reset link");
        let token = crate::support::notifications::token_from_outbox(&harness.app, &user).await;
        let body = |token: &str| {
            json!({"account": user.account_slug, "token": token,
                   "newPassword": "a brand new passphrase"})
        };
        (
            call(
                Method::POST,
                "/v1/auth:resetPassword",
                None,
                Some(body(&token)),
            ),
            None,
            call(
                Method::POST,
                "/v1/auth:resetPassword",
                None,
                Some(body("not-a-token")),
            ),
            StatusCode::UNAUTHORIZED,
        )
    })
}

fn reset_password_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .auth
            .clone()
            .reset_password(v1::ResetPasswordRequest {
                account: target.admin.account_slug.clone(),
                token: format!("guessed-{}", attacker.id),
                new_password: "the attacker's choice".to_owned(),
            })
            .await;
        assert_refused(rpc, result, &[Code::Unauthenticated]);
    })
}

fn refresh_token_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let session = harness.fresh_session().await;
        (
            call(
                Method::POST,
                "/v1/auth:refresh",
                None,
                Some(json!({"refreshToken": session.refresh_token})),
            ),
            None,
            call(
                Method::POST,
                "/v1/auth:refresh",
                None,
                Some(json!({"refreshToken": "not-a-token"})),
            ),
            StatusCode::UNAUTHORIZED,
        )
    })
}

fn refresh_token_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack { app, attacker, .. } = attack;
        let tokens = app
            .auth
            .clone()
            .refresh_token(v1::RefreshTokenRequest {
                refresh_token: attacker.refresh_token.clone(),
            })
            .await
            .expect("the attacker's own session")
            .into_inner()
            .tokens
            .unwrap();
        let me = app
            .users
            .clone()
            .get_current_user(with_token(
                &tokens.access_token,
                v1::GetCurrentUserRequest {},
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(me.id, attacker.id.to_string(), "still the attacker");
    })
}

async fn logout_or_logout_all_cases(harness: &Harness, rpc: &str) -> Cases {
    let session = harness.fresh_session().await;
    let path = if rpc.ends_with("All") {
        "/v1/auth:logoutAll"
    } else {
        "/v1/auth:logout"
    };
    (
        call(
            Method::POST,
            path,
            Some(&session.access_token),
            Some(json!({})),
        ),
        None,
        call(Method::POST, path, Some(&harness.api_key), Some(json!({}))),
        StatusCode::FORBIDDEN,
    )
}

fn logout_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(logout_or_logout_all_cases(harness, "AuthService.Logout"))
}

fn logout_or_logout_all_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app, rpc, attacker, ..
        } = attack;
        let session =
            crate::support::log_in(&app.auth, &attacker.account_slug, &attacker.email).await;
        if rpc.ends_with("LogoutAll") {
            app.auth
                .clone()
                .logout_all(session.request(v1::LogoutAllRequest {}))
                .await
                .expect("the attacker's own sessions");
        } else {
            app.auth
                .clone()
                .logout(session.request(v1::LogoutRequest {}))
                .await
                .expect("the attacker's own session");
        }
        // The target's sessions are checked once all probes have run.
    })
}

fn logout_all_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(logout_or_logout_all_cases(harness, "AuthService.LogoutAll"))
}
