//! The one per-RPC fixture table of the API, shared by the contract and tenancy suites: for each
//! RPC, its contract case (a call through Envoy that succeeds, the `Location` it must carry, and a
//! call that fails with the documented status) and its tenancy probe (the call aimed at another
//! account's resources, or at resources the caller does not own). Both suites walk the RPCs of
//! the descriptor set and look each one up here, so adding an RPC means adding one entry to its
//! service's file; an RPC without an entry fails both suites by name.

use std::future::Future;
use std::pin::Pin;

use reqwest::StatusCode;

use super::contract::{Call, Harness};
use super::tenancy::Target;
use crate::support::{TestApp, TestUser};

mod accounts;
mod api_keys;
mod attachments;
mod auth;
mod billing;
mod custom_fields;
mod dashboard;
mod events;
mod groups;
mod notifications;
mod operations;
mod schedules;
mod sla_policies;
mod tickets;
mod users;
mod views;
mod webhook_endpoints;
mod webhooks;

/// A contract case: a call that succeeds, the prefix of the `Location` it must carry (creates),
/// a call that fails, and the status it fails with.
pub(crate) type Cases = (Call, Option<String>, Call, StatusCode);

/// Building a contract case may need fixtures made over the API first.
pub(crate) type CaseFuture<'a> = Pin<Box<dyn Future<Output = Cases> + 'a>>;

/// A probe asserts as it goes: it panics on anything that leaks.
pub(crate) type ProbeFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// One tenancy probe's call: `attacker` aims `rpc` (as the descriptor names it,
/// `Service/Method`) at `target`'s resources in `app`.
#[derive(Clone, Copy)]
pub(crate) struct Attack<'a> {
    pub(crate) app: &'a TestApp,
    pub(crate) rpc: &'a str,
    pub(crate) attacker: &'a TestUser,
    pub(crate) target: &'a Target,
}

/// One RPC's row of the table.
pub(crate) struct RpcFixture {
    /// `Service.Method` (`google.longrunning.Operations.GetOperation` for the vendored service).
    pub(crate) rpc: &'static str,
    /// `None` for an RPC served over gRPC only (no REST mapping, so no call through Envoy).
    pub(crate) case: Option<fn(&Harness) -> CaseFuture<'_>>,
    pub(crate) probe: fn(Attack<'_>) -> ProbeFuture<'_>,
}

fn every_fixture() -> impl Iterator<Item = &'static RpcFixture> {
    [
        accounts::FIXTURES,
        api_keys::FIXTURES,
        attachments::FIXTURES,
        auth::FIXTURES,
        billing::FIXTURES,
        custom_fields::FIXTURES,
        dashboard::FIXTURES,
        events::FIXTURES,
        groups::FIXTURES,
        notifications::FIXTURES,
        operations::FIXTURES,
        schedules::FIXTURES,
        sla_policies::FIXTURES,
        tickets::FIXTURES,
        users::FIXTURES,
        views::FIXTURES,
        webhook_endpoints::FIXTURES,
        webhooks::FIXTURES,
    ]
    .into_iter()
    .flatten()
}

/// The entry of `rpc`, named `Service.Method` or `Service/Method`.
pub(crate) fn fixture_of(rpc: &str) -> Option<&'static RpcFixture> {
    let (service, method) = rpc
        .rsplit_once(['.', '/'])
        .unwrap_or_else(|| panic!("{rpc} is not Service.Method"));
    let name = format!("{service}.{method}");
    every_fixture().find(|fixture| fixture.rpc == name)
}
