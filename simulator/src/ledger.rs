//! The ledger: every payment intent, charge, refund and dispute the simulator actually created,
//! and the events their changes produced.
//!
//! This is the provider's book of record. Billing's exactly-once tests read it to count how many
//! provider charges exist for one of their charges (`metadata[charge_id]`), so it records every
//! creation, including declined attempts. All changes go through `&mut Ledger` under one lock,
//! which makes a refund's "does it still fit" check and its write one atomic step.

use std::collections::HashMap;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use crate::cards::{CardBehaviour, Decline, LATE_DECLINE};
use crate::error::ApiFailure;
use crate::faults::SettleOutcome;
use crate::form::{NewPaymentIntent, NewRefund, RefundTarget};
use crate::ids::{new_id, unix_now};
use crate::list::{ListQuery, list_object};
use crate::objects::{
    API_VERSION, Charge, ChargeStatus, Dispute, Event, EventData, EventRequest, PaymentIntent,
    PaymentIntentStatus, Refund, RefundStatus,
};

/// The request that caused a change, copied into its events.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    pub(crate) request_id: Option<String>,
    pub(crate) idempotency_key: Option<String>,
}

/// A copy of the ledger (or of the part matching a filter), oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerSnapshot {
    /// Every payment intent created, declined ones included.
    pub payment_intents: Vec<PaymentIntent>,
    /// Every charge attempted.
    pub charges: Vec<Charge>,
    /// Every refund created, failed ones included.
    pub refunds: Vec<Refund>,
    /// Every dispute opened.
    pub disputes: Vec<Dispute>,
}

/// Counts and sums over a [`LedgerSnapshot`], what exactly-once assertions usually need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSummary {
    /// Payment intents created.
    pub payment_intents: usize,
    /// Of which succeeded.
    pub succeeded: usize,
    /// Sum of `amount_received`.
    pub amount_received: i64,
    /// Refunds created (any status).
    pub refunds: usize,
    /// Sum of the refunds that are not failed or canceled.
    pub amount_refunded: i64,
    /// Disputes opened.
    pub disputes: usize,
}

impl LedgerSnapshot {
    /// The payment intents whose `metadata[key]` is `value`.
    pub fn payment_intents_with_metadata(&self, key: &str, value: &str) -> Vec<&PaymentIntent> {
        self.payment_intents
            .iter()
            .filter(|intent| intent.metadata.get(key).map(String::as_str) == Some(value))
            .collect()
    }

    /// Counts and sums.
    pub fn summary(&self) -> LedgerSummary {
        LedgerSummary {
            payment_intents: self.payment_intents.len(),
            succeeded: self
                .payment_intents
                .iter()
                .filter(|intent| intent.status == PaymentIntentStatus::Succeeded)
                .count(),
            amount_received: self
                .payment_intents
                .iter()
                .map(|intent| intent.amount_received)
                .sum(),
            refunds: self.refunds.len(),
            amount_refunded: self
                .refunds
                .iter()
                .filter(|refund| refund_counts(refund.status))
                .map(|refund| refund.amount)
                .sum(),
            disputes: self.disputes.len(),
        }
    }
}

/// Whether a refund in this state takes its amount off the charge.
fn refund_counts(status: RefundStatus) -> bool {
    match status {
        RefundStatus::Pending | RefundStatus::Succeeded => true,
        RefundStatus::Failed | RefundStatus::Canceled => false,
    }
}

/// Objects in creation order with an index by id.
#[derive(Debug)]
struct Table<T> {
    rows: Vec<T>,
    by_id: HashMap<String, usize>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            by_id: HashMap::new(),
        }
    }
}

impl<T: Clone> Table<T> {
    fn insert(&mut self, id: String, row: T) {
        self.by_id.insert(id, self.rows.len());
        self.rows.push(row);
    }

    fn get(&self, id: &str) -> Option<&T> {
        self.by_id.get(id).map(|&index| &self.rows[index])
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        self.by_id.get(id).map(|&index| &mut self.rows[index])
    }
}

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    payment_intents: Table<PaymentIntent>,
    charges: Table<Charge>,
    refunds: Table<Refund>,
    disputes: Vec<Dispute>,
    events: Vec<Event>,
    /// Where new events go to be delivered as webhooks.
    event_sink: Option<UnboundedSender<Event>>,
}

fn to_value<T: Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

impl Ledger {
    pub(crate) fn new(event_sink: UnboundedSender<Event>) -> Self {
        Self {
            event_sink: Some(event_sink),
            ..Self::default()
        }
    }

