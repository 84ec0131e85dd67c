//! `supportdesk.v1.BillingService`: wire ↔ domain for charges and refunds; the phases, the
//! provider and the rules live in `service::billing`. Without a configured payment provider
//! every RPC answers FAILED_PRECONDITION `BILLING_NOT_CONFIGURED`: retrying cannot help, the
//! deployment must set `PAYMENT_PROVIDER_URL`.

use tonic::{Request, Response, Status};

use super::{KeyedRequest, ListPages, answer, created, required, scope, stored_as};
use crate::auth::Caller;
use crate::db::models::{ChargeListFilter, StoredCharge};
use crate::domain::{
    ChargeId, ChargeStatus, InvalidValue, Money, PageTokenKeys, TicketId, Timestamp, UserId,
    hyphenated_uuid,
};
use crate::errors::{AppError, FieldViolations, Reason};
use crate::idempotency::IdempotencyPolicy;
use crate::service::Billing;
use crate::service::billing::{CHARGE_PHASES, NewChargeRequest, REFUND_PHASES};
use crate::wire::convert::unless_unspecified;
use crate::wire::proto::v1;

pub struct BillingApi {
    billing: Option<Billing>,
    idempotency: IdempotencyPolicy,
    pages: PageTokenKeys,
}

impl BillingApi {
    /// `billing` is `None` when no payment provider is configured.
    pub fn new(
        billing: Option<Billing>,
        idempotency: IdempotencyPolicy,
        pages: PageTokenKeys,
    ) -> Self {
        Self {
            billing,
            idempotency,
            pages,
        }
    }

    fn billing(&self) -> Result<&Billing, AppError> {
        self.billing
            .as_ref()
            .ok_or_else(|| AppError::FailedPrecondition {
                reason: Reason::BillingNotConfigured,
                message: "billing is not configured on this deployment (no payment provider)"
                    .to_owned(),
                violations: Vec::new(),
            })
    }
}

fn charge_response(charge: &StoredCharge) -> Response<v1::Charge> {
    Response::new(v1::Charge::from(charge))
}

#[tonic::async_trait]
impl v1::billing_service_server::BillingService for BillingApi {
    async fn create_charge(
        &self,
        mut request: Request<v1::CreateChargeRequest>,
    ) -> Result<Response<v1::Charge>, Status> {
        let billing = self.billing()?;
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let new_charge = parse_new_charge(request.into_inner().charge)?;
        let respond = |charge: &StoredCharge| {
            created(
                charge_response(charge),
                &format!("/v1/charges/{}", charge.charge.id),
            )
        };
        let store = stored_as(&respond);
        let outcome = billing
            .create_charge(&keyed.phased_write(&store, CHARGE_PHASES), new_charge)
            .await?;
        answer(outcome, &respond)
    }

    async fn get_charge(
        &self,
        mut request: Request<v1::GetChargeRequest>,
    ) -> Result<Response<v1::Charge>, Status> {
        let billing = self.billing()?;
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let id = ChargeId::parse(&request.get_ref().id)
            .map_err(|problem| AppError::invalid_field("id", &problem))?;
        let charge = billing.get(&scope, id).await?;
        Ok(Response::new(as_seen_by(caller, v1::Charge::from(&charge))))
    }

