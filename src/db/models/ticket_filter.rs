//! A ticket filter (domain `TicketFilterExpr`, docs/tickets.md "The filter language") as SQL
//! over the `tickets` columns: the one compiler of the filter language, used by the DSL's list
//! queries and by the written-out SQL of search and the change feed alike; and the two ways
//! to say how many tickets filters match (views' counts, lists' `total_size`): a capped count
//! and the planner's estimate.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{self, Array, BigInt, Json, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::{KeepPrepared, PlannedPerCall};
use crate::domain::{Test, TicketFilterExpr, TicketOrder, TicketOrderField, TimeField};
use crate::errors::{AppError, AppResult};

#[derive(Debug, diesel::QueryableByName)]
struct Counts {
    #[diesel(sql_type = Array<BigInt>)]
    counts: Vec<i64>,
}

#[derive(Debug, diesel::QueryableByName)]
struct Plan {
    #[diesel(sql_type = Json, column_name = "QUERY PLAN")]
    plan: serde_json::Value,
}

/// A ticket filter's conditions (domain `TicketFilterExpr`) as SQL over the `tickets` columns,
/// every value a bind parameter. Built once per query, with relative times (`now(-24h)`)
/// resolved at `now`; usable in the DSL's queries (`.filter(..)`) and appended to written-out
/// SQL ([`FilterSql::append_to`]). Every form it writes is served by the indexes of
/// migrations 3, 38 and 41, which `tests/api/tickets/queries.rs` checks with EXPLAIN.
#[derive(Clone, Debug)]
pub struct FilterSql {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug)]
enum Piece {
    Sql(String),
    Texts(Vec<String>),
    Uuids(Vec<Uuid>),
    Time(DateTime<Utc>),
    Jsons(Vec<serde_json::Value>),
}

impl FilterSql {
    /// The conditions of `expr` for the columns of `table` (`tickets`, or an alias), each
    /// preceded by ` AND `; nothing for an empty filter.
    pub fn new(expr: &TicketFilterExpr, table: &str, now: DateTime<Utc>) -> Self {
        let mut pieces = Vec::new();
        for condition in &expr.conditions {
            pieces.push(Piece::Sql(" AND ".to_owned()));
            Self::condition(&mut pieces, &condition.test, table, now);
        }
        Self { pieces }
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    fn condition(pieces: &mut Vec<Piece>, test: &Test, t: &str, now: DateTime<Utc>) {
        let sql = |text: String| Piece::Sql(text);
        match test {
            Test::Status { any_of, negated } => {
                let values = any_of.iter().map(|v| v.as_str().to_owned()).collect();
                Self::equality(
                    pieces,
                    &format!("{t}.status"),
                    Piece::Texts(values),
                    *negated,
                );
            }
            Test::Priority { any_of, negated } => {
                let values = any_of.iter().map(|v| v.as_str().to_owned()).collect();
                Self::equality(
                    pieces,
                    &format!("{t}.priority"),
                    Piece::Texts(values),
                    *negated,
                );
            }
            Test::Requester { any_of, negated } => {
                Self::equality(
                    pieces,
                    &format!("{t}.requester_id"),
                    Piece::Uuids(any_of.clone()),
                    *negated,
                );
            }
            Test::Assignee { any_of, negated } => {
                Self::nullable_equality(pieces, &format!("{t}.assignee_id"), any_of, *negated);
            }
            Test::Group { any_of, negated } => {
                Self::nullable_equality(pieces, &format!("{t}.group_id"), any_of, *negated);
            }
            Test::Tags { tags, all, negated } => {
                // `@>` and `&&` are what the GIN index on (account_id, tags) serves.
                let operator = if *all { "@>" } else { "&&" };
                let not = if *negated { "NOT " } else { "" };
                pieces.push(sql(format!("{not}{t}.tags {operator} ")));
                pieces.push(Piece::Texts(tags.clone()));
            }
            Test::Time {
                field,
                comparator,
                moment,
            } => {
                let column = match field {
                    TimeField::Created => "created_at",
                    TimeField::Updated => "updated_at",
                };
                pieces.push(sql(format!("{t}.{column} {} ", comparator.operator())));
                pieces.push(Piece::Time(moment.resolve(now)));
            }
            Test::CustomField {
                any_of, negated, ..
            } => {
                // `@> ANY(..)`: one bitmap scan of the GIN index on (account_id, custom_fields
                // jsonb_path_ops) per value, as for an OR of containments.
                let not = if *negated { "NOT " } else { "" };
                pieces.push(sql(format!("{not}({t}.custom_fields @> ANY(")));
                pieces.push(Piece::Jsons(any_of.clone()));
                pieces.push(sql("))".to_owned()));
            }
        }
    }

    /// `column = ANY(values)`, or `column <> ALL(values)` negated (the column is NOT NULL).
    fn equality(pieces: &mut Vec<Piece>, column: &str, values: Piece, negated: bool) {
        let test = if negated { "<> ALL(" } else { "= ANY(" };
        pieces.push(Piece::Sql(format!("{column} {test}")));
        pieces.push(values);
        pieces.push(Piece::Sql(")".to_owned()));
    }

    /// Equality on a nullable column, `None` among the values meaning NULL; a negated one
    /// holds for NULL unless NULL is among the values (`assignee != X` includes unassigned).
    fn nullable_equality(
        pieces: &mut Vec<Piece>,
        column: &str,
        any_of: &[Option<Uuid>],
        negated: bool,
    ) {
        let ids: Vec<Uuid> = any_of.iter().flatten().copied().collect();
        let with_null = any_of.iter().any(Option::is_none);
        match (ids.is_empty(), with_null, negated) {
            (true, _, false) => pieces.push(Piece::Sql(format!("{column} IS NULL"))),
            (true, _, true) => pieces.push(Piece::Sql(format!("{column} IS NOT NULL"))),
            (false, false, false) => {
                pieces.push(Piece::Sql(format!("{column} = ANY(")));
                pieces.push(Piece::Uuids(ids));
                pieces.push(Piece::Sql(")".to_owned()));
            }
            (false, true, false) => {
                pieces.push(Piece::Sql(format!("({column} = ANY(")));
                pieces.push(Piece::Uuids(ids));
                pieces.push(Piece::Sql(format!(") OR {column} IS NULL)")));
            }
            (false, with_null, true) => {
                pieces.push(Piece::Sql(format!("({column} <> ALL(")));
                pieces.push(Piece::Uuids(ids));
                let null = if with_null { "IS NOT NULL" } else { "IS NULL" };
                let joiner = if with_null { "AND" } else { "OR" };
                pieces.push(Piece::Sql(format!(") {joiner} {column} {null})")));
            }
        }
    }

    /// Appends the conditions to written-out SQL, numbering parameters with `param`.
    pub(crate) fn append_to<'a>(
        &self,
        mut query: BoxedSqlQuery<'a, Pg, SqlQuery>,
        mut param: impl FnMut() -> String,
    ) -> BoxedSqlQuery<'a, Pg, SqlQuery> {
        for piece in &self.pieces {
            query = match piece {
                Piece::Sql(text) => query.sql(text.clone()),
                Piece::Texts(values) => query
                    .sql(param())
                    .bind::<sql_types::Array<sql_types::Text>, _>(values.clone()),
                Piece::Uuids(values) => query
                    .sql(param())
                    .bind::<sql_types::Array<sql_types::Uuid>, _>(values.clone()),
                Piece::Time(at) => query.sql(param()).bind::<sql_types::Timestamptz, _>(*at),
                Piece::Jsons(values) => query
                    .sql(param())
                    .bind::<sql_types::Array<sql_types::Jsonb>, _>(values.clone()),
            };
        }
        query
    }
}

