//! The job runner in a running service: every background task supervised and reported, and a
//! task that dies seen through the real surfaces (gRPC health, `/metrics`, the restart, or the
//! service stopping with an error that names it). The dying tasks are added the way the
//! service's next workers will be, through `ApplicationBuilder::with_task`, before the build.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use supportdesk::jobs::{Backoff, HealthEffect, RestartPolicy, Task};
use tokio::sync::Notify;

use crate::support::{PATIENCE, Scrape, TestApp, wait_until, with_metrics};

const TICKETS: &str = "supportdesk.v1.TicketService";
const STATE: &str = "supportdesk_job_runner_task_state";

/// The service's own tasks, as they are named in metrics and logs.
const SERVICE_TASKS: [&str; 13] = [
    "attachment-sweeper",
    "billing-completer",
    "billing-reconciler",
    "dependency-probe",
    "event-sweeper",
    "event-tail",
    "health-gates",
    "idempotency-sweeper",
    "metrics-endpoint",
    "queue-sampler",
    "storage-probe",
    "ticket-cache-repair",
    "webhook-workers",
];

fn state(task: &str, state: &str) -> String {
    format!(r#"{STATE}{{task="{task}",state="{state}"}}"#)
}

fn restarts(task: &str) -> String {
    format!(r#"supportdesk_job_runner_task_restarts_total{{task="{task}"}}"#)
}

fn failures(task: &str) -> String {
    format!(r#"supportdesk_job_runner_task_failures_total{{task="{task}"}}"#)
}

/// A task that runs until `trigger` is notified, then dies as `die` says; it counts its runs,
/// and every run after the first waits to be stopped.
fn dying_task(
    name: &'static str,
    policy: RestartPolicy,
    health: HealthEffect,
    trigger: Arc<Notify>,
    runs: Arc<AtomicUsize>,
    die: fn() -> anyhow::Result<()>,
) -> Task {
    Task::new(name, policy, health, move |context| {
        let trigger = trigger.clone();
        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if run == 1 {
                tokio::select! {
                    () = context.stop.cancelled() => return Ok(()),
                    () = trigger.notified() => return die(),
                }
            }
            context.stop.cancelled().await;
            Ok(())
        }
    })
}

fn panics() -> anyhow::Result<()> {
    panic!("the notification template is missing")
}

fn restart_after(initial: Duration) -> RestartPolicy {
    RestartPolicy::Restart(Backoff {
        initial,
        max: initial,
        give_up_after: 3,
    })
}

#[tokio::test]
async fn every_background_task_of_the_service_runs_under_the_runner_and_is_reported() {
    let app = TestApp::spawn_with(|settings| {
        with_metrics(settings);
        settings.webhook_workers.workers = 1;
    })
    .await;

    wait_until("every task reported running", PATIENCE, || async {
        let scrape = Scrape::of(&app).await;
        SERVICE_TASKS
            .iter()
            .all(|task| scrape.family(STATE).get(state(task, "running").as_str()) == Some(&1))
    })
    .await;
    let scrape = Scrape::of(&app).await;
    let expected: Vec<String> = SERVICE_TASKS
        .iter()
        .flat_map(|task| {
            ["running", "restarting", "lagging", "stopped", "failed"].map(|one| state(task, one))
        })
        .collect();
    let mut exported: Vec<&str> = scrape.family(STATE).into_keys().collect();
    exported.sort_unstable();
    let mut expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(
        exported, expected,
        "one series per task and state, no other task"
    );
    for task in SERVICE_TASKS {
        assert_eq!(scrape.get(&restarts(task)), 0, "{task}");
        assert_eq!(scrape.get(&failures(task)), 0, "{task}");
        let current: u64 = ["running", "restarting", "lagging", "stopped", "failed"]
            .iter()
            .map(|one| scrape.get(&state(task, one)))
            .sum();
        assert_eq!(current, 1, "{task} is in exactly one state");
    }
}

/// A service running, besides its own tasks, a "notifications" task that takes TicketService
/// down while it is not running, panics when `trigger` is notified, and restarts after
/// `backoff`; with the trigger and the count of its runs.
async fn app_with_a_task_that_panics(
    backoff: Duration,
) -> (TestApp, Arc<Notify>, Arc<AtomicUsize>) {
    let trigger = Arc::new(Notify::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let task = dying_task(
        "notifications",
        restart_after(backoff),
        HealthEffect::Service(TICKETS),
        trigger.clone(),
        runs.clone(),
        panics,
    );
    let app =
        TestApp::spawn_with_application(with_metrics, |builder| builder.with_task(task)).await;
    (app, trigger, runs)
}

#[tokio::test]
async fn a_task_that_panics_takes_its_service_down_and_is_reported_until_it_is_restarted() {
    // A backoff no test outlives: the task stays down for the test to look at it.
    let (app, trigger, runs) = app_with_a_task_that_panics(Duration::from_secs(3600)).await;
    app.wait_for_health("Serving", PATIENCE).await;
    wait_until("TicketService serving", PATIENCE, || async {
        app.health_of(TICKETS).await == "Serving"
    })
    .await;
    let before = Scrape::of(&app).await;
    assert_eq!(before.get(&state("notifications", "running")), 1);
    assert_eq!(before.get(&failures("notifications")), 0);

    trigger.notify_one();

    wait_until("the death reported", PATIENCE, || async {
        Scrape::of(&app)
            .await
            .get(&state("notifications", "restarting"))
            == 1
    })
    .await;
    let scrape = Scrape::of(&app).await;
    assert_eq!(scrape.get(&state("notifications", "running")), 0);
    assert_eq!(scrape.get(&failures("notifications")), 1);
    assert_eq!(
        scrape.get(&restarts("notifications")),
        0,
        "still backing off"
    );
    assert_eq!(app.health_of(TICKETS).await, "NotServing");
    assert_eq!(
        app.health_of("").await,
        "Serving",
        "only the declared service"
    );
    assert_eq!(app.health_of("supportdesk.v1.UserService").await, "Serving");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_task_that_panics_is_restarted_counted_and_its_service_serves_again() {
    let (app, trigger, runs) = app_with_a_task_that_panics(Duration::from_millis(50)).await;
    app.wait_for_health("Serving", PATIENCE).await;

    trigger.notify_one();

    wait_until("the task restarted", PATIENCE, || async {
        Scrape::of(&app).await.get(&restarts("notifications")) == 1
    })
    .await;
    let scrape = Scrape::of(&app).await;
    assert_eq!(scrape.get(&failures("notifications")), 1);
    assert_eq!(scrape.get(&state("notifications", "running")), 1);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "a second run");
    wait_until("TicketService serving again", PATIENCE, || async {
        app.health_of(TICKETS).await == "Serving"
    })
    .await;
}

#[tokio::test]
async fn a_task_that_must_not_die_stops_the_service_with_an_error_naming_it() {
    let trigger = Arc::new(Notify::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let task = dying_task(
        "operations",
        RestartPolicy::StopProcess,
        HealthEffect::Everything,
        trigger.clone(),
        runs.clone(),
        || Err(anyhow::anyhow!("the operations table cannot be read")),
    );
    let mut app = TestApp::spawn_with_application(|_| {}, |builder| builder.with_task(task)).await;
    app.wait_for_health("Serving", PATIENCE).await;

    trigger.notify_one();

    let error = app
        .stopped_by_itself(PATIENCE)
        .await
        .expect_err("the service stops with an error");
    assert_eq!(
        error.to_string(),
        "background task `operations` died and is not restarted: \
         returned an error: the operations table cannot be read"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "never restarted");
}

#[tokio::test]
async fn a_task_that_keeps_dying_stops_the_service_once_its_restarts_run_out() {
    let trigger = Arc::new(Notify::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let waiting = trigger.clone();
    // The first run waits for the test; every run panics.
    let task = Task::new(
        "notifications",
        restart_after(Duration::from_millis(10)),
        HealthEffect::None,
        move |_| {
            let run = counted.fetch_add(1, Ordering::SeqCst) + 1;
            let waiting = waiting.clone();
            async move {
                if run == 1 {
                    waiting.notified().await;
                }
                panics()
            }
        },
    );
    let mut app = TestApp::spawn_with_application(|_| {}, |builder| builder.with_task(task)).await;

    trigger.notify_one();

    let error = app
        .stopped_by_itself(PATIENCE)
        .await
        .expect_err("the service stops with an error");
    assert_eq!(
        error.to_string(),
        "background task `notifications` died 4 times in a row; giving up. \
         The last time: panicked: the notification template is missing"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 4, "three restarts, then none");
}
