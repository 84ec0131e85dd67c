//! Scriptable faults of the `/v1` API: what a request meets before (or instead of) a normal answer.
//!
//! A [`FaultRule`] names an endpoint, an action and how many matching requests it applies to
//! (`times`; none means until cleared). Each request takes at most one rule, the oldest active
//! one that matches, and uses up one of its `times`. Rules are set through `POST /_sim/faults` or
//! [`crate::SimulatorHandle::add_fault`].
//!
//! Faults that answer before execution (`server_error`, `rate_limit`, `reset_connection`,
//! `proxy_page`) save nothing under the request's idempotency key, as Stripe saves results only
//! once an endpoint began executing; a retry with the same key then runs normally. `execute_then_timeout` is the
//! opposite: the request runs and its result is saved, only the answer is lost. And
//! `execute_then_server_error` runs the request but saves and answers a 5xx, as Stripe does for
//! a 500 raised after execution began.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// The `/v1` endpoints faults can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /v1/payment_intents`
    CreatePaymentIntent,
    /// `GET /v1/payment_intents/{id}`
    RetrievePaymentIntent,
    /// `GET /v1/payment_intents/search`
    SearchPaymentIntents,
    /// `GET /v1/payment_intents` (the list)
    ListPaymentIntents,
    /// `POST /v1/refunds`
    CreateRefund,
    /// `GET /v1/refunds/{id}`
    RetrieveRefund,
    /// `GET /v1/charges/{id}`
    RetrieveCharge,
    /// `GET /v1/refunds` (the list)
    ListRefunds,
    /// Every `/v1` endpoint.
    Any,
}

impl Endpoint {
    fn matches(self, endpoint: Endpoint) -> bool {
        self == Endpoint::Any || self == endpoint
    }
}

/// How a later state change ends, for [`FaultAction::SettleLater`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettleOutcome {
    /// The payment or refund goes through.
    Succeed,
    /// The payment is declined (`generic_decline`) or the refund fails.
    Fail,
}

/// What a matching request meets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// The request executes after this delay. The idempotency key is held meanwhile, so a retry
    /// with the same key answers 409.
    Latency {
        /// Added delay.
        millis: u64,
    },
    /// Answer `status` (500, 502 or 503) with an `api_error` and `Stripe-Should-Retry: true`,
    /// without executing.
    ServerError {
        /// The HTTP status; must be 5xx.
        status: u16,
    },
    /// Answer 429 `rate_limit` with `Retry-After`, without executing.
    RateLimit {
        /// The `Retry-After` header's seconds.
        retry_after_secs: u64,
    },
    /// Close the TCP connection with a reset (RST), without executing or answering.
    ResetConnection,
    /// Answer `status` (4xx or 5xx) with an HTML page of a proxy in front of the provider,
    /// without the request reaching it: what a wrong base URL, a corporate proxy or a web
    /// application firewall answers. The body is no error object of Stripe's.
    ProxyPage {
        /// The HTTP status; must be 4xx or 5xx.
        status: u16,
    },
    /// Answer a 4xx error object of Stripe's, without executing: how tests meet every refusal
    /// the provider documents (`amount_too_large`, `resource_missing`, `charge_disputed`, a
    /// `card_error`, an `idempotency_error`, ...) whatever the request.
    Refuse {
        /// The HTTP status; must be 4xx.
        status: u16,
        /// The error's `type` (`invalid_request_error`, `card_error`, `idempotency_error`).
        error_type: String,
        /// The error's `code`.
        code: Option<String>,
        /// The error's `decline_code` (card errors).
        #[serde(default)]
        decline_code: Option<String>,
        /// The error's `param`.
        #[serde(default)]
        param: Option<String>,
    },
    /// Execute the request (the charge or refund happens and its result is saved under the
    /// idempotency key), then hold the connection without answering for `hang_millis` and close
    /// it: the client sees a timeout or a dropped connection while the provider did the work.
    ExecuteThenTimeout {
        /// How long to hold the connection before closing it; 0 closes at once.
        hang_millis: u64,
    },
    /// Execute the request (the charge or refund happens, its result is saved under the
    /// idempotency key and its webhook event is sent), then hold the answer until the test
    /// releases it ([`crate::SimulatorHandle::release_held_answer`], `POST /_sim/answers/release`;
    /// each release lets one held answer go, earlier or later) or `max_millis` pass: how a test
    /// makes the event reach the receiver before the request's answer reaches the client.
    ExecuteThenHoldAnswer {
        /// The longest the answer is held without a release.
        max_millis: u64,
    },
    /// Execute the request (the charge or refund happens), then answer `status` (5xx) with an
    /// `api_error` and save *that* under the idempotency key, as Stripe saves a 500 raised after
    /// execution began: a retry with the same key replays the error, and only reading the payment
    /// back (by id or search) shows it went through. On GETs it answers the error after reading.
    ExecuteThenServerError {
        /// The HTTP status; must be 5xx.
        status: u16,
    },
    /// The payment intent is created `processing` (a refund `pending`) and reaches its outcome
    /// after `after_millis`, with the matching webhook event.
    SettleLater {
        /// Delay before the outcome.
        after_millis: u64,
        /// The outcome.
        outcome: SettleOutcome,
    },
}

/// A fault to apply to the next `times` matching requests (or until cleared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    /// Which endpoint's requests it applies to.
    pub endpoint: Endpoint,
    /// What they meet.
    pub action: FaultAction,
    /// How many requests; none means until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

