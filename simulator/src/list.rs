//! Stripe's list endpoints (`GET /v1/payment_intents`, `GET /v1/refunds`): the objects created in
//! a `created[gte]` / `created[gt]` / `created[lte]` / `created[lt]` range (unix seconds), newest
//! first, at most `limit` (1 to 100, 10 by default) after the cursor `starting_after` (an object
//! id), answered as `{"object": "list", "data": [...], "has_more": ..., "url": ...}`. What
//! billing's reconciliation reads the provider's ledger with.

use serde_json::Value;

use crate::error::ApiFailure;
use crate::form::FormParams;

/// A parsed list request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ListQuery {
    /// Inclusive lower bound of `created`.
    from: Option<i64>,
    /// Exclusive upper bound of `created`.
    until: Option<i64>,
    limit: usize,
    starting_after: Option<String>,
    /// `expand[]=data.latest_charge` (payment intents only).
    pub(crate) expand_latest_charge: bool,
}

/// Something a list returns.
pub(crate) trait Listed {
    fn id(&self) -> &str;
    fn created(&self) -> i64;
}

fn bound(params: &FormParams, name: &str) -> Result<Option<i64>, ApiFailure> {
    params
        .get(name)
        .map(|raw| {
            raw.parse::<i64>().map_err(|_| {
                ApiFailure::invalid_param(
                    name,
                    Some("parameter_invalid_integer"),
                    format!("Invalid integer: {raw}"),
                )
            })
        })
        .transpose()
}

impl ListQuery {
    pub(crate) fn parse(params: &FormParams) -> Result<Self, ApiFailure> {
        let limit = match params.get("limit") {
            None => 10,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|limit| (1..=100).contains(limit))
                .ok_or_else(|| {
                    ApiFailure::invalid_param(
                        "limit",
                        Some("parameter_invalid_integer"),
                        "limit must be an integer between 1 and 100.",
                    )
                })?,
        };
        // A bare `created=<ts>` is an exact match, as on Stripe.
        let exact = bound(params, "created")?;
        let gte = bound(params, "created[gte]")?;
        let gt = bound(params, "created[gt]")?.map(|gt| gt.saturating_add(1));
        let lte = bound(params, "created[lte]")?.map(|lte| lte.saturating_add(1));
        let lt = bound(params, "created[lt]")?;
        let from = [exact, gte, gt].into_iter().flatten().max();
        let until = [exact.map(|at| at.saturating_add(1)), lte, lt]
            .into_iter()
            .flatten()
            .min();
        Ok(Self {
            from,
            until,
            limit,
            starting_after: params
                .get("starting_after")
                .filter(|cursor| !cursor.is_empty())
                .map(str::to_owned),
            expand_latest_charge: params
                .expand()
                .iter()
                .any(|field| field == "data.latest_charge"),
        })
    }

    /// One page of `rows` (in creation order), newest first; `has_more` when more follow it.
    /// A cursor that is not in the range is `resource_missing`, as on Stripe.
    pub(crate) fn page<'a, T: Listed + 'a>(
        &self,
        rows: impl DoubleEndedIterator<Item = &'a T>,
    ) -> Result<(Vec<&'a T>, bool), ApiFailure> {
        let mut newest_first = rows.rev().filter(|row| {
            self.from.is_none_or(|from| row.created() >= from)
                && self.until.is_none_or(|until| row.created() < until)
        });
        if let Some(cursor) = &self.starting_after {
            newest_first
                .by_ref()
                .find(|row| row.id() == cursor)
                .ok_or_else(|| {
                    ApiFailure::invalid_param(
                        "starting_after",
                        Some("resource_missing"),
                        format!("No such object: '{cursor}'"),
                    )
                })?;
        }
        let mut page: Vec<&T> = newest_first.by_ref().take(self.limit + 1).collect();
        let has_more = page.len() > self.limit;
        page.truncate(self.limit);
        Ok((page, has_more))
    }
}

impl Listed for crate::objects::PaymentIntent {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
}

impl Listed for crate::objects::Refund {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
}

/// Stripe's list object.
pub(crate) fn list_object(url: &str, data: Vec<Value>, has_more: bool) -> Value {
    serde_json::json!({
        "object": "list",
        "url": url,
        "has_more": has_more,
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row(&'static str, i64);

    impl Listed for Row {
        fn id(&self) -> &str {
            self.0
        }
        fn created(&self) -> i64 {
            self.1
        }
    }

    fn query(raw: &str) -> ListQuery {
        ListQuery::parse(&FormParams::parse(raw.as_bytes())).unwrap()
    }

    fn ids(page: &[&Row]) -> Vec<&'static str> {
        page.iter().map(|row| row.0).collect()
    }

    #[test]
    fn pages_run_newest_first_within_the_range_and_continue_after_the_cursor() {
        let rows = [
            Row("a", 10),
            Row("b", 20),
            Row("c", 20),
            Row("d", 30),
            Row("e", 40),
        ];
        let (page, more) = query("created[gte]=20&created[lt]=40&limit=2")
            .page(rows.iter())
            .unwrap();
        assert_eq!((ids(&page), more), (vec!["d", "c"], true));
        let (page, more) = query("created[gte]=20&created[lt]=40&limit=2&starting_after=c")
            .page(rows.iter())
            .unwrap();
        assert_eq!((ids(&page), more), (vec!["b"], false));
        let (page, _) = query("created[gt]=10&created[lte]=30")
            .page(rows.iter())
            .unwrap();
        assert_eq!(ids(&page), vec!["d", "c", "b"]);
    }

    #[test]
    fn a_bad_limit_or_an_unknown_cursor_is_refused() {
        for raw in ["limit=0", "limit=101", "limit=x", "created[gte]=soon"] {
            assert!(
                ListQuery::parse(&FormParams::parse(raw.as_bytes())).is_err(),
                "{raw}"
            );
        }
        let rows = [Row("a", 10)];
        assert!(query("starting_after=zz").page(rows.iter()).is_err());
    }
}
