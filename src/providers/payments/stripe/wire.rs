//! The provider's JSON as it arrives (payment intents, charges, refunds, lists, errors) and its
//! conversion into the provider trait's types; nothing unexpected is guessed.

use super::*;

#[derive(Debug, Default, Deserialize)]
pub(super) struct WireErrorBody {
    #[serde(default)]
    pub(super) error: WireError,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct WireError {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) code: Option<String>,
    pub(super) decline_code: Option<String>,
    pub(super) message: Option<String>,
    pub(super) param: Option<String>,
    pub(super) payment_intent: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WirePaymentIntent {
    pub(super) id: String,
    pub(super) amount: i64,
    pub(super) currency: String,
    pub(super) status: String,
    #[serde(default)]
    pub(super) metadata: BTreeMap<String, String>,
    pub(super) latest_charge: Option<WireLatestCharge>,
    #[serde(default)]
    pub(super) last_payment_error: Option<WireLastPaymentError>,
}

/// The part of a payment intent's `last_payment_error` billing records.
#[derive(Debug, Deserialize)]
pub(super) struct WireLastPaymentError {
    pub(super) code: Option<String>,
    pub(super) decline_code: Option<String>,
}

/// `latest_charge` is an id, or the charge itself when expanded.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum WireLatestCharge {
    Id(String),
    Expanded { id: String, amount_refunded: i64 },
}

#[derive(Debug, Deserialize)]
pub(super) struct WireSearchResult {
    pub(super) data: Vec<WirePaymentIntent>,
}