impl diesel::expression::Expression for FilterSql {
    type SqlType = sql_types::Bool;
}

impl<QS> diesel::expression::AppearsOnTable<QS> for FilterSql {}

impl<QS> diesel::expression::SelectableExpression<QS> for FilterSql {}

impl diesel::expression::ValidGrouping<()> for FilterSql {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

impl diesel::query_builder::QueryId for FilterSql {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::QueryFragment<Pg> for FilterSql {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        // `TRUE AND ...`: the pieces each open with ` AND `.
        out.push_sql("(TRUE");
        for piece in &self.pieces {
            match piece {
                Piece::Sql(text) => out.push_sql(text),
                Piece::Texts(values) => {
                    out.push_bind_param::<sql_types::Array<sql_types::Text>, _>(values)?;
                }
                Piece::Uuids(values) => {
                    out.push_bind_param::<sql_types::Array<sql_types::Uuid>, _>(values)?;
                }
                Piece::Time(at) => out.push_bind_param::<sql_types::Timestamptz, _>(at)?,
                Piece::Jsons(values) => {
                    out.push_bind_param::<sql_types::Array<sql_types::Jsonb>, _>(values)?;
                }
            }
        }
        out.push_sql(")");
        Ok(())
    }
}

/// A list to count: its conditions, and its order, which the count walks as the list's pages do.
#[derive(Clone, Debug)]
pub struct CountedList {
    pub filter: TicketFilterExpr,
    pub order: TicketOrder,
}

/// How many live tickets of `account_id` each list holds, reading at most `cap + 1` of each:
/// one statement, one scalar subquery per list
/// (`SELECT count(*) FROM (SELECT 1 FROM tickets … ORDER BY <the list's order> LIMIT cap + 1)`),
/// in the order given. Every subquery is the list's query without its page, served by the
/// same indexes (migrations 3, 38 and 41). Planned with its values on every call
/// ([`PlannedPerCall`]): a combination of many views' filters is too rarely the same to keep,
/// and a generic plan would ignore how many tickets each value matches.
pub async fn count_tickets(
    conn: &mut AsyncPgConnection,
    account_id: Uuid,
    lists: &[CountedList],
    cap: i64,
) -> AppResult<Vec<i64>> {
    if lists.is_empty() {
        return Ok(Vec::new());
    }
    let counts: Counts = PlannedPerCall(capped_counts(account_id, lists, cap))
        .get_result(conn)
        .await?;
    Ok(counts.counts)
}

/// [`count_tickets`] of one list: kept prepared when its filter is typed only (each typed
/// filter has an index of its own, which a generic plan uses as well as a custom one), planned
/// with its values when it uses the filter language (`tags: vip` and a rare tag need different
/// plans). One round trip, or two.
pub async fn count_list(
    conn: &mut AsyncPgConnection,
    account_id: Uuid,
    list: &CountedList,
    typed_only: bool,
    cap: i64,
) -> AppResult<i64> {
    let query = capped_counts(account_id, std::slice::from_ref(list), cap);
    let counts: Counts = if typed_only {
        KeepPrepared(query).get_result(conn).await?
    } else {
        PlannedPerCall(query).get_result(conn).await?
    };
    Ok(counts.counts.into_iter().next().unwrap_or_default())
}

/// The statement of [`count_tickets`]: public so that the index test can `EXPLAIN` it.
pub fn capped_counts(
    account_id: Uuid,
    lists: &[CountedList],
    cap: i64,
) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
    let now = Utc::now();
    let mut next = 2;
    let mut param = || {
        let name = format!("${next}");
        next += 1;
        name
    };
    let mut query = diesel::sql_query("SELECT ARRAY[")
        .into_boxed()
        .bind::<SqlUuid, _>(account_id);
    let limit = param();
    query = query.bind::<BigInt, _>(cap + 1);
    for (index, list) in lists.iter().enumerate() {
        let separator = if index == 0 { "" } else { ", " };
        query = query.sql(format!(
            "{separator}(SELECT count(*) FROM (SELECT 1 FROM tickets t \
             WHERE t.account_id = $1 AND t.deleted_at IS NULL"
        ));
        query = FilterSql::new(&list.filter, "t", now).append_to(query, &mut param);
        // The list's own order: the count walks the index a page of the list walks, and stops
        // at the cap, where without an order the planner may read the table until `cap + 1`
        // rows match (cheap by its statistics, not when an account's rows cluster). A view of
        // tickets pending for a month, oldest update first, finds them at its index's start;
        // walked newest first it skipped a hundred thousand.
        query = query.sql(format!(
            " ORDER BY {} LIMIT {limit}) c)",
            order_sql(list.order)
        ));
    }
    query.sql("]::bigint[] AS counts")
}