    /// Forgets everything (the event sink stays).
    pub(crate) fn clear(&mut self) {
        *self = Self {
            event_sink: self.event_sink.take(),
            ..Self::default()
        };
    }

    fn record_event(&mut self, event_type: &str, object: Value, origin: &Origin) {
        let event = Event {
            id: new_id("evt"),
            object: "event".to_owned(),
            api_version: API_VERSION.to_owned(),
            created: unix_now(),
            event_type: event_type.to_owned(),
            livemode: false,
            pending_webhooks: 1,
            request: EventRequest {
                id: origin.request_id.clone(),
                idempotency_key: origin.idempotency_key.clone(),
            },
            data: EventData { object },
        };
        self.events.push(event.clone());
        if let Some(sink) = &self.event_sink {
            // The dispatcher only stops at shutdown, when nothing needs delivering any more.
            let _ = sink.send(event);
        }
    }

    /// Creates (and with `confirm=true` confirms) a payment intent. A decline still creates the
    /// payment intent and a failed charge, and answers the 402 `card_error` carrying it.
    pub(crate) fn create_payment_intent(
        &mut self,
        request: NewPaymentIntent,
        settle_later: bool,
        origin: &Origin,
    ) -> Result<PaymentIntent, ApiFailure> {
        let created = unix_now();
        let mut intent = PaymentIntent {
            id: new_id("pi"),
            object: "payment_intent".to_owned(),
            amount: request.amount,
            amount_received: 0,
            currency: request.currency,
            customer: request.customer,
            payment_method: request.payment_method.as_ref().map(|(id, _)| id.clone()),
            status: if request.payment_method.is_some() {
                PaymentIntentStatus::RequiresConfirmation
            } else {
                PaymentIntentStatus::RequiresPaymentMethod
            },
            latest_charge: None,
            last_payment_error: None,
            description: request.description,
            metadata: request.metadata,
            created,
            livemode: false,
        };
        let behaviour = match request.payment_method {
            Some((_, behaviour)) if request.confirm => behaviour,
            Some(_) | None => {
                self.payment_intents
                    .insert(intent.id.clone(), intent.clone());
                return Ok(intent);
            }
        };

        let mut charge = Charge {
            id: new_id("ch"),
            object: "charge".to_owned(),
            amount: intent.amount,
            amount_captured: 0,
            amount_refunded: 0,
            currency: intent.currency.clone(),
            customer: intent.customer.clone(),
            payment_intent: intent.id.clone(),
            payment_method: intent.payment_method.clone(),
            status: ChargeStatus::Pending,
            paid: false,
            refunded: false,
            disputed: false,
            failure_code: None,
            failure_message: None,
            metadata: intent.metadata.clone(),
            created,
            livemode: false,
        };
        intent.latest_charge = Some(charge.id.clone());

        let (event_type, outcome) = match behaviour {
            CardBehaviour::Approve if settle_later => {
                intent.status = PaymentIntentStatus::Processing;
                ("payment_intent.processing", Ok(()))
            }
            CardBehaviour::Approve => {
                approve(&mut intent, &mut charge);
                ("payment_intent.succeeded", Ok(()))
            }
            CardBehaviour::Decline(decline) => {
                let failure = decline_failure(&mut intent, &mut charge, decline);
                ("payment_intent.payment_failed", Err(failure))
            }
        };
        self.charges.insert(charge.id.clone(), charge);
        self.payment_intents
            .insert(intent.id.clone(), intent.clone());
        self.record_event(event_type, to_value(&intent), origin);
        outcome.map(|()| intent)
    }

    /// Ends a `processing` payment intent; does nothing to one that is not processing.
    pub(crate) fn settle_payment_intent(&mut self, id: &str, outcome: SettleOutcome) {
        let Some(intent) = self.payment_intents.get_mut(id) else {
            return;
        };
        if intent.status != PaymentIntentStatus::Processing {
            return;
        }
        let Some(charge) = intent
            .latest_charge
            .as_deref()
            .and_then(|charge_id| self.charges.get_mut(charge_id))
        else {
            return;
        };
        let event_type = match outcome {
            SettleOutcome::Succeed => {
                approve(intent, charge);
                "payment_intent.succeeded"
            }
            SettleOutcome::Fail => {
                decline_failure(intent, charge, LATE_DECLINE);
                "payment_intent.payment_failed"
            }
        };
        let object = to_value(&*intent);
        self.record_event(event_type, object, &Origin::default());
    }

