//! The response-time histograms (migration 000019): the rollup equals a recount of the tickets
//! after every kind of change, and the panel's percentiles read from it are within the stated
//! bound (4.5 % + 1 s, docs/dashboard.md) of the exact `percentile_cont` over the same tickets.

use chrono::{Duration, Utc};
use diesel::sql_types;
use diesel_async::RunQueryDsl;
use supportdesk::wire::proto::v1;

use crate::support::{TestApp, count_of, keyed, valid_create_request};

/// Cells of the rollup (both periods) that differ from a recount of the tickets: each answered
/// ticket counted on its creation day and month, each solved one on its solving day and month,
/// in the bucket of its duration.
const CELLS_OFF_THE_RECOUNT: &str = "SELECT count(*) AS count FROM ( \
    SELECT account_id, measure, period, starts_on, bucket, tickets::int8 AS tickets \
    FROM ticket_response_histograms WHERE tickets <> 0) rolled \
    FULL JOIN ( \
    SELECT account_id, measure, period, starts_on, bucket, count(*) AS tickets FROM ( \
        SELECT account_id, 'first_response' AS measure, \
               (created_at AT TIME ZONE 'UTC')::date AS day, \
               ticket_response_bucket(first_agent_response_at - created_at) AS bucket \
        FROM tickets WHERE first_agent_response_at IS NOT NULL \
        UNION ALL \
        SELECT account_id, 'resolution', (solved_at AT TIME ZONE 'UTC')::date, \
               ticket_response_bucket(solved_at - created_at) \
        FROM tickets WHERE solved_at IS NOT NULL) durations \
    CROSS JOIN LATERAL (VALUES ('day', durations.day), \
                               ('month', date_trunc('month', durations.day)::date)) \
        AS periods (period, starts_on) \
    GROUP BY 1, 2, 3, 4, 5) counted USING (account_id, measure, period, starts_on, bucket) \
    WHERE rolled.tickets IS DISTINCT FROM counted.tickets";

async fn cells_off_the_recount(app: &TestApp) -> i64 {
    count_of(&app.database, CELLS_OFF_THE_RECOUNT).await
}

/// The tickets the rollup counts for `measure`, by day (the months count the same).
async fn counted(app: &TestApp, measure: &str) -> i64 {
    count_of(
        &app.database,
        &format!(
            "SELECT coalesce(sum(tickets), 0)::int8 AS count FROM ticket_response_histograms \
             WHERE measure = '{measure}' AND period = 'day'"
        ),
    )
    .await
}

async fn assigned_ticket(app: &TestApp, subject: &str) -> v1::Ticket {
    let mut request = valid_create_request(subject);
    request.ticket.as_mut().unwrap().assignee_id = app.admin.id.to_string();
    app.create_as_admin(request).await
}

async fn answer(app: &TestApp, ticket: &v1::Ticket) {
    app.tickets
        .clone()
        .add_comment(keyed(app.as_admin(v1::AddCommentRequest {
            ticket_id: ticket.id.clone(),
            comment: Some(v1::Comment {
                body: "We are on it".to_owned(),
                public: true,
                ..Default::default()
            }),
        })))
        .await
        .expect("the agent answers");
}

async fn resolve(app: &TestApp, ticket: &v1::Ticket) {
    app.tickets
        .clone()
        .resolve_ticket(keyed(app.as_admin(v1::ResolveTicketRequest {
            id: ticket.id.clone(),
            etag: String::new(),
        })))
        .await
        .expect("the ticket is solved");
}