/// Stripe's list object: a page, newest first. Its items are read one at a time ([`page_of`]):
/// the account's objects include ones other systems made, which need not be readable here.
#[derive(Debug, Deserialize)]
pub(super) struct WireList {
    pub(super) data: Vec<serde_json::Value>,
    pub(super) has_more: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireCharge {
    pub(super) id: String,
    pub(super) amount_refunded: i64,
    pub(super) currency: String,
    pub(super) payment_intent: String,
    #[serde(default)]
    pub(super) disputed: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireRefund {
    pub(super) id: String,
    pub(super) amount: i64,
    pub(super) currency: String,
    pub(super) payment_intent: String,
    pub(super) status: String,
    #[serde(default)]
    pub(super) metadata: BTreeMap<String, String>,
}

/// The query of a list request over `period`: at most 100, after the cursor.
pub(super) fn list_query(period: &LedgerPeriod, after: Option<&str>) -> Vec<(String, String)> {
    let mut query = vec![
        (
            "created[gte]".to_owned(),
            period.from.timestamp().to_string(),
        ),
        (
            "created[lt]".to_owned(),
            period.until.timestamp().to_string(),
        ),
        ("limit".to_owned(), "100".to_owned()),
    ];
    if let Some(after) = after {
        query.push(("starting_after".to_owned(), after.to_owned()));
    }
    query
}

/// A page of a list, with the next page's cursor: the last id when more follow. An item carrying
/// `our_key` in its metadata is one the service made and must read; any other the service cannot
/// read (a currency it does not support, a status or shape it does not know: another system's
/// object on the same account) is left out with a warning, so that it does not stop every
/// reconciliation run that lists it.
pub(super) fn page_of<W, T>(
    body: &[u8],
    our_key: &str,
    convert: impl Fn(W) -> Result<T, String>,
) -> Result<LedgerPage<T>, String>
where
    W: serde::de::DeserializeOwned,
{
    let wire: WireList =
        serde_json::from_slice(body).map_err(|error| format!("not a list: {error}"))?;
    let last_id = wire
        .data
        .last()
        .map(|item| item["id"].as_str().map(str::to_owned));
    let mut items = Vec::with_capacity(wire.data.len());
    for item in wire.data {
        let ours = item["metadata"].get(our_key).is_some();
        let id = item["id"].as_str().unwrap_or_default().to_owned();
        let read = serde_json::from_value::<W>(item)
            .map_err(|error| format!("list item {id:?}: {error}"))
            .and_then(&convert);
        match read {
            Ok(read) => items.push(read),
            Err(problem) if ours => return Err(problem),
            Err(problem) => {
                tracing::warn!(provider_object_id = %id, %problem,
                    "left out a provider object the service did not make and cannot read");
            }
        }
    }
    let next = if wire.has_more {
        Some(
            last_id
                .ok_or("a list with more to come and nothing in it")?
                .ok_or("a list whose last item has no id")?,
        )
    } else {
        None
    };
    Ok(LedgerPage { items, next })
}

pub(super) fn parse_payment_list(body: &[u8]) -> Result<LedgerPage<Payment>, String> {
    page_of(
        body,
        CreatePayment::CHARGE_ID_METADATA_KEY,
        payment_from_wire,
    )
}

pub(super) fn parse_refund_list(body: &[u8]) -> Result<LedgerPage<Refund>, String> {
    page_of(body, CreateRefund::REFUND_ID_METADATA_KEY, refund_from_wire)
}

pub(super) fn parse_payment(body: &[u8]) -> Result<Payment, String> {
    let wire: WirePaymentIntent =
        serde_json::from_slice(body).map_err(|error| format!("not a payment intent: {error}"))?;
    payment_from_wire(wire)
}

pub(super) fn parse_search(body: &[u8]) -> Result<Vec<Payment>, String> {
    let wire: WireSearchResult =
        serde_json::from_slice(body).map_err(|error| format!("not a search result: {error}"))?;
    // The provider lists newest first; callers want the first payment first.
    let mut payments = wire
        .data
        .into_iter()
        .map(payment_from_wire)
        .collect::<Result<Vec<_>, _>>()?;
    payments.reverse();
    Ok(payments)
}

pub(super) fn payment_from_wire(wire: WirePaymentIntent) -> Result<Payment, String> {
    let amount = Money::parse(wire.amount, &wire.currency)
        .map_err(|error| format!("payment {}: {error}", wire.id))?;
    let status = match wire.status.as_str() {
        "succeeded" => PaymentStatus::Succeeded,
        "processing" => PaymentStatus::Processing,
        "requires_payment_method" => PaymentStatus::RequiresPaymentMethod,
        "requires_confirmation" => PaymentStatus::RequiresConfirmation,
        "requires_action" => PaymentStatus::RequiresAction,
        "canceled" => PaymentStatus::Canceled,
        other => return Err(format!("payment {}: unknown status {other:?}", wire.id)),
    };
    let (latest_charge, amount_refunded) = match wire.latest_charge {
        None => (None, None),
        Some(WireLatestCharge::Id(id)) => (Some(id), None),
        Some(WireLatestCharge::Expanded {
            id,
            amount_refunded,
        }) => {
            let refunded = Money::new(amount_refunded, amount.currency())
                .map_err(|error| format!("payment {}: amount refunded {error}", wire.id))?;
            (Some(id), Some(refunded))
        }
    };
    Ok(Payment {
        charge_id: wire
            .metadata
            .get(CreatePayment::CHARGE_ID_METADATA_KEY)
            .cloned(),
        id: wire.id,
        status,
        amount,
        amount_refunded,
        latest_charge,
        last_payment_error: wire.last_payment_error.map(|error| PaymentFailure {
            code: error.code.unwrap_or_else(|| "card_declined".to_owned()),
            decline_code: error.decline_code,
        }),
    })
}

/// An id the provider made (`pi_...`, `ch_...`): safe to put in a path as is.
pub(super) fn is_provider_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

pub(super) fn parse_charge(body: &[u8]) -> Result<ProviderCharge, String> {
    let wire: WireCharge =
        serde_json::from_slice(body).map_err(|error| format!("not a charge: {error}"))?;
    let amount_refunded = Money::parse(wire.amount_refunded, &wire.currency)
        .map_err(|error| format!("charge {}: amount refunded {error}", wire.id))?;
    Ok(ProviderCharge {
        id: wire.id,
        payment_id: wire.payment_intent,
        amount_refunded,
        disputed: wire.disputed,
    })
}

pub(super) fn parse_refund(body: &[u8]) -> Result<Refund, String> {
    let wire: WireRefund =
        serde_json::from_slice(body).map_err(|error| format!("not a refund: {error}"))?;
    refund_from_wire(wire)
}

pub(super) fn refund_from_wire(wire: WireRefund) -> Result<Refund, String> {
    let amount = Money::parse(wire.amount, &wire.currency)
        .map_err(|error| format!("refund {}: {error}", wire.id))?;
    let status = match wire.status.as_str() {
        "pending" => RefundStatus::Pending,
        "succeeded" => RefundStatus::Succeeded,
        "failed" => RefundStatus::Failed,
        "canceled" => RefundStatus::Canceled,
        "requires_action" => RefundStatus::RequiresAction,
        other => return Err(format!("refund {}: unknown status {other:?}", wire.id)),
    };
    Ok(Refund {
        refund_id: wire
            .metadata
            .get(CreateRefund::REFUND_ID_METADATA_KEY)
            .cloned(),
        id: wire.id,
        payment_id: wire.payment_intent,
        amount,
        status,
    })
}