impl FaultRule {
    /// A rule for the next `times` requests to `endpoint`.
    pub fn new(endpoint: Endpoint, action: FaultAction, times: u32) -> Self {
        Self {
            endpoint,
            action,
            times: Some(times),
        }
    }

    /// A rule for every request to `endpoint` until cleared.
    pub fn always(endpoint: Endpoint, action: FaultAction) -> Self {
        Self {
            endpoint,
            action,
            times: None,
        }
    }
}

/// A rule in force, as listed by `GET /_sim/faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveFault {
    /// Its id, for `DELETE /_sim/faults/{id}`.
    pub id: u64,
    /// The rule as set.
    pub rule: FaultRule,
    /// Requests it still applies to; none means until cleared.
    pub remaining: Option<u32>,
    /// Requests it applied to so far.
    pub applied: u32,
}

/// Why a rule was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidFault {
    /// `server_error` and `execute_then_server_error` need a 5xx status.
    #[error("server errors need a status between 500 and 599, got {0}")]
    NotAServerError(u16),
    /// `refuse` needs a 4xx status.
    #[error("refusals need a status between 400 and 499, got {0}")]
    NotARefusal(u16),
    /// `proxy_page` needs a 4xx or 5xx status.
    #[error("proxy pages need a status between 400 and 599, got {0}")]
    NotAnErrorPage(u16),
    /// `times: 0` would never apply.
    #[error("times must be at least 1 (leave it out for \"until cleared\")")]
    ZeroTimes,
}

/// The active rules, oldest first.
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    rules: VecDeque<ActiveFault>,
    next_id: u64,
}

impl FaultBook {
    pub(crate) fn add(&mut self, rule: FaultRule) -> Result<ActiveFault, InvalidFault> {
        if let FaultAction::ServerError { status } | FaultAction::ExecuteThenServerError { status } =
            rule.action
            && !(500..=599).contains(&status)
        {
            return Err(InvalidFault::NotAServerError(status));
        }
        if let FaultAction::Refuse { status, .. } = rule.action
            && !(400..=499).contains(&status)
        {
            return Err(InvalidFault::NotARefusal(status));
        }
        if let FaultAction::ProxyPage { status } = rule.action
            && !(400..=599).contains(&status)
        {
            return Err(InvalidFault::NotAnErrorPage(status));
        }
        if rule.times == Some(0) {
            return Err(InvalidFault::ZeroTimes);
        }
        self.next_id += 1;
        let active = ActiveFault {
            id: self.next_id,
            remaining: rule.times,
            rule,
            applied: 0,
        };
        self.rules.push_back(active.clone());
        Ok(active)
    }

    /// Takes one use of the oldest rule matching `endpoint`, dropping rules that are used up.
    pub(crate) fn take(&mut self, endpoint: Endpoint) -> Option<FaultAction> {
        let index = self
            .rules
            .iter()
            .position(|active| active.rule.endpoint.matches(endpoint))?;
        let active = &mut self.rules[index];
        active.applied += 1;
        let action = active.rule.action.clone();
        if let Some(remaining) = active.remaining.as_mut() {
            *remaining -= 1;
            if *remaining == 0 {
                self.rules.remove(index);
            }
        }
        Some(action)
    }

    pub(crate) fn list(&self) -> Vec<ActiveFault> {
        self.rules.iter().cloned().collect()
    }

    pub(crate) fn remove(&mut self, id: u64) -> bool {
        let before = self.rules.len();
        self.rules.retain(|active| active.id != id);
        self.rules.len() != before
    }

    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_applies_exactly_its_times_to_matching_endpoints_only() {
        let mut book = FaultBook::default();
        book.add(FaultRule::new(
            Endpoint::CreateRefund,
            FaultAction::ResetConnection,
            2,
        ))
        .unwrap();
        assert_eq!(book.take(Endpoint::CreatePaymentIntent), None);
        assert_eq!(
            book.take(Endpoint::CreateRefund),
            Some(FaultAction::ResetConnection)
        );
        assert_eq!(
            book.take(Endpoint::CreateRefund),
            Some(FaultAction::ResetConnection)
        );
        assert_eq!(book.take(Endpoint::CreateRefund), None);
        assert!(book.list().is_empty());
    }

    #[test]
    fn an_until_cleared_rule_stays_until_removed() {
        let mut book = FaultBook::default();
        let active = book
            .add(FaultRule::always(
                Endpoint::Any,
                FaultAction::RateLimit {
                    retry_after_secs: 1,
                },
            ))
            .unwrap();
        for _ in 0..5 {
            assert!(book.take(Endpoint::RetrieveCharge).is_some());
        }
        assert_eq!(book.list()[0].applied, 5);
        assert!(book.remove(active.id));
        assert_eq!(book.take(Endpoint::RetrieveCharge), None);
    }

    #[test]
    fn rules_are_refused_when_they_cannot_mean_anything() {
        let mut book = FaultBook::default();
        assert_eq!(
            book.add(FaultRule::always(
                Endpoint::Any,
                FaultAction::ServerError { status: 404 }
            )),
            Err(InvalidFault::NotAServerError(404))
        );
        assert_eq!(
            book.add(FaultRule::new(
                Endpoint::Any,
                FaultAction::ResetConnection,
                0
            )),
            Err(InvalidFault::ZeroTimes)
        );
    }
}
