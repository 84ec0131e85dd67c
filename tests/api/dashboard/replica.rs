//! The panels on a real streaming replica (`support::replica`): served by it while it is fresh
//! (its stale data proves where they were read), sent to the primary once it lags past the bound
//! (replay paused on purpose) or once it is stopped.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use secrecy::SecretString;
use supportdesk::wire::proto::v1;

use crate::support::replica::{REPLICA_PAIR, connect};
use crate::support::{Scrape, TestApp, with_metrics};

/// A migrated database of its own on the pair's primary.
async fn database_on_the_primary() -> String {
    REPLICA_PAIR.migrated_database("dash_replica").await
}

async fn app_on_the_pair(database: &str, max_lag: Duration) -> TestApp {
    let primary = REPLICA_PAIR.primary_url(database);
    let replica = REPLICA_PAIR.replica_url(database);
    TestApp::spawn_with(move |settings| {
        with_metrics(settings);
        settings.database.url = SecretString::from(primary);
        settings.database.read_replica_url = Some(SecretString::from(replica));
        settings.database.read_replica_max_lag = max_lag;
        settings.database.read_replica_lag_sample_interval = Duration::from_millis(50);
    })
    .await
}

/// Reads that asked which server to use: none on an instance that served no dashboard.
fn reads(scrape: &Scrape) -> u64 {
    [
        r#"supportdesk_db_replica_reads_total{target="replica"}"#,
        r#"supportdesk_db_replica_reads_total{target="primary"}"#,
        r#"supportdesk_db_replica_fallbacks_total{reason="lagging"}"#,
        r#"supportdesk_db_replica_fallbacks_total{reason="unreachable"}"#,
    ]
    .into_iter()
    .map(|series| scrape.get(series))
    .sum()
}

/// The ticket panel's created count of today, and where it was read.
async fn created_and_source(app: &TestApp) -> (i64, v1::PanelSource) {
    let panel = app
        .dashboard
        .clone()
        .get_dashboard(app.as_admin(v1::GetDashboardRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .ticket_stats
        .unwrap();
    assert_eq!(panel.status.unwrap().code, 0);
    let created = panel
        .ticket_stats
        .unwrap()
        .daily
        .iter()
        .map(|day| day.created)
        .sum();
    (created, panel.source.unwrap())
}

#[tokio::test]
async fn panels_read_a_fresh_replica_and_the_primary_when_it_lags_past_the_bound_or_stops() {
    let database = database_on_the_primary().await;
    let tolerant = app_on_the_pair(&database, Duration::from_secs(3600)).await;
    let strict = app_on_the_pair(&database, Duration::from_millis(1)).await;
    // An instance nobody asks for a dashboard: only its lag sampler reads the replica.
    let idle = app_on_the_pair(&database, Duration::from_secs(3600)).await;
    let sampler =
        r#"supportdesk_job_runner_task_state{task="replica-lag-sampler",state="running"}"#;
    assert_eq!(Scrape::of(&idle).await.get(sampler), 1);
    tolerant.create_ticket("replicated").await;
    strict.create_ticket("replicated").await;
    REPLICA_PAIR.wait_for_replay().await;
    let (created, source) = created_and_source(&tolerant).await;
    assert_eq!((created, source.replica), (1, true));

    // Replay paused on purpose: a ticket written now reaches the primary only.
    let mut replica = connect(&REPLICA_PAIR.replica_url(&database)).await;
    diesel::sql_query("SELECT pg_wal_replay_pause()")
        .execute(&mut replica)
        .await
        .unwrap();
    tolerant.create_ticket("not replayed").await;
    strict.create_ticket("not replayed").await;
    crate::support::wait_until("the replica lags", crate::support::PATIENCE, || async {
        let (_, source) = created_and_source(&tolerant).await;
        source
            .staleness
            .is_some_and(|staleness| staleness != prost_types::Duration::default())
    })
    .await;
    // The idle instance's gauge moves too, though it served no read: the sampler asked.
    crate::support::wait_until(
        "the idle instance samples the lag",
        crate::support::PATIENCE,
        || async {
            let scrape = Scrape::of(&idle).await;
            scrape.0["supportdesk_db_replica_lag_seconds"] > 0.0 && reads(&scrape) == 0
        },
    )
    .await;
    // Within the tolerant bound the replica answers, stale, and says how stale.
    let (created, source) = created_and_source(&tolerant).await;
    assert_eq!((created, source.replica), (1, true));
    // Past the strict bound the primary answers, fresh (each app reads its own account).
    let lagging_before = Scrape::of(&strict)
        .await
        .get(r#"supportdesk_db_replica_fallbacks_total{reason="lagging"}"#);
    let (created, source) = created_and_source(&strict).await;
    let scrape = Scrape::of(&strict).await;
    assert_eq!(
        scrape.get(r#"supportdesk_db_replica_fallbacks_total{reason="lagging"}"#) - lagging_before,
        3,
        "each of the three panels fell back once"
    );
    assert!(scrape.0["supportdesk_db_replica_lag_seconds"] > 0.0);
    assert_eq!(
        (created, source.replica, source.staleness),
        (2, false, Some(prost_types::Duration::default()))
    );

    // The replica stopped mid-run: every read goes to the primary.
    REPLICA_PAIR.stop_replica();
    let unreachable_before = Scrape::of(&tolerant)
        .await
        .get(r#"supportdesk_db_replica_fallbacks_total{reason="unreachable"}"#);
    let (created, source) = created_and_source(&tolerant).await;
    assert_eq!((created, source.replica), (2, false));
    let unreachable_after = Scrape::of(&tolerant)
        .await
        .get(r#"supportdesk_db_replica_fallbacks_total{reason="unreachable"}"#);
    // Each of the three panels fell back once.
    assert_eq!(unreachable_after - unreachable_before, 3);
}