/// `ORDER BY` of a list's order over `tickets t`, ties broken by id as the pages break them.
fn order_sql(order: TicketOrder) -> &'static str {
    match (order.field, order.descending) {
        (TicketOrderField::Created, true) => "t.created_at DESC, t.id DESC",
        (TicketOrderField::Created, false) => "t.created_at ASC, t.id ASC",
        (TicketOrderField::Updated, true) => "t.updated_at DESC, t.id DESC",
        (TicketOrderField::Updated, false) => "t.updated_at ASC, t.id ASC",
    }
}

/// The planner's estimate of how many live tickets of `account_id` `filter` matches: one
/// `EXPLAIN` (planned with the values bound, never run), read where a count would read too
/// many rows. As good as the table's statistics; ANALYZE keeps them. Never kept prepared: a
/// prepared statement may switch to a generic plan, whose estimate ignores the values.
pub async fn estimate_tickets(
    conn: &mut AsyncPgConnection,
    account_id: Uuid,
    filter: &TicketFilterExpr,
) -> AppResult<i64> {
    let mut next = 2;
    let param = || {
        let name = format!("${next}");
        next += 1;
        name
    };
    let query = diesel::sql_query(
        "EXPLAIN (FORMAT JSON) SELECT 1 FROM tickets t \
         WHERE t.account_id = $1 AND t.deleted_at IS NULL",
    )
    .into_boxed()
    .bind::<SqlUuid, _>(account_id);
    let query = FilterSql::new(filter, "t", Utc::now()).append_to(query, param);
    let plan: Plan = query.get_result(conn).await?;
    plan.plan
        .pointer("/0/Plan/Plan Rows")
        .and_then(serde_json::Value::as_f64)
        // Rounded as PostgreSQL prints it; a plan's rows are far below i64's bound.
        .map(|rows| rows.round() as i64)
        .ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "EXPLAIN's plan has no Plan Rows: {}",
                plan.plan
            ))
        })
}
