//! A steady mixed load on the service, as its clients make it: reads (GetTicket, SearchTickets,
//! GetDashboard), logins (Login as the load's user, with its password), and CreateTicket, AddComment, UpdateTicket (with the etag just read), CreateCharge and
//! RefundCharge, each write with an idempotency key of its own. Every failed call is recorded
//! (none is hidden by a retry), and a keyed write that failed is sent again with the same key
//! until it is acknowledged or definitively refused (a stale etag, a charge that cannot be
//! refunded: what a client would not send again as it is), as a client does; every acknowledged
//! write is recorded with its key and the id it was answered, so a test can find each exactly
//! once where it lives. Every attempt goes into a history (when it was sent, how long it took,
//! what the client was told), which a failed test writes out beside its assertion, and from which
//! [`Outcome::undocumented_answers`] finds any answer the API does not document.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use supportdesk::errors::{ERROR_DOMAIN, Reason};
use supportdesk::wire::proto::v1;
use supportdesk::wire::proto::v1::attachment_service_client::AttachmentServiceClient;
use supportdesk::wire::proto::v1::auth_service_client::AuthServiceClient;
use supportdesk::wire::proto::v1::billing_service_client::BillingServiceClient;
use supportdesk::wire::proto::v1::dashboard_service_client::DashboardServiceClient;
use supportdesk::wire::proto::v1::ticket_service_client::TicketServiceClient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::exports::ExportAttempt;
use super::{TEST_PASSWORD, TestUser, charge_request, details, with_key};

/// What a call was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    GetTicket,
    SearchTickets,
    GetDashboard,
    /// The load's user logging in again with its password: what the login quotas count.
    Login,
    CreateTicket,
    AddComment,
    /// A new description, `update <key>`, for the ticket this worker created last.
    UpdateTicket,
    CreateCharge,
    /// 1.00 of the charge this worker made last.
    RefundCharge,
    /// A small PNG, `load-<key>.png`, to the ticket this worker created last (a direct upload,
    /// answered READY).
    UploadAttachment,
    /// ImportTickets of a CSV of two tickets, `import <key> 1` and `2` (answered with the
    /// operation's name).
    ImportTickets,
}

/// One call that failed: what it was, its code and message.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) call: Call,
    /// The write's idempotency key (`None` for a read): its retries fail under the same key.
    pub(crate) key: Option<String>,
    pub(crate) code: tonic::Code,
    pub(crate) message: String,
    /// The ErrorInfo reason it carried, as sent (`None`: no ErrorInfo at all).
    pub(crate) reason: Option<String>,
    /// Whether that is one of this service's documented reasons, in its domain.
    pub(crate) documented: bool,
    /// No status came from the server or Envoy: the client's own transport ended the call (the
    /// stream reset mid-answer, tonic's "h2 protocol error"), as when the instance answering it
    /// is killed after its answer's headers went out and before its end.
    pub(crate) cut: bool,
    /// When it was sent and when the client saw it fail, in ms from the load's start.
    pub(crate) sent_ms: u64,
    pub(crate) ended_ms: u64,
}

/// One attempt of a call, as the client saw it: a line of the history.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Attempt {
    /// When it was sent and how long its answer took, in ms from the load's start.
    pub(crate) sent_ms: u64,
    pub(crate) took_ms: u64,
    pub(crate) worker: usize,
    pub(crate) call: String,
    pub(crate) key: Option<String>,
    /// The gRPC code's name (`Ok` for a success).
    pub(crate) code: String,
    pub(crate) reason: Option<String>,
    /// The id it was answered with (a write's), or the error's message.
    pub(crate) answer: String,
    /// The call was cut mid-answer rather than answered ([`Failure::cut`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) cut: bool,
}

/// What a phase that kills an instance with SIGKILL says in its name: the calls in flight on it
/// then may be cut mid-answer ([`Failure::cut`]), and only those.
pub(crate) const KILLED: &str = "(SIGKILL)";

/// How long after its phase's mark a SIGKILL may still land (the mark is taken just before it).
const KILL_LANDS_WITHIN_MS: u64 = 1_000;

