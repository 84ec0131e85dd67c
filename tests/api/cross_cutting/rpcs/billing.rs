//! The BillingService rows of the RPC fixture table: for each RPC, its contract case (a call through
//! Envoy that succeeds and one that fails as documented) and its tenancy probe (the same call
//! aimed at another account's resources).

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use supportdesk::wire::proto::v1;

use super::{Attack, CaseFuture, ProbeFuture, RpcFixture};
use crate::cross_cutting::contract::{Harness, call};
use crate::cross_cutting::tenancy::{DENIED, HIDDEN, HIDDEN_OR_DENIED, assert_refused};
use crate::support::keyed;

pub(super) const FIXTURES: &[RpcFixture] = &[
    RpcFixture {
        rpc: "BillingService.CreateCharge",
        case: Some(create_charge_case),
        probe: create_charge_probe,
    },
    RpcFixture {
        rpc: "BillingService.GetCharge",
        case: Some(get_charge_case),
        probe: get_charge_probe,
    },
    RpcFixture {
        rpc: "BillingService.ListCharges",
        case: Some(list_charges_case),
        probe: list_charges_probe,
    },
    RpcFixture {
        rpc: "BillingService.RefundCharge",
        case: Some(refund_charge_case),
        probe: refund_charge_probe,
    },
    RpcFixture {
        rpc: "BillingService.ListReconciliationFindings",
        case: Some(list_reconciliation_findings_case),
        probe: list_reconciliation_findings_probe,
    },
];

fn create_charge_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(
                Method::POST,
                "/v1/charges",
                admin,
                Some(harness.charge_body()),
            ),
            Some("/v1/charges/".to_owned()),
            call(
                Method::POST,
                "/v1/charges",
                Some(&harness.customer.access_token),
                Some(harness.charge_body()),
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn create_charge_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .billing
            .clone()
            .create_charge(keyed(attacker.request(v1::CreateChargeRequest {
                charge: Some(v1::Charge {
                    customer_id: target.owner.id.to_string(),
                    amount: Some(v1::Money {
                        amount_minor: 100,
                        currency_code: "USD".to_owned(),
                    }),
                    payment_method: "pm_card_visa".to_owned(),
                    ..Default::default()
                }),
            })))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn get_charge_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let id = harness.new_charge().await;
        (
            call(Method::GET, format!("/v1/charges/{id}"), admin, None),
            None,
            call(Method::GET, format!("/v1/charges/{unknown}"), admin, None),
            StatusCode::NOT_FOUND,
        )
    })
}

fn get_charge_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .billing
            .clone()
            .get_charge(attacker.request(v1::GetChargeRequest {
                id: target.charge.id.clone(),
            }))
            .await;
        assert_refused(rpc, result, HIDDEN);
    })
}

fn list_charges_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(Method::GET, "/v1/charges", admin, None),
            None,
            call(Method::GET, "/v1/charges", None, None),
            StatusCode::UNAUTHORIZED,
        )
    })
}

fn list_charges_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            attacker,
            target,
            ..
        } = attack;
        let charges = app
            .billing
            .clone()
            .list_charges(attacker.request(v1::ListChargesRequest {
                page_size: 100,
                ..Default::default()
            }))
            .await
            .expect("the attacker's own charges")
            .into_inner()
            .charges;
        assert!(charges.iter().all(|charge| charge.id != target.charge.id));
    })
}

fn refund_charge_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        let unknown = "0190a8a4-7c3e-7b2d-9f1a-3c5e7d9b1a2c";
        let id = harness.new_charge().await;
        let body = json!({"amount": {"amountMinor": "300", "currencyCode": "USD"}});
        (
            call(
                Method::POST,
                format!("/v1/charges/{id}:refund"),
                admin,
                Some(body.clone()),
            ),
            None,
            call(
                Method::POST,
                format!("/v1/charges/{unknown}:refund"),
                admin,
                Some(body),
            ),
            StatusCode::NOT_FOUND,
        )
    })
}

fn refund_charge_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let result = app
            .billing
            .clone()
            .refund_charge(keyed(attacker.request(v1::RefundChargeRequest {
                id: target.charge.id.clone(),
                amount: None,
            })))
            .await;
        assert_refused(rpc, result, HIDDEN_OR_DENIED);
    })
}

fn list_reconciliation_findings_case(harness: &Harness) -> CaseFuture<'_> {
    Box::pin(async move {
        let admin = harness.admin();
        (
            call(
                Method::GET,
                "/v1/billing/reconciliation-findings",
                admin,
                None,
            ),
            None,
            call(
                Method::GET,
                "/v1/billing/reconciliation-findings",
                Some(&harness.agent.access_token),
                None,
            ),
            StatusCode::FORBIDDEN,
        )
    })
}

fn list_reconciliation_findings_probe(attack: Attack<'_>) -> ProbeFuture<'_> {
    Box::pin(async move {
        let Attack {
            app,
            rpc,
            attacker,
            target,
        } = attack;
        let foreign = attacker.account_id != target.admin.account_id;
        let result = app
            .billing
            .clone()
            .list_reconciliation_findings(attacker.request(v1::ListReconciliationFindingsRequest {
                page_size: 100,
                ..Default::default()
            }))
            .await;
        if foreign {
            let listed = result.expect("their own list").into_inner();
            assert!(
                listed
                    .findings
                    .iter()
                    .all(|finding| finding.charge_id != target.charge.id),
                "{rpc}: {listed:?}"
            );
        } else {
            assert_refused(rpc, result, DENIED);
        }
    })
}
