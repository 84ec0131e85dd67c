//! The statuses `grpc.health.v1.Health` reports: the overall status (`""`) and one per API
//! service, all driven by a background probe of PostgreSQL and Redis
//! (`crate::jobs::dependency_probe`). A dependency that stops answering flips them to
//! NOT_SERVING within one probe interval plus the probe's timeout; its return flips them back.
//! A background task that is not running holds its declared part NOT_SERVING whatever the probe
//! says ([`Health::hold`], applied by the job runner in `crate::jobs`). One more name,
//! [`LIVENESS_SERVICE`], is SERVING from start to exit, for liveness probes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The health name that answers SERVING for as long as the process serves gRPC at all, whatever
/// PostgreSQL, Redis, a provider or a background task say, shutdown included: what a liveness
/// probe asks (deploy/kubernetes, docs/deployment.md, "Probes"). A dependency outage makes the
/// overall status (`""`) NOT_SERVING on every instance at once; a liveness probe on it would
/// restart them all, which mends nothing. Only a process that no longer answers fails this one.
pub const LIVENESS_SERVICE: &str = "liveness";

/// Whether a service that depends on more than PostgreSQL and Redis can serve now (billing: its
/// payment provider is configured and the provider's circuit breaker is closed).
pub type ServiceGate = Arc<dyn Fn() -> bool + Send + Sync>;

/// What a [`Health::hold`] takes NOT_SERVING.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// One API service, by its full name (tonic's `NamedService::NAME`).
    Service(&'static str),
    /// The overall status (`""`) and every API service.
    Everything,
}

/// Sets the overall status (`""`) and every API service's at once. A service with a gate is
/// SERVING only while the dependencies are up *and* its gate is open *and* nothing holds it; the
/// others follow the dependencies and the holds.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    services: Vec<String>,
    gates: Vec<(String, ServiceGate)>,
    /// The status the dependencies last gave, so that a gate's change can be applied alone.
    overall: Arc<Mutex<ServingStatus>>,
    /// Who holds what NOT_SERVING (a task's name, and its declared part).
    holds: Arc<Mutex<Vec<(&'static str, Held)>>>,
    /// Serialises applying: each apply reads the latest state and writes every status, so the
    /// last write always agrees with the last change (a probe and a hold racing cannot leave a
    /// stale SERVING behind).
    applying: Arc<tokio::sync::Mutex<()>>,
}

impl Health {
    /// `services`: the full names of the API services served (tonic's `NamedService::NAME`).
    pub fn new(reporter: HealthReporter, services: Vec<String>) -> Self {
        Self {
            reporter,
            services,
            gates: Vec::new(),
            overall: Arc::new(Mutex::new(ServingStatus::NotServing)),
            holds: Arc::new(Mutex::new(Vec::new())),
            applying: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Whether `service` is one of the statuses reported (`""` is always).
    pub fn reports(&self, service: &str) -> bool {
        service.is_empty() || self.services.iter().any(|name| name == service)
    }

    /// Gates `service` by `gate` as well as by the dependencies.
    pub fn with_gate(mut self, service: &str, gate: ServiceGate) -> Self {
        self.gates.push((service.to_owned(), gate));
        self
    }

    /// Sets what the dependencies say, and applies it with the gates and the holds.
    pub async fn set_all(&self, status: ServingStatus) {
        let _applying = self.applying.lock().await;
        *self.overall.lock().unwrap_or_else(PoisonError::into_inner) = status;
        self.apply().await;
    }

    /// Re-applies the gates after one of them may have changed.
    pub async fn refresh_gates(&self) {
        let _applying = self.applying.lock().await;
        let overall = *self.overall.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, _) in &self.gates {
            self.reporter
                .set_service_status(name, self.gated(name, overall))
                .await;
        }
    }

    /// Holds `held` NOT_SERVING on behalf of `holder` until [`Health::release`]; holding twice
    /// is holding once.
    pub async fn hold(&self, holder: &'static str, held: Held) {
        let _applying = self.applying.lock().await;
        {
            let mut holds = self.holds.lock().unwrap_or_else(PoisonError::into_inner);
            if !holds.contains(&(holder, held)) {
                holds.push((holder, held));
            }
        }
        self.apply().await;
    }

    /// Ends every hold of `holder`: what it held follows the dependencies and gates again.
    pub async fn release(&self, holder: &'static str) {
        let _applying = self.applying.lock().await;
        self.holds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(name, _)| *name != holder);
        self.apply().await;
    }