/// A moment of the run a test names (a fault injected, healed), in the history's time base.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Phase {
    pub(crate) at_ms: u64,
    pub(crate) phase: String,
}

/// What a check after the run counted and found as it must be (`Outcome::counted`).
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Counted {
    pub(crate) check: String,
    pub(crate) count: usize,
}

/// Everything the load did.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Calls answered without an error.
    pub(crate) succeeded: u64,
    /// Every failed call, retried ones included.
    pub(crate) failures: Vec<Failure>,
    /// Acknowledged writes: (key, id answered).
    pub(crate) tickets: Vec<(String, String)>,
    pub(crate) comments: Vec<(String, String)>,
    pub(crate) charges: Vec<(String, String)>,
    /// Acknowledged updates and refunds: (key, the ticket's or the charge's id).
    pub(crate) updates: Vec<(String, String)>,
    pub(crate) refunds: Vec<(String, String)>,
    /// Acknowledged imports: (key, the operation's name).
    pub(crate) imports: Vec<(String, String)>,
    /// Acknowledged uploads: (key, the attachment's id).
    pub(crate) attachments: Vec<(String, String)>,
    /// Keyed writes definitively refused (a stale etag, nothing left to refund): (call, key).
    pub(crate) refused: Vec<(Call, String)>,
    /// Keyed writes never acknowledged (their retries ran out): should be none.
    pub(crate) unacknowledged: Vec<(Call, String)>,
    /// Every attempt, in the order each worker made them.
    pub(crate) history: Vec<Attempt>,
    /// What the test marked, in order ([`Load::mark`]).
    pub(crate) phases: Vec<Phase>,
    /// What the checks after the run counted, in the order they passed.
    pub(crate) counted: Vec<Counted>,
    /// The streams of a tenant exporting slowly beside the load (`support::exports`), if any.
    pub(crate) exports: Vec<ExportAttempt>,
}

impl Outcome {
    /// Adds what another load (a burst on top of this one) did.
    pub(crate) fn merge(&mut self, other: Self) {
        self.succeeded += other.succeeded;
        self.failures.extend(other.failures);
        self.tickets.extend(other.tickets);
        self.comments.extend(other.comments);
        self.charges.extend(other.charges);
        self.updates.extend(other.updates);
        self.refunds.extend(other.refunds);
        self.attachments.extend(other.attachments);
        self.imports.extend(other.imports);
        self.refused.extend(other.refused);
        self.unacknowledged.extend(other.unacknowledged);
        self.history.extend(other.history);
        self.phases.extend(other.phases);
        self.counted.extend(other.counted);
        self.exports.extend(other.exports);
        self.phases.sort_by_key(|phase| phase.at_ms);
    }

