//! `GET /v1/payment_intents/search`: the subset of Stripe's search query language billing can use
//! to find a payment whose id it never learned (its answer was lost).
//!
//! Supported: clauses `metadata['key']:'value'`, `status:'succeeded'`, `customer:'cus_...'`,
//! `currency:'usd'`, joined by ` AND `. Stripe's search may lag writes by up to a minute; the
//! simulator's never does, so a test relying on it passes here and may flake on Stripe.

use crate::error::ApiFailure;
use crate::objects::PaymentIntent;

/// One `field:'value'` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Clause {
    Metadata { key: String, value: String },
    Status(String),
    Customer(String),
    Currency(String),
}

impl Clause {
    fn matches(&self, intent: &PaymentIntent) -> bool {
        match self {
            Clause::Metadata { key, value } => intent.metadata.get(key) == Some(value),
            Clause::Status(status) => {
                serde_json::to_value(intent.status)
                    .ok()
                    .as_ref()
                    .and_then(|v| v.as_str())
                    == Some(status.as_str())
            }
            Clause::Customer(customer) => intent.customer.as_deref() == Some(customer.as_str()),
            Clause::Currency(currency) => intent.currency == *currency,
        }
    }
}

/// A parsed query: every clause must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SearchQuery {
    clauses: Vec<Clause>,
}

fn unsupported(query: &str) -> ApiFailure {
    ApiFailure::invalid_param(
        "query",
        None,
        format!(
            "The simulator cannot parse the search query `{query}`: it supports \
             metadata['key']:'value', status:'...', customer:'...' and currency:'...' joined by \
             AND."
        ),
    )
}

/// `'text'` → `text`.
fn quoted(raw: &str) -> Option<String> {
    raw.strip_prefix('\'')?
        .strip_suffix('\'')
        .map(str::to_owned)
}

impl SearchQuery {
    pub(crate) fn parse(query: &str) -> Result<Self, ApiFailure> {
        let clauses = query
            .split(" AND ")
            .map(|clause| {
                let (field, value) = clause
                    .trim()
                    .split_once(':')
                    .ok_or_else(|| unsupported(query))?;
                let value = quoted(value.trim()).ok_or_else(|| unsupported(query))?;
                let field = field.trim();
                if let Some(key) = field
                    .strip_prefix("metadata[")
                    .and_then(|rest| rest.strip_suffix(']'))
                {
                    let key = quoted(key).ok_or_else(|| unsupported(query))?;
                    return Ok(Clause::Metadata { key, value });
                }
                match field {
                    "status" => Ok(Clause::Status(value)),
                    "customer" => Ok(Clause::Customer(value)),
                    "currency" => Ok(Clause::Currency(value)),
                    _ => Err(unsupported(query)),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { clauses })
    }

    pub(crate) fn matches(&self, intent: &PaymentIntent) -> bool {
        self.clauses.iter().all(|clause| clause.matches(intent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_status_clauses_parse() {
        let query =
            SearchQuery::parse("metadata['charge_id']:'c 1' AND status:'succeeded'").unwrap();
        assert_eq!(
            query.clauses,
            [
                Clause::Metadata {
                    key: "charge_id".to_owned(),
                    value: "c 1".to_owned()
                },
                Clause::Status("succeeded".to_owned())
            ]
        );
    }

    #[test]
    fn anything_else_is_refused_naming_the_query_param() {
        for query in ["amount>100", "metadata['a']:b", "foo:'bar'", ""] {
            let failure = SearchQuery::parse(query).unwrap_err();
            assert_eq!(failure.error.param.as_deref(), Some("query"), "{query}");
        }
    }
}