    /// Writes every status from the dependencies' last status, the gates and the holds. Called
    /// with `applying` locked.
    async fn apply(&self) {
        let overall = *self.overall.lock().unwrap_or_else(PoisonError::into_inner);
        let everything_held = self.is_held(Held::Everything);
        let status = if everything_held {
            ServingStatus::NotServing
        } else {
            overall
        };
        self.reporter.set_service_status("", status).await;
        for name in &self.services {
            self.reporter
                .set_service_status(name, self.gated(name, status))
                .await;
        }
    }

    fn is_held(&self, held: Held) -> bool {
        self.holds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|(_, hold)| *hold == held)
    }

    /// Watches the gates every `interval` (a breaker's open → half-open is only seen by
    /// looking) and on every notification of `changed` (each provider's breaker), until `stop`.
    pub async fn watch_gates<T>(
        self,
        mut changed: Vec<tokio::sync::watch::Receiver<T>>,
        interval: Duration,
        stop: CancellationToken,
    ) {
        let mut last: Vec<bool> = Vec::new();
        loop {
            let now: Vec<bool> = self.gates.iter().map(|(_, gate)| gate()).collect();
            if now != last {
                self.refresh_gates().await;
                last = now;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
                () = any_change(&mut changed) => {}
            }
        }
    }

    fn gated(&self, service: &str, status: ServingStatus) -> ServingStatus {
        let closed = self
            .gates
            .iter()
            .any(|(name, gate)| name == service && !gate());
        let held = self
            .holds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|(_, held)| match held {
                Held::Service(name) => *name == service,
                Held::Everything => true,
            });
        if closed || held {
            ServingStatus::NotServing
        } else {
            status
        }
    }
}

/// Resolves when any of `receivers` sees a change; a receiver whose sender is gone (no more
/// changes) is dropped from the list, and with none left it never resolves (the interval alone
/// polls then).
async fn any_change<T>(receivers: &mut Vec<tokio::sync::watch::Receiver<T>>) {
    loop {
        if receivers.is_empty() {
            return std::future::pending().await;
        }
        let (index, still_sending) = {
            let mut waits: Vec<_> = receivers
                .iter_mut()
                .map(|receiver| Box::pin(receiver.changed()))
                .collect();
            std::future::poll_fn(|context| {
                for (index, wait) in waits.iter_mut().enumerate() {
                    if let std::task::Poll::Ready(result) = wait.as_mut().poll(context) {
                        return std::task::Poll::Ready((index, result.is_ok()));
                    }
                }
                std::task::Poll::Pending
            })
            .await
        };
        if still_sending {
            return;
        }
        receivers.swap_remove(index);
    }
}

#[cfg(test)]
mod tests {
    use tonic_health::pb::HealthCheckRequest;

    use super::*;

    const TICKETS: &str = "supportdesk.v1.TicketService";
    const USERS: &str = "supportdesk.v1.UserService";

    async fn status_of(
        server: &impl tonic_health::pb::health_server::Health,
        service: &str,
    ) -> i32 {
        server
            .check(tonic::Request::new(HealthCheckRequest {
                service: service.to_owned(),
            }))
            .await
            .expect("a known service")
            .into_inner()
            .status
    }

    #[tokio::test]
    async fn a_hold_keeps_its_part_not_serving_until_released_whatever_the_probe_says() {
        let reporter = HealthReporter::new();
        let server = tonic_health::server::HealthService::from_health_reporter(reporter.clone());
        let health = Health::new(reporter, vec![TICKETS.to_owned(), USERS.to_owned()]);
        let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
        let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

        health.hold("repairs", Held::Service(TICKETS)).await;
        health.set_all(ServingStatus::Serving).await;
        assert_eq!(status_of(&server, "").await, serving);
        assert_eq!(status_of(&server, TICKETS).await, not_serving);
        assert_eq!(status_of(&server, USERS).await, serving);

        health.hold("probe", Held::Everything).await;
        assert_eq!(status_of(&server, "").await, not_serving);
        assert_eq!(status_of(&server, USERS).await, not_serving);

        health.release("probe").await;
        assert_eq!(status_of(&server, "").await, serving);
        assert_eq!(status_of(&server, USERS).await, serving);
        assert_eq!(status_of(&server, TICKETS).await, not_serving);

        health.release("repairs").await;
        assert_eq!(status_of(&server, TICKETS).await, serving);
    }
}