    /// Marks a phase after the load stopped (the queues drained, a check made), at the time since
    /// `epoch` (the load's).
    pub(crate) fn mark(&mut self, epoch: Instant, phase: &str) {
        self.phases.push(Phase {
            at_ms: u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX),
            phase: phase.to_owned(),
        });
    }

    /// Records that a check after the run counted `count` things and found them as they must be
    /// (the history's last lines, for the report).
    pub(crate) fn counted(&mut self, check: &str, count: usize) {
        self.counted.push(Counted {
            check: check.to_owned(),
            count,
        });
    }

    /// When each successful call of `call` was sent, in ms from the load's start.
    pub(crate) fn successes_of(&self, call: Call) -> Vec<u64> {
        let name = format!("{call:?}");
        self.history
            .iter()
            .filter(|attempt| attempt.call == name && attempt.code == "Ok")
            .map(|attempt| attempt.sent_ms)
            .collect()
    }

    /// When the test marked `phase` (the first time), in ms from the load's start.
    pub(crate) fn marked(&self, phase: &str) -> u64 {
        self.phases
            .iter()
            .find(|marked| marked.phase == phase)
            .unwrap_or_else(|| panic!("no phase {phase:?} was marked"))
            .at_ms
    }

    /// When the phase named `phase` began and when the next one did (or the last attempt ended).
    pub(crate) fn phase_bounds(&self, phase: &str) -> (u64, u64) {
        let from = self.marked(phase);
        let next = self
            .phases
            .iter()
            .map(|marked| marked.at_ms)
            .filter(|at| *at > from)
            .min();
        let last = self
            .history
            .iter()
            .map(|attempt| attempt.sent_ms + attempt.took_ms)
            .max()
            .unwrap_or(from);
        (from, next.unwrap_or(last.max(from)))
    }

    /// The failures whose answer the API does not document: a code that is always a fault of the
    /// server (INTERNAL, UNKNOWN, DATA_LOSS, UNIMPLEMENTED), or no documented ErrorInfo reason.
    /// A call cut mid-answer while a [`KILLED`] phase killed an instance was not answered at
    /// all, and is not among them ([`Outcome::cut_by_kills`]); one cut at any other time is.
    pub(crate) fn undocumented_answers(&self) -> Vec<&Failure> {
        use tonic::Code;
        self.failures
            .iter()
            .filter(|failure| {
                (matches!(
                    failure.code,
                    Code::Internal | Code::Unknown | Code::DataLoss | Code::Unimplemented
                ) || !failure.documented)
                    && !self.cut_by_a_kill(failure)
            })
            .collect()
    }

    /// The calls cut mid-answer by an instance's SIGKILL: in flight when a [`KILLED`] phase
    /// began, cut by the client's transport with no status from the server.
    pub(crate) fn cut_by_kills(&self) -> usize {
        self.failures
            .iter()
            .filter(|failure| self.cut_by_a_kill(failure))
            .count()
    }

    fn cut_by_a_kill(&self, failure: &Failure) -> bool {
        failure.cut && self.in_flight_at_a_kill(failure.sent_ms, failure.ended_ms)
    }

    /// Whether a call sent at `sent_ms` and ended at `ended_ms` was in flight when a [`KILLED`]
    /// phase killed an instance.
    pub(crate) fn in_flight_at_a_kill(&self, sent_ms: u64, ended_ms: u64) -> bool {
        self.phases
            .iter()
            .filter(|marked| marked.phase.contains(KILLED))
            .any(|killed| {
                sent_ms <= killed.at_ms + KILL_LANDS_WITHIN_MS && ended_ms >= killed.at_ms
            })
    }

    /// Writes the history, one JSON line an attempt in the order they were sent, to a file in
    /// the system's temporary directory named after `test`, and returns its path: what a failed
    /// assertion points to.
    pub(crate) fn write_history(&self, test: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "supportdesk-history-{test}-{}.jsonl",
            std::process::id()
        ));
        self.write_history_to(&path);
        path
    }

    /// Writes the history to `path`: each phase the test marked (`{"at_ms", "phase"}`), each
    /// attempt and each stream of the exporting tenant (`{"sent_ms", "stream", ...}`), one JSON
    /// line each, in time order (a phase before the attempts sent at its millisecond), then what
    /// the checks counted (`{"check", "count"}`).
    pub(crate) fn write_history_to(&self, path: &std::path::Path) {
        // Phases first at a tie, and in the order they were marked.
        let mut lines: Vec<(u64, u8, usize, String)> = self
            .phases
            .iter()
            .enumerate()
            .map(|(order, phase)| {
                let line = serde_json::to_string(phase).expect("a phase as JSON");
                (phase.at_ms, 0, order, line)
            })
            .chain(self.history.iter().map(|attempt| {
                let line = serde_json::to_string(attempt).expect("an attempt as JSON");
                (attempt.sent_ms, 1, 0, line)
            }))
            .chain(self.exports.iter().map(|export| {
                let line = serde_json::to_string(export).expect("an export as JSON");
                (export.sent_ms, 1, 1, line)
            }))
            .chain(self.counted.iter().enumerate().map(|(order, counted)| {
                let line = serde_json::to_string(counted).expect("a count as JSON");
                (u64::MAX, 2, order, line)
            }))
            .collect();
        lines.sort();
        let text: String = lines.into_iter().map(|(.., line)| line + "\n").collect();
        std::fs::write(path, text).expect("write the history");
    }

    /// How many calls failed at least once: each read that failed, each write whose key failed.
    pub(crate) fn failed_calls(&self) -> usize {
        let keys: std::collections::BTreeSet<&str> = self
            .failures
            .iter()
            .filter_map(|f| f.key.as_deref())
            .collect();
        keys.len() + self.failures.iter().filter(|f| f.key.is_none()).count()
    }

    /// The failures counted by call, code and reason, with one message of each: what a failed
    /// assertion shows.
    pub(crate) fn failure_summary(&self) -> BTreeMap<String, (usize, String)> {
        let mut summary: BTreeMap<String, (usize, String)> = BTreeMap::new();
        for failure in &self.failures {
            let entry = summary
                .entry(format!(
                    "{:?} {:?} {}",
                    failure.call,
                    failure.code,
                    failure.reason.as_deref().unwrap_or("(no ErrorInfo)")
                ))
                .or_insert_with(|| (0, failure.message.clone()));
            entry.0 += 1;
        }
        summary
    }

    /// Every call made, failed ones included.
    pub(crate) fn calls(&self) -> u64 {
        self.succeeded + self.failures.len() as u64
    }
}