async fn execute(app: &TestApp, sql: &str) -> usize {
    let mut conn = app.database.connect().await;
    diesel::sql_query(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// One multi-row INSERT, as an import of old tickets writes them (docs/dashboard.md: an inserter
/// may supply solved_at and first_agent_response_at): `tickets` closed tickets created over the
/// last `days` days, answered after 1 s to 2^20 s (12 days) and solved after 2 s to 2^23 s
/// (97 days), spread log-uniformly, a few of each under a second, marked `label` in the subject.
async fn import_closed_tickets(app: &TestApp, label: &str, tickets: u32, days: u32) -> usize {
    execute(
        app,
        &format!(
            "INSERT INTO tickets (id, account_id, subject, description, priority, status, \
             requester_id, created_at, updated_at, first_agent_response_at, solved_at) \
             SELECT gen_random_uuid(), '{account}', '{label} ' || g, 'imported', 'normal', \
                    'closed', '{requester}', created_at, created_at, \
                    created_at + CASE WHEN g % 50 = 0 THEN interval '0.4 seconds' \
                        ELSE power(2::float8, 20.0 * ((g * 37) % {tickets}) / {tickets}) \
                             * interval '1 second' END, \
                    created_at + CASE WHEN g % 40 = 0 THEN interval '0 seconds' \
                        ELSE power(2::float8, 1 + 22.0 * ((g * 53) % {tickets}) / {tickets}) \
                             * interval '1 second' END \
             FROM (SELECT g, now() - interval '1 day' * {days} * g / {tickets} AS created_at \
                   FROM generate_series(1, {tickets}) AS g) drawn",
            account = app.account_id.as_uuid(),
            requester = app.admin.id,
        ),
    )
    .await
}

#[tokio::test]
async fn the_histograms_equal_a_recount_after_answers_solves_reopens_imports_and_deletions() {
    let app = TestApp::spawn().await;
    let first = assigned_ticket(&app, "first").await;
    let second = assigned_ticket(&app, "second").await;
    assert_eq!(counted(&app, "first_response").await, 0);

    answer(&app, &first).await;
    answer(&app, &second).await;
    // A second answer is not a first response.
    answer(&app, &first).await;
    assert_eq!(counted(&app, "first_response").await, 2);
    assert_eq!(cells_off_the_recount(&app).await, 0);

    resolve(&app, &first).await;
    assert_eq!(counted(&app, "resolution").await, 1);
    assert_eq!(cells_off_the_recount(&app).await, 0);

    app.tickets
        .clone()
        .reopen_ticket(keyed(app.as_admin(v1::ReopenTicketRequest {
            id: first.id.clone(),
            etag: String::new(),
        })))
        .await
        .expect("the ticket is reopened");
    assert_eq!(counted(&app, "resolution").await, 0);
    assert_eq!(cells_off_the_recount(&app).await, 0);

    resolve(&app, &first).await;
    resolve(&app, &second).await;
    assert_eq!(counted(&app, "resolution").await, 2);

    // Durations that move to other buckets and days (a correction in psql) move their counts.
    execute(
        &app,
        "UPDATE tickets SET first_agent_response_at = created_at + interval '3 hours', \
         solved_at = created_at + interval '40 days', created_at = created_at - interval '40 days'",
    )
    .await;
    assert_eq!(cells_off_the_recount(&app).await, 0);
    assert_eq!(counted(&app, "resolution").await, 2);

    assert_eq!(import_closed_tickets(&app, "imported", 300, 200).await, 300);
    assert_eq!(counted(&app, "first_response").await, 302);
    assert_eq!(counted(&app, "resolution").await, 302);
    assert_eq!(cells_off_the_recount(&app).await, 0);

    // Soft-deleted tickets stay counted, as the exact percentiles counted them; a row deleted
    // (psql) is taken back.
    execute(
        &app,
        "UPDATE tickets SET deleted_at = now() WHERE subject LIKE 'imported 1%'",
    )
    .await;
    assert_eq!(counted(&app, "resolution").await, 302);
    assert_eq!(
        execute(&app, "DELETE FROM tickets WHERE subject LIKE 'imported 2%'").await,
        111
    );
    assert_eq!(counted(&app, "first_response").await, 191);
    assert_eq!(counted(&app, "resolution").await, 191);
    assert_eq!(cells_off_the_recount(&app).await, 0);
}

/// The exact `percentile_cont` of the durations the panel summarises over `start..=end`.
#[derive(Debug, diesel::QueryableByName)]
struct Exact {
    #[diesel(sql_type = sql_types::BigInt)]
    tickets: i64,
    #[diesel(sql_type = sql_types::Double)]
    median: f64,
    #[diesel(sql_type = sql_types::Double)]
    p90: f64,
}

async fn exact(app: &TestApp, duration: &str, day_of: &str, start: &str, end: &str) -> Exact {
    let mut conn = app.database.connect().await;
    diesel::sql_query(format!(
        "SELECT count(*) AS tickets, \
         percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS median, \
         percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90 \
         FROM (SELECT extract(epoch FROM {duration})::float8 AS seconds FROM tickets \
         WHERE account_id = $1 AND {day_of} IS NOT NULL AND {duration} IS NOT NULL \
         AND {day_of} >= $2::date::timestamp AT TIME ZONE 'UTC' \
         AND {day_of} < ($3::date + 1)::timestamp AT TIME ZONE 'UTC') durations"
    ))
    .bind::<sql_types::Uuid, _>(app.account_id.as_uuid())
    .bind::<sql_types::Text, _>(start)
    .bind::<sql_types::Text, _>(end)
    .get_result(&mut conn)
    .await
    .expect("the exact percentiles")
}

pub(super) fn seconds(duration: Option<&prost_types::Duration>) -> f64 {
    let duration = duration.expect("a percentile");
    duration.seconds as f64 + f64::from(duration.nanos) / 1e9
}

/// The bound docs/dashboard.md promises: 4.5 % of the exact value, plus 1 s (a duration under a
/// second reads as 0 s).
pub(super) fn assert_within_bound(label: &str, approximate: f64, exact: f64) {
    assert!(
        (approximate - exact).abs() <= 0.045 * exact + 1.0,
        "{label}: {approximate} s where the exact percentile is {exact} s"
    );
}

#[tokio::test]
async fn the_panels_percentiles_are_within_the_stated_bound_of_the_exact_ones() {
    let app = TestApp::spawn().await;
    import_closed_tickets(&app, "history", 1_000, 330).await;
    let today = Utc::now().date_naive();
    // The default 30 days (days only), and a year (its whole months from month rows, the days
    // at both ends day by day).
    for start in [today - Duration::days(29), today - Duration::days(365)] {
        let (start, end) = (start.to_string(), today.to_string());
        let stats = app
            .dashboard
            .clone()
            .get_ticket_stats(app.as_admin(v1::GetTicketStatsRequest {
                start_date: start.clone(),
                end_date: end.clone(),
            }))
            .await
            .expect("the ticket statistics")
            .into_inner();
        for (label, times, duration, day_of) in [
            (
                "first response",
                stats.first_response.as_ref(),
                "first_agent_response_at - created_at",
                "created_at",
            ),
            (
                "resolution",
                stats.resolution.as_ref(),
                "solved_at - created_at",
                "solved_at",
            ),
        ] {
            let times = times.expect("the panel's response times");
            let exact = exact(&app, duration, day_of, &start, &end).await;
            assert!(exact.tickets > 50, "{label} from {start}: {exact:?}");
            assert_eq!(times.tickets, exact.tickets, "{label} from {start}");
            assert_within_bound(
                &format!("{label} median from {start}"),
                seconds(times.median.as_ref()),
                exact.median,
            );
            assert_within_bound(
                &format!("{label} p90 from {start}"),
                seconds(times.p90.as_ref()),
                exact.p90,
            );
        }
    }
}