    async fn list_reconciliation_findings(
        &self,
        mut request: Request<v1::ListReconciliationFindingsRequest>,
    ) -> Result<Response<v1::ListReconciliationFindingsResponse>, Status> {
        let billing = self.billing()?;
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        let run_id = optional_id(&mut violations, "run_id", &message.run_id, |raw| {
            hyphenated_uuid(raw).ok_or_else(|| InvalidValue::new("must be a UUID"))
        });
        let filters_refused = !violations.is_empty();
        // Page tokens are bound to the run filter.
        let list =
            (!filters_refused).then(|| format!("reconciliation-findings:{}", message.run_id));
        let page = ListPages::checked(
            &self.pages,
            caller,
            list.as_deref(),
            &mut violations,
            message.page_size,
            &message.page_token,
        );
        let Some((pages, page_size, after)) = page else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let page = billing
            .list_findings(&scope, run_id, page_size, after)
            .await?;
        Ok(Response::new(v1::ListReconciliationFindingsResponse {
            findings: page
                .items
                .iter()
                .map(v1::ReconciliationFinding::from)
                .collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn list_charges(
        &self,
        mut request: Request<v1::ListChargesRequest>,
    ) -> Result<Response<v1::ListChargesResponse>, Status> {
        let billing = self.billing()?;
        let scope = scope(&mut request)?;
        let caller = scope.caller()?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        let customer_id = optional_id(
            &mut violations,
            "customer_id",
            &message.customer_id,
            UserId::parse,
        );
        let ticket_id = optional_id(
            &mut violations,
            "ticket_id",
            &message.ticket_id,
            TicketId::parse,
        );
        let status = violations
            .check("status", unless_unspecified::<ChargeStatus>(message.status))
            .flatten();
        let created_after = message
            .created_after
            .and_then(|at| violations.check("created_after", Timestamp::try_from(at)));
        let created_before = message
            .created_before
            .and_then(|at| violations.check("created_before", Timestamp::try_from(at)));
        if message.needs_attention && caller.restricted_to_user().is_some() {
            violations.add(
                "needs_attention",
                &InvalidValue::new("only agents and admins can list charges by attention"),
            );
        }
        let filters_refused = !violations.is_empty();
        let filter = ChargeListFilter {
            customer_id,
            ticket_id,
            status,
            created_after: created_after.map(Timestamp::get),
            created_before: created_before.map(Timestamp::get),
            needs_attention: message.needs_attention,
        };
        // Page tokens are bound to every filter, the range included: a token issued for other
        // filters is refused (INVALID_ARGUMENT naming page_token).
        let list = (!filters_refused).then(|| {
            format!(
                "charges:{}:{}:{}:{:?}:{:?}:{}",
                message.customer_id,
                message.status,
                message.ticket_id,
                created_after.map(Timestamp::micros),
                created_before.map(Timestamp::micros),
                message.needs_attention,
            )
        });
        let page = ListPages::checked(
            &self.pages,
            caller,
            list.as_deref(),
            &mut violations,
            message.page_size,
            &message.page_token,
        );
        let Some((pages, page_size, after)) = page else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let page = billing.list(&scope, filter, page_size, after).await?;
        Ok(Response::new(v1::ListChargesResponse {
            charges: page
                .items
                .iter()
                .map(|charge| as_seen_by(caller, v1::Charge::from(charge)))
                .collect(),
            next_page_token: pages.next_token(page.next),
        }))
    }

    async fn refund_charge(
        &self,
        mut request: Request<v1::RefundChargeRequest>,
    ) -> Result<Response<v1::Charge>, Status> {
        let billing = self.billing()?;
        let keyed = KeyedRequest::of(&mut request, &self.idempotency)?;
        let message = request.get_ref();
        let mut violations = FieldViolations::new();
        let id = violations.check("id", ChargeId::parse(&message.id));
        let amount = match &message.amount {
            None => Some(None),
            Some(amount) => violations
                .check("amount", positive_amount(amount))
                .map(Some),
        };
        let (Some(id), Some(amount)) = (id, amount) else {
            return Err(AppError::InvalidArgument(violations).into());
        };
        let store = stored_as(&charge_response);
        let outcome = billing
            .refund_charge(&keyed.phased_write(&store, REFUND_PHASES), id, amount)
            .await?;
        answer(outcome, &charge_response)
    }
}

fn parse_new_charge(charge: Option<v1::Charge>) -> Result<NewChargeRequest, AppError> {
    let mut violations = FieldViolations::new();
    let Some(charge) = charge else {
        violations.add("charge", &required());
        return Err(AppError::InvalidArgument(violations));
    };
    let customer_id = violations.check("charge.customer_id", UserId::parse(&charge.customer_id));
    let ticket_id = optional_id(
        &mut violations,
        "charge.ticket_id",
        &charge.ticket_id,
        TicketId::parse,
    );
    let amount = match &charge.amount {
        None => {
            violations.add("charge.amount", &required());
            None
        }
        Some(amount) => violations.check("charge.amount", positive_amount(amount)),
    };
    let payment_method = charge.payment_method.trim();
    if payment_method.is_empty() || payment_method.len() > 255 {
        violations.add(
            "charge.payment_method",
            &InvalidValue::new("must be the provider's payment method id, 1 to 255 characters"),
        );
    }
    match (customer_id, amount) {
        (Some(customer_id), Some(amount)) if violations.is_empty() => Ok(NewChargeRequest {
            customer_id,
            ticket_id,
            amount,
            payment_method: payment_method.to_owned(),
        }),
        _ => Err(AppError::InvalidArgument(violations)),
    }
}

/// A positive amount in a known currency: a charge or a refund of nothing is refused.
fn positive_amount(money: &v1::Money) -> Result<Money, InvalidValue> {
    let parsed = Money::try_from(money)?;
    if parsed.amount_minor() <= 0 {
        return Err(InvalidValue::new("must be a positive amount"));
    }
    Ok(parsed)
}

fn optional_id<T>(
    violations: &mut FieldViolations,
    field: &str,
    raw: &str,
    parse: fn(&str) -> Result<T, InvalidValue>,
) -> Option<T> {
    if raw.is_empty() {
        None
    } else {
        violations.check(field, parse(raw))
    }
}

/// A charge as `caller` may see it: what waits for an operator is for agents and admins.
fn as_seen_by(caller: &Caller, mut charge: v1::Charge) -> v1::Charge {
    if caller.restricted_to_user().is_some() {
        charge.attention_reason.clear();
        charge.attention_time = None;
    }
    charge
}