/// The load, running until [`Load::stop`].
pub(crate) struct Load {
    stop: CancellationToken,
    workers: Vec<JoinHandle<Outcome>>,
    calls: Arc<AtomicU64>,
    epoch: Instant,
    phases: std::sync::Mutex<Vec<Phase>>,
}

/// Whom the load calls as and about.
#[derive(Clone)]
pub(crate) struct Callers {
    /// The user every call is made as (an admin).
    pub(crate) user: TestUser,
    /// A customer of the user's account, charged.
    pub(crate) customer_id: String,
    /// A ticket read and commented on.
    pub(crate) ticket_id: String,
    /// Whether the workers also upload attachments (UploadAttachment) to their own tickets:
    /// only where a store is configured.
    pub(crate) uploads: bool,
    /// Whether the workers also import tickets now and then (ImportTickets).
    pub(crate) imports: bool,
}

/// What the workers share.
#[derive(Clone)]
struct Target {
    user: TestUser,
    customer_id: String,
    ticket_id: String,
    uploads: bool,
    imports: bool,
    calls: Arc<AtomicU64>,
    started: Instant,
}

impl Load {
    /// `workers` concurrent callers over `channels` (round robin), as `callers` say; each waits
    /// `pause` between calls.
    pub(crate) fn start(
        channels: &[Channel],
        callers: &Callers,
        workers: usize,
        pause: Duration,
    ) -> Self {
        Self::start_at(Instant::now(), channels, callers, workers, pause)
    }