    /// The payment intents matching `query`, newest first (as Stripe orders search results).
    pub(crate) fn search_payment_intents(
        &self,
        query: &crate::search::SearchQuery,
    ) -> Vec<&PaymentIntent> {
        self.payment_intents
            .rows
            .iter()
            .rev()
            .filter(|intent| query.matches(intent))
            .collect()
    }

    /// `GET /v1/payment_intents`: a page of payment intents, newest first, with their latest
    /// charge expanded when asked (`expand[]=data.latest_charge`).
    pub(crate) fn list_payment_intents(&self, query: &ListQuery) -> Result<Value, ApiFailure> {
        let (page, has_more) = query.page(self.payment_intents.rows.iter())?;
        let data = page
            .into_iter()
            .map(|intent| {
                let mut value = to_value(intent);
                if query.expand_latest_charge
                    && let Some(charge) = intent
                        .latest_charge
                        .as_deref()
                        .and_then(|charge_id| self.charges.get(charge_id))
                {
                    value["latest_charge"] = to_value(charge);
                }
                value
            })
            .collect();
        Ok(list_object("/v1/payment_intents", data, has_more))
    }

    /// `GET /v1/refunds`: a page of refunds (ours and those made in the dashboard), newest first.
    pub(crate) fn list_refunds(&self, query: &ListQuery) -> Result<Value, ApiFailure> {
        let (page, has_more) = query.page(self.refunds.rows.iter())?;
        let data = page.into_iter().map(to_value).collect();
        Ok(list_object("/v1/refunds", data, has_more))
    }

    pub(crate) fn payment_intent(&self, id: &str) -> Option<&PaymentIntent> {
        self.payment_intents.get(id)
    }

    pub(crate) fn charge(&self, id: &str) -> Option<&Charge> {
        self.charges.get(id)
    }

    pub(crate) fn refund(&self, id: &str) -> Option<&Refund> {
        self.refunds.get(id)
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        self.events.clone()
    }

    /// The charge a refund or dispute of `target` applies to: the payment intent's successful
    /// charge.
    fn refundable_charge_id(&self, target: &RefundTarget) -> Result<String, ApiFailure> {
        let (intent_id, param) = match target {
            RefundTarget::PaymentIntent(id) => (id.clone(), "payment_intent"),
            RefundTarget::Charge(id) => {
                let charge = self
                    .charges
                    .get(id)
                    .ok_or_else(|| ApiFailure::no_such_param_object("charge", id, "charge"))?;
                (charge.payment_intent.clone(), "charge")
            }
        };
        let intent = self
            .payment_intents
            .get(&intent_id)
            .ok_or_else(|| ApiFailure::no_such_param_object("payment_intent", &intent_id, param))?;
        let charge_id = intent
            .latest_charge
            .as_deref()
            .filter(|_| intent.status == PaymentIntentStatus::Succeeded)
            .ok_or_else(|| {
                ApiFailure::invalid_param(
                    param,
                    Some("payment_intent_unexpected_state"),
                    format!(
                        "This PaymentIntent ({intent_id}) does not have a successful charge to \
                         refund."
                    ),
                )
            })?;
        Ok(charge_id.to_owned())
    }

    /// Refunds all or part of a payment. The refunds of a charge never add up to more than it.
    pub(crate) fn create_refund(
        &mut self,
        request: NewRefund,
        settle_later: bool,
        origin: &Origin,
    ) -> Result<Refund, ApiFailure> {
        let charge_id = self.refundable_charge_id(&request.target)?;
        let Some(charge) = self.charges.get_mut(&charge_id) else {
            return Err(ApiFailure::api_error(StatusCode::INTERNAL_SERVER_ERROR));
        };
        if charge.disputed {
            return Err(ApiFailure::invalid_request(
                StatusCode::BAD_REQUEST,
                Some("charge_disputed"),
                format!("Charge {charge_id} has been charged back; cannot issue a refund."),
            ));
        }
        let unrefunded = charge.amount - charge.amount_refunded;
        if unrefunded == 0 {
            return Err(ApiFailure::invalid_request(
                StatusCode::BAD_REQUEST,
                Some("charge_already_refunded"),
                format!("Charge {charge_id} has already been refunded."),
            ));
        }
        let amount = request.amount.unwrap_or(unrefunded);
        if amount > unrefunded {
            return Err(ApiFailure::invalid_param(
                "amount",
                Some("amount_too_large"),
                format!(
                    "Refund amount ({amount}) is greater than unrefunded amount on charge \
                     ({unrefunded})"
                ),
            ));
        }
        charge.amount_refunded += amount;
        charge.refunded = charge.amount_refunded == charge.amount;
        let charge_object = to_value(&*charge);
        let refund = Refund {
            id: new_id("re"),
            object: "refund".to_owned(),
            amount,
            charge: charge_id,
            currency: charge.currency.clone(),
            payment_intent: charge.payment_intent.clone(),
            status: if settle_later {
                RefundStatus::Pending
            } else {
                RefundStatus::Succeeded
            },
            reason: request.reason,
            failure_reason: None,
            metadata: request.metadata,
            created: unix_now(),
        };
        self.refunds.insert(refund.id.clone(), refund.clone());
        self.record_event("charge.refunded", charge_object, origin);
        Ok(refund)
    }

