//! A pool of identical workers run as one background task: `count` workers until told to stop,
//! each with its own number ([`run`]). The job runner supervises the pool as one task, so a worker
//! must never die alone while the others run on: one that panics (or is cancelled) stops the
//! others, and its panic goes on to the runner, which restarts the pool as declared. And the one
//! loop a worker of a queue polls with ([`poll_until_stopped`]): the webhook, notification and
//! operation workers share it.

use std::future::Future;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Runs `count` workers made by `worker(number, stop)` until `stop`, and returns once every one
/// has stopped. `what` names the workers in the error of one that was cancelled.
pub async fn run<F, Fut>(
    what: &str,
    count: u32,
    stop: CancellationToken,
    worker: F,
) -> anyhow::Result<()>
where
    F: Fn(u32, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let workers_stop = stop.child_token();
    let mut workers = JoinSet::new();
    for number in 0..count {
        workers.spawn(worker(number, workers_stop.clone()));
    }
    while let Some(joined) = workers.join_next().await {
        if let Err(error) = joined {
            workers_stop.cancel();
            while workers.join_next().await.is_some() {}
            if error.is_panic() {
                std::panic::resume_unwind(error.into_panic());
            }
            anyhow::bail!("a {what} was cancelled: {error}");
        }
    }
    anyhow::ensure!(
        stop.is_cancelled(),
        "the {what}s returned while not told to stop"
    );
    Ok(())
}

/// One worker's loop over a queue, until `stop`: `work_once` again at once while it found work
/// (a backlog drains without waiting), otherwise after `poll_interval` or as soon as `wake` (if
/// any) is notified. An error is handed to `failed`, which logs it in the worker's words, and the
/// next poll tries again. Nothing new is begun once `stop` is cancelled; the work under way is
/// `work_once`'s to end.
pub async fn poll_until_stopped<E, F, Fut>(
    stop: &CancellationToken,
    poll_interval: Duration,
    wake: Option<&Notify>,
    mut work_once: F,
    mut failed: impl FnMut(E),
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, E>>,
{
    loop {
        if stop.is_cancelled() {
            return;
        }
        match work_once().await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(error) => failed(error),
        }
        let woken = async {
            match wake {
                Some(wake) => wake.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = woken => {}
            () = tokio::time::sleep(poll_interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn the_workers_run_until_stopped_and_then_the_pool_returns() {
        let stop = CancellationToken::new();
        let started = Arc::new(AtomicU32::new(0));
        let pool = tokio::spawn(run("test worker", 3, stop.clone(), {
            let started = started.clone();
            move |_, stop| {
                let started = started.clone();
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    stop.cancelled().await;
                }
            }
        }));
        while started.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        stop.cancel();
        pool.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_worker_that_panics_stops_the_others_and_the_panic_reaches_the_caller() {
        let stopped = Arc::new(AtomicU32::new(0));
        let pool = tokio::spawn(run("test worker", 3, CancellationToken::new(), {
            let stopped = stopped.clone();
            move |number, stop| {
                let stopped = stopped.clone();
                async move {
                    if number == 1 {
                        panic!("worker 1 broke");
                    }
                    stop.cancelled().await;
                    stopped.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
        let error = pool.await.expect_err("the panic goes on");
        assert!(error.is_panic());
        assert_eq!(
            stopped.load(Ordering::SeqCst),
            2,
            "the other two were stopped"
        );
    }

    #[tokio::test]
    async fn workers_that_return_unasked_are_an_error() {
        let outcome = run("test worker", 2, CancellationToken::new(), |_, _| async {}).await;
        assert_eq!(
            outcome.unwrap_err().to_string(),
            "the test workers returned while not told to stop"
        );
    }
}