    /// As [`Load::start`], with times in the history counted from `epoch` (another load's, so
    /// that a burst's history lines up with the steady load's).
    pub(crate) fn start_at(
        epoch: Instant,
        channels: &[Channel],
        callers: &Callers,
        workers: usize,
        pause: Duration,
    ) -> Self {
        let stop = CancellationToken::new();
        let calls = Arc::new(AtomicU64::new(0));
        let target = Target {
            user: callers.user.clone(),
            customer_id: callers.customer_id.clone(),
            ticket_id: callers.ticket_id.clone(),
            uploads: callers.uploads,
            imports: callers.imports,
            calls: calls.clone(),
            started: epoch,
        };
        let workers = (0..workers)
            .map(|worker| {
                let channel = channels[worker % channels.len()].clone();
                tokio::spawn(work(worker, channel, target.clone(), pause, stop.clone()))
            })
            .collect();
        Self {
            stop,
            workers,
            calls,
            epoch,
            phases: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// When the history's times count from.
    pub(crate) fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Marks the start of a phase of the run (a fault injected, healed) in the history.
    pub(crate) fn mark(&self, phase: &str) {
        let at_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.phases.lock().expect("the phases").push(Phase {
            at_ms,
            phase: phase.to_owned(),
        });
    }

    /// How many calls have been made so far.
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Waits until `more` calls have been made since now.
    pub(crate) async fn wait_for_calls(&self, more: u64) {
        let target = self.calls() + more;
        // A minute, or a quarter of a second a call for the long phases of bench/chaos (a phase
        // with an instance's PostgreSQL stalled holds callers for their whole deadline).
        let patience = Duration::from_secs(60).max(Duration::from_millis(more * 250));
        let deadline = tokio::time::Instant::now() + patience;
        while self.calls() < target {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the load made fewer than {more} calls in {patience:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the load (each keyed write in progress is finished first) and returns what it did.
    pub(crate) async fn stop(self) -> Outcome {
        self.stop.cancel();
        let mut outcome = Outcome::default();
        for worker in self.workers {
            outcome.merge(worker.await.expect("a load worker panicked"));
        }
        outcome.phases = self.phases.into_inner().expect("the phases");
        outcome
    }
}

/// How many times a keyed write is sent before it counts as never acknowledged, and how long
/// between tries (an instance's restart or a held key's lease takes seconds).
const KEYED_ATTEMPTS: u32 = 100;
const KEYED_BACKOFF: Duration = Duration::from_millis(200);

async fn work(
    worker: usize,
    channel: Channel,
    target: Target,
    pause: Duration,
    stop: CancellationToken,
) -> Outcome {
    let mut tickets = TicketServiceClient::new(channel.clone());
    let mut billing = BillingServiceClient::new(channel.clone());
    let mut more = MoreClients {
        auth: AuthServiceClient::new(channel.clone()),
        dashboard: DashboardServiceClient::new(channel.clone()),
        attachments: AttachmentServiceClient::new(channel),
    };
    let mut outcome = Outcome::default();
    let mut turn = worker;
    while !stop.is_cancelled() {
        turn += 1;
        // This worker's own latest ticket and charge, what its updates and refunds are about.
        let own_ticket = outcome.tickets.last().map(|(_, id)| id.clone());
        let own_charge = outcome.charges.last().map(|(_, id)| id.clone());
        let call = match (turn % 8, &own_ticket, &own_charge) {
            (0, ..) => Call::CreateCharge,
            (5, ..) if turn % 64 == 5 && target.imports => Call::ImportTickets,
            (1 | 5, ..) => Call::CreateTicket,
            (2, Some(_), _) => Call::UpdateTicket,
            (3, ..) => Call::AddComment,
            (6, ..) if turn % 16 == 6 => Call::SearchTickets,
            (6, ..) => Call::GetDashboard,
            (7, _, Some(_)) if turn % 16 == 7 => Call::RefundCharge,
            (4, ..) if turn % 16 == 4 => Call::Login,
            (4, Some(_), _) if target.uploads => Call::UploadAttachment,
            _ => Call::GetTicket,
        };
        if call.is_read() {
            let sent = target.started.elapsed();
            let answer = read(call, &target, &mut tickets, &mut more).await;
            record_read(&mut outcome, worker, sent, &target, call, &answer);
        } else {
            let subject = match call {
                Call::UpdateTicket | Call::UploadAttachment => own_ticket.clone(),
                Call::RefundCharge => own_charge.clone(),
                Call::GetTicket
                | Call::SearchTickets
                | Call::GetDashboard
                | Call::Login
                | Call::CreateTicket
                | Call::AddComment
                | Call::CreateCharge
                | Call::ImportTickets => None,
            };
            // An update names the version it changes: the one read just before.
            let etag = match (call, &subject) {
                (Call::UpdateTicket, Some(id)) => {
                    let sent = target.started.elapsed();
                    let read = get_ticket(&mut tickets, &target, id).await;
                    let answer = read.as_ref().map(|ticket| ticket.id.clone());
                    let answer = answer.map_err(Clone::clone);
                    record_read(
                        &mut outcome,
                        worker,
                        sent,
                        &target,
                        Call::GetTicket,
                        &answer,
                    );
                    let Ok(ticket) = read else {
                        tokio::time::sleep(pause).await;
                        continue;
                    };
                    ticket.etag
                }
                _ => String::new(),
            };
            let write = Write {
                call,
                key: uuid::Uuid::now_v7().to_string(),
                subject: subject.unwrap_or_default(),
                etag,
            };
            let mut acknowledged = None;
            let mut refused = false;
            for _ in 0..KEYED_ATTEMPTS {
                let sent = target.started.elapsed();
                let answer =
                    keyed_write(&write, &target, &mut tickets, &mut billing, &mut more).await;
                target.calls.fetch_add(1, Ordering::SeqCst);
                outcome.history.push(attempt(
                    worker,
                    sent,
                    &target,
                    call,
                    Some(&write.key),
                    &answer,
                ));
                match answer {
                    Ok(id) => {
                        outcome.succeeded += 1;
                        acknowledged = Some(id);
                        break;
                    }
                    Err(status) => {
                        let definitive = is_definitive_refusal(&status);
                        outcome.failures.push(failure(
                            call,
                            Some(&write.key),
                            &status,
                            sent,
                            &target,
                        ));
                        if definitive {
                            refused = true;
                            break;
                        }
                        tokio::time::sleep(KEYED_BACKOFF).await;
                    }
                }
            }
            let key = write.key;
            match (acknowledged, call) {
                (Some(id), Call::CreateTicket) => outcome.tickets.push((key, id)),
                (Some(id), Call::AddComment) => outcome.comments.push((key, id)),
                (Some(id), Call::CreateCharge) => outcome.charges.push((key, id)),
                (Some(id), Call::UpdateTicket) => outcome.updates.push((key, id)),
                (Some(id), Call::RefundCharge) => outcome.refunds.push((key, id)),
                (Some(id), Call::UploadAttachment) => outcome.attachments.push((key, id)),
                (Some(name), Call::ImportTickets) => outcome.imports.push((key, name)),
                (
                    Some(_),
                    Call::GetTicket | Call::SearchTickets | Call::GetDashboard | Call::Login,
                ) => {
                    unreachable!("reads are not keyed")
                }
                (None, _) if refused => outcome.refused.push((call, key)),
                (None, _) => outcome.unacknowledged.push((call, key)),
            }
        }
        tokio::time::sleep(pause).await;
    }
    outcome
}

/// A keyed write as its retries send it again: the same key, the same request.
struct Write {
    call: Call,
    key: String,
    /// The ticket an update changes, the charge a refund refunds.
    subject: String,
    /// The etag an update was read with.
    etag: String,
}

/// Whether a client would stop sending a keyed write after `status`: the ticket changed since
/// its etag was read, or the charge cannot be refunded (again). Everything else is sent again.
fn is_definitive_refusal(status: &tonic::Status) -> bool {
    let reason = details(status).error_info().map(|info| info.reason.clone());
    status.code() == tonic::Code::FailedPrecondition
        || (status.code() == tonic::Code::Aborted
            && reason.as_deref() == Some(Reason::EtagMismatch.as_str()))
}

/// Counts a read made and puts it into the history, its outcome among the successes or failures.
fn record_read(
    outcome: &mut Outcome,
    worker: usize,
    sent: Duration,
    target: &Target,
    call: Call,
    answer: &Result<String, tonic::Status>,
) {
    target.calls.fetch_add(1, Ordering::SeqCst);
    outcome
        .history
        .push(attempt(worker, sent, target, call, None, answer));
    match answer {
        Ok(_) => outcome.succeeded += 1,
        Err(status) => outcome
            .failures
            .push(failure(call, None, status, sent, target)),
    }
}

/// GetTicket of `id`, as the load's user.
async fn get_ticket(
    tickets: &mut TicketServiceClient<Channel>,
    target: &Target,
    id: &str,
) -> Result<v1::Ticket, tonic::Status> {
    tickets
        .get_ticket(target.user.request(v1::GetTicketRequest {
            id: id.to_owned(),
            read_mask: None,
        }))
        .await
        .map(tonic::Response::into_inner)
}

impl Call {
    /// Whether the load sends it once, without an idempotency key: reads, and logins (a login a
    /// client sends again is another login).
    fn is_read(self) -> bool {
        match self {
            Self::GetTicket | Self::SearchTickets | Self::GetDashboard | Self::Login => true,
            Self::CreateTicket
            | Self::AddComment
            | Self::UpdateTicket
            | Self::CreateCharge
            | Self::RefundCharge
            | Self::UploadAttachment
            | Self::ImportTickets => false,
        }
    }
}

/// The clients of the calls a worker makes besides tickets and billing.
struct MoreClients {
    auth: AuthServiceClient<Channel>,
    dashboard: DashboardServiceClient<Channel>,
    attachments: AttachmentServiceClient<Channel>,
}

/// Makes the read `call` once; the id of the ticket read (or found first), of the user logged
/// in, or the dashboard's panels' states.
async fn read(
    call: Call,
    target: &Target,
    tickets: &mut TicketServiceClient<Channel>,
    readers: &mut MoreClients,
) -> Result<String, tonic::Status> {
    match call {
        Call::Login => readers
            .auth
            .login(v1::LoginRequest {
                account: target.user.account_slug.clone(),
                email: target.user.email.clone(),
                password: TEST_PASSWORD.to_owned(),
            })
            .await
            .map(|answer| {
                answer
                    .into_inner()
                    .user
                    .map(|user| user.id)
                    .unwrap_or_default()
            }),
        Call::GetDashboard => readers
            .dashboard
            .get_dashboard(target.user.request(v1::GetDashboardRequest::default()))
            .await
            .map(|answer| format!("{:?}", panel_states(&answer.into_inner()))),
        Call::SearchTickets => tickets
            .search_tickets(target.user.request(v1::SearchTicketsRequest {
                q: "load".to_owned(),
                page_size: 5,
                ..Default::default()
            }))
            .await
            // Every ticket of the page: a test checks none is another account's.
            .map(|page| {
                page.into_inner()
                    .results
                    .iter()
                    .filter_map(|result| result.ticket.as_ref())
                    .map(|ticket| ticket.id.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        Call::GetTicket
        | Call::CreateTicket
        | Call::AddComment
        | Call::UpdateTicket
        | Call::CreateCharge
        | Call::RefundCharge
        | Call::UploadAttachment
        | Call::ImportTickets => get_ticket(tickets, target, &target.ticket_id)
            .await
            .map(|ticket| ticket.id),
    }
}

/// Each panel's status code (0: it is there), revenue, ticket stats and recent activity: a
/// panel whose source failed says so in an answer that is still OK.
fn panel_states(dashboard: &v1::Dashboard) -> [Option<i32>; 3] {
    let code = |status: Option<&supportdesk::wire::proto::google::rpc::Status>| {
        status.map(|status| status.code)
    };
    [
        dashboard
            .revenue
            .as_ref()
            .map(|panel| code(panel.status.as_ref())),
        dashboard
            .ticket_stats
            .as_ref()
            .map(|panel| code(panel.status.as_ref())),
        dashboard
            .recent_activity
            .as_ref()
            .map(|panel| code(panel.status.as_ref())),
    ]
    .map(Option::flatten)
}

/// Sends the keyed write `call` once with `key`; the id of what it made.
async fn keyed_write(
    write: &Write,
    target: &Target,
    tickets: &mut TicketServiceClient<Channel>,
    billing: &mut BillingServiceClient<Channel>,
    more: &mut MoreClients,
) -> Result<String, tonic::Status> {
    let key = write.key.as_str();
    match write.call {
        Call::UploadAttachment => {
            let bytes = super::attachments::png_bytes(key.as_bytes()[key.len() - 1]);
            let messages = super::attachments::direct_upload(
                &write.subject,
                &format!("load-{key}.png"),
                "image/png",
                &bytes,
                bytes.len(),
            );
            more.attachments
                .upload_attachment(with_key(
                    target.user.request(super::attachments::streamed(messages)),
                    key,
                ))
                .await
                .map(|answer| answer.into_inner().id)
        }
        Call::ImportTickets => tickets
            .import_tickets(with_key(
                target.user.request(v1::ImportTicketsRequest {
                    format: v1::ImportFormat::Csv.into(),
                    content: format!(
                        "subject,description,requester_email\n\
                         import {key} 1,Imported by the load.,imported-{key}@example.com\n\
                         import {key} 2,Imported by the load.,imported-{key}@example.com\n"
                    ),
                }),
                key,
            ))
            .await
            .map(|answer| answer.into_inner().name),
        Call::CreateTicket => tickets
            .create_ticket(with_key(
                target.user.request(v1::CreateTicketRequest {
                    ticket: Some(v1::Ticket {
                        subject: format!("load {key}"),
                        description: "Made by the load generator.".to_owned(),
                        // A requester per ticket: the open-ticket rule is not what is tested.
                        requester_email: format!("requester-{key}@example.com"),
                        ..Default::default()
                    }),
                }),
                key,
            ))
            .await
            .map(|answer| answer.into_inner().id),
        Call::AddComment => tickets
            .add_comment(with_key(
                target.user.request(v1::AddCommentRequest {
                    ticket_id: target.ticket_id.clone(),
                    // Public: the ticket's requester is told of it by mail.
                    comment: Some(v1::Comment {
                        body: format!("comment {key}"),
                        public: true,
                        ..Default::default()
                    }),
                }),
                key,
            ))
            .await
            .map(|answer| answer.into_inner().id),
        Call::CreateCharge => billing
            .create_charge(with_key(
                target
                    .user
                    .request(charge_request(&target.customer_id, 500, "USD")),
                key,
            ))
            .await
            .map(|answer| answer.into_inner().id),
        Call::UpdateTicket => tickets
            .update_ticket(with_key(
                target.user.request(v1::UpdateTicketRequest {
                    ticket: Some(v1::Ticket {
                        id: write.subject.clone(),
                        description: format!("update {key}"),
                        etag: write.etag.clone(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["description".to_owned()],
                    }),
                }),
                key,
            ))
            .await
            .map(|answer| answer.into_inner().id),
        Call::RefundCharge => billing
            .refund_charge(with_key(
                target.user.request(v1::RefundChargeRequest {
                    id: write.subject.clone(),
                    amount: Some(v1::Money {
                        amount_minor: 100,
                        currency_code: "USD".to_owned(),
                    }),
                }),
                key,
            ))
            .await
            .map(|answer| answer.into_inner().id),
        Call::GetTicket | Call::SearchTickets | Call::GetDashboard | Call::Login => {
            unreachable!("reads are not keyed")
        }
    }
}

fn failure(
    call: Call,
    key: Option<&str>,
    status: &tonic::Status,
    sent: Duration,
    target: &Target,
) -> Failure {
    let info = details(status).error_info().cloned();
    let documented = info
        .as_ref()
        .is_some_and(|info| info.domain == ERROR_DOMAIN && Reason::parse(&info.reason).is_some());
    Failure {
        call,
        key: key.map(str::to_owned),
        code: status.code(),
        message: status.message().to_owned(),
        reason: info.map(|info| info.reason),
        documented,
        cut: is_cut(status),
        sent_ms: sent.as_millis() as u64,
        ended_ms: target.started.elapsed().as_millis() as u64,
    }
}

/// Whether the client's transport made `status` (tonic keeps the transport's error as its
/// source) rather than the server or Envoy (a status read from trailers has none).
fn is_cut(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
}

fn attempt(
    worker: usize,
    sent: Duration,
    target: &Target,
    call: Call,
    key: Option<&str>,
    answer: &Result<String, tonic::Status>,
) -> Attempt {
    let cut = answer.as_ref().err().is_some_and(is_cut);
    let (code, reason, answer) = match answer {
        Ok(id) => ("Ok".to_owned(), None, id.clone()),
        Err(status) => (
            format!("{:?}", status.code()),
            details(status).error_info().map(|info| info.reason.clone()),
            status.message().to_owned(),
        ),
    };
    Attempt {
        sent_ms: sent.as_millis() as u64,
        took_ms: (target.started.elapsed() - sent).as_millis() as u64,
        worker,
        call: format!("{call:?}"),
        key: key.map(str::to_owned),
        code,
        reason,
        answer,
        cut,
    }
}