    /// Ends a `pending` refund. A failed refund gives its amount back to the charge.
    pub(crate) fn settle_refund(&mut self, id: &str, outcome: SettleOutcome) {
        let Some(refund) = self.refunds.get_mut(id) else {
            return;
        };
        if refund.status != RefundStatus::Pending {
            return;
        }
        match outcome {
            SettleOutcome::Succeed => refund.status = RefundStatus::Succeeded,
            SettleOutcome::Fail => {
                refund.status = RefundStatus::Failed;
                refund.failure_reason = Some("declined".to_owned());
                if let Some(charge) = self.charges.get_mut(&refund.charge) {
                    charge.amount_refunded -= refund.amount;
                    charge.refunded = charge.amount_refunded == charge.amount;
                }
            }
        }
        let object = to_value(&*refund);
        self.record_event("charge.refund.updated", object, &Origin::default());
    }

    /// Opens a dispute on a payment intent's successful charge (the cardholder's bank, not the
    /// merchant, starts it; hence only a control call does).
    pub(crate) fn create_dispute(
        &mut self,
        payment_intent_id: &str,
        reason: String,
    ) -> Result<Dispute, ApiFailure> {
        let charge_id =
            self.refundable_charge_id(&RefundTarget::PaymentIntent(payment_intent_id.to_owned()))?;
        let Some(charge) = self.charges.get_mut(&charge_id) else {
            return Err(ApiFailure::api_error(StatusCode::INTERNAL_SERVER_ERROR));
        };
        if charge.disputed {
            return Err(ApiFailure::invalid_request(
                StatusCode::BAD_REQUEST,
                Some("charge_disputed"),
                format!("Charge {charge_id} is already disputed."),
            ));
        }
        charge.disputed = true;
        let dispute = Dispute {
            id: new_id("dp"),
            object: "dispute".to_owned(),
            amount: charge.amount - charge.amount_refunded,
            charge: charge_id,
            currency: charge.currency.clone(),
            payment_intent: charge.payment_intent.clone(),
            reason,
            status: "needs_response".to_owned(),
            created: unix_now(),
        };
        self.disputes.push(dispute.clone());
        self.record_event(
            "charge.dispute.created",
            to_value(&dispute),
            &Origin::default(),
        );
        Ok(dispute)
    }

    /// The whole ledger, or with a metadata filter only the matching payment intents and what
    /// hangs off them.
    pub(crate) fn snapshot(&self, metadata_filter: Option<(&str, &str)>) -> LedgerSnapshot {
        let keep = |intent: &PaymentIntent| match metadata_filter {
            None => true,
            Some((key, value)) => intent.metadata.get(key).map(String::as_str) == Some(value),
        };
        let payment_intents: Vec<PaymentIntent> = self
            .payment_intents
            .rows
            .iter()
            .filter(|intent| keep(intent))
            .cloned()
            .collect();
        let kept = |intent_id: &str| payment_intents.iter().any(|intent| intent.id == intent_id);
        LedgerSnapshot {
            charges: self
                .charges
                .rows
                .iter()
                .filter(|charge| kept(&charge.payment_intent))
                .cloned()
                .collect(),
            refunds: self
                .refunds
                .rows
                .iter()
                .filter(|refund| kept(&refund.payment_intent))
                .cloned()
                .collect(),
            disputes: self
                .disputes
                .iter()
                .filter(|dispute| kept(&dispute.payment_intent))
                .cloned()
                .collect(),
            payment_intents,
        }
    }
}

fn approve(intent: &mut PaymentIntent, charge: &mut Charge) {
    intent.status = PaymentIntentStatus::Succeeded;
    intent.amount_received = intent.amount;
    charge.status = ChargeStatus::Succeeded;
    charge.paid = true;
    charge.amount_captured = charge.amount;
}

/// Marks the attempt declined and builds the 402 Stripe answers with.
fn decline_failure(
    intent: &mut PaymentIntent,
    charge: &mut Charge,
    decline: Decline,
) -> ApiFailure {
    let mut failure = ApiFailure::card_declined(
        decline.code,
        decline.decline_code,
        decline.message,
        decline.param,
    );
    charge.status = ChargeStatus::Failed;
    charge.failure_code = Some(decline.code.to_owned());
    charge.failure_message = Some(decline.message.to_owned());
    intent.status = PaymentIntentStatus::RequiresPaymentMethod;
    intent.last_payment_error = Some((*failure.error).clone());
    failure.error.charge = Some(charge.id.clone());
    failure.error.payment_intent = Some(to_value(&*intent));
    failure
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::FormParams;

    fn ledger() -> Ledger {
        let (sink, _events) = tokio::sync::mpsc::unbounded_channel();
        Ledger::new(sink)
    }

    fn pay(ledger: &mut Ledger, raw: &str) -> Result<PaymentIntent, ApiFailure> {
        let request = NewPaymentIntent::parse(&FormParams::parse(raw.as_bytes())).unwrap();
        ledger.create_payment_intent(request, false, &Origin::default())
    }

    fn refund(ledger: &mut Ledger, raw: &str) -> Result<Refund, ApiFailure> {
        let request = NewRefund::parse(&FormParams::parse(raw.as_bytes())).unwrap();
        ledger.create_refund(request, false, &Origin::default())
    }

    #[test]
    fn refunds_never_exceed_the_payment() {
        let mut ledger = ledger();
        let intent = pay(
            &mut ledger,
            "amount=1000&currency=usd&payment_method=pm_card_visa&confirm=true",
        )
        .unwrap();
        let pi = &intent.id;
        refund(&mut ledger, &format!("payment_intent={pi}&amount=600")).unwrap();
        let too_large =
            refund(&mut ledger, &format!("payment_intent={pi}&amount=401")).unwrap_err();
        assert_eq!(too_large.error.code.as_deref(), Some("amount_too_large"));
        refund(&mut ledger, &format!("payment_intent={pi}")).unwrap();
        let again = refund(&mut ledger, &format!("payment_intent={pi}&amount=1")).unwrap_err();
        assert_eq!(again.error.code.as_deref(), Some("charge_already_refunded"));
        let charge = ledger
            .charge(intent.latest_charge.as_deref().unwrap())
            .unwrap();
        assert_eq!(charge.amount_refunded, 1000);
        assert!(charge.refunded);
        assert_eq!(ledger.snapshot(None).summary().amount_refunded, 1000);
    }

    #[test]
    fn a_declined_payment_is_recorded_with_its_failed_charge() {
        let mut ledger = ledger();
        let failure = pay(
            &mut ledger,
            "amount=1000&currency=usd&payment_method=pm_card_chargeDeclined&confirm=true\
             &metadata[charge_id]=c1",
        )
        .unwrap_err();
        assert_eq!(failure.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(
            failure.error.decline_code.as_deref(),
            Some("generic_decline")
        );
        let snapshot = ledger.snapshot(Some(("charge_id", "c1")));
        assert_eq!(snapshot.payment_intents.len(), 1);
        assert_eq!(
            snapshot.payment_intents[0].status,
            PaymentIntentStatus::RequiresPaymentMethod
        );
        assert_eq!(snapshot.charges[0].status, ChargeStatus::Failed);
        assert!(
            refund(
                &mut ledger,
                &format!("payment_intent={}", snapshot.payment_intents[0].id)
            )
            .is_err()
        );
    }

    #[test]
    fn a_processing_payment_settles_once() {
        let mut ledger = ledger();
        let request = NewPaymentIntent::parse(&FormParams::parse(
            b"amount=700&currency=eur&payment_method=pm_card_visa&confirm=true",
        ))
        .unwrap();
        let intent = ledger
            .create_payment_intent(request, true, &Origin::default())
            .unwrap();
        assert_eq!(intent.status, PaymentIntentStatus::Processing);
        ledger.settle_payment_intent(&intent.id, SettleOutcome::Succeed);
        ledger.settle_payment_intent(&intent.id, SettleOutcome::Fail);
        let settled = ledger.payment_intent(&intent.id).unwrap();
        assert_eq!(settled.status, PaymentIntentStatus::Succeeded);
        assert_eq!(settled.amount_received, 700);
        let types: Vec<_> = ledger.events().into_iter().map(|e| e.event_type).collect();
        assert_eq!(
            types,
            ["payment_intent.processing", "payment_intent.succeeded"]
        );
    }
}
