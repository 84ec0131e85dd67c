//! The SLA clock of one ticket (issue 69, docs/sla.md): for each target its policy sets at the
//! ticket's priority, when the clock started, how much of it has run, when it is due, and whether
//! it was met or breached. Pure: the ticket's own transaction tells it what happened, at the
//! database's time, and stores what it answers, so no job that can lag or lose a change writes a
//! due time.
//!
//! The rules, as a support lead used to Zendesk expects them:
//! - first reply runs from creation to the first public reply of an agent;
//! - next reply runs from a public reply of the requester, once the first reply was given, to
//!   the next public reply of an agent: one cycle per requester reply (later replies while a
//!   cycle runs belong to it: the oldest unanswered reply is what the requester waits on);
//! - resolution runs from creation to solved, paused while the ticket waits (PENDING, ON_HOLD),
//!   resumed where it stopped when the wait ends, and again when a solved ticket is reopened;
//! - solving meets every clock still running (a solved ticket owes no reply);
//! - a breach is the due time passing before the target is met; it stays on the clock once
//!   noted, whatever a later policy says.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::TicketStatus;
use super::schedule::{Clock, Schedule, ScheduleError};
use super::sla_policy::{SlaMetric, SlaTarget};

/// The policy revision a ticket is measured against: editing the policy makes a new revision,
/// and the ticket keeps the one its clocks were set by until it is evaluated again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlaStamp {
    pub policy_id: Uuid,
    pub revision: i32,
}

/// Where one target's clock stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockState {
    /// Running since `since`, `elapsed_before` of its clock spent before (ahead of a pause).
    Running {
        since: DateTime<Utc>,
        elapsed_before: TimeDelta,
        due_at: DateTime<Utc>,
    },
    /// Stopped while the ticket waits, `elapsed` of its clock spent.
    Paused { elapsed: TimeDelta },
    /// Met at `at`, `elapsed` of its clock spent (resolution resumes from it on a reopen).
    Met {
        at: DateTime<Utc>,
        elapsed: TimeDelta,
    },
}

/// One target's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricClock {
    pub target: SlaTarget,
    /// 1 for first reply and resolution; next reply counts one cycle per requester reply.
    pub cycle: u32,
    pub state: ClockState,
    /// The due time, once it passed before the target was met.
    pub breached_at: Option<DateTime<Utc>>,
}

impl MetricClock {
    pub fn metric(&self) -> SlaMetric {
        self.target.metric
    }

    /// When it is due, while it runs.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        match self.state {
            ClockState::Running { due_at, .. } => Some(due_at),
            ClockState::Paused { .. } | ClockState::Met { .. } => None,
        }
    }

    /// When it was breached, as of `now`: a noted breach, or a due time already past.
    pub fn breached_as_of(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.breached_at
            .or_else(|| self.due_at().filter(|due_at| *due_at <= now))
    }

    /// A next-reply clock before the requester's first reply: cycle 0, met, so that the next
    /// requester reply starts cycle 1.
    fn before_any_cycle(target: SlaTarget, at: DateTime<Utc>) -> Self {
        Self {
            target,
            cycle: 0,
            state: ClockState::Met {
                at,
                elapsed: TimeDelta::zero(),
            },
            breached_at: None,
        }
    }

    fn started(
        target: SlaTarget,
        cycle: u32,
        at: DateTime<Utc>,
        clock: Clock<'_>,
    ) -> Result<Self, ScheduleError> {
        Ok(Self {
            target,
            cycle,
            state: running(target, at, TimeDelta::zero(), clock)?,
            breached_at: None,
        })
    }

    /// Notes a breach whose due time passed by `at`.
    fn note_breach(&mut self, at: DateTime<Utc>) {
        if self.breached_at.is_none()
            && let Some(due_at) = self.due_at().filter(|due_at| *due_at <= at)
        {
            self.breached_at = Some(due_at);
        }
    }

    fn elapsed(&self, at: DateTime<Utc>, clock: Clock<'_>) -> Result<TimeDelta, ScheduleError> {
        match self.state {
            ClockState::Running {
                since,
                elapsed_before,
                ..
            } => Ok(elapsed_before + clock.elapsed_between(since, at)?),
            ClockState::Paused { elapsed } | ClockState::Met { elapsed, .. } => Ok(elapsed),
        }
    }

    fn pause(&mut self, at: DateTime<Utc>, clock: Clock<'_>) -> Result<(), ScheduleError> {
        self.note_breach(at);
        if let ClockState::Running { .. } = self.state {
            self.state = ClockState::Paused {
                elapsed: self.elapsed(at, clock)?,
            };
        }
        Ok(())
    }

    /// Runs again from `at`, owing what is left of the target: a paused clock, or a met one
    /// (a reopened ticket's resolution).
    fn resume(&mut self, at: DateTime<Utc>, clock: Clock<'_>) -> Result<(), ScheduleError> {
        if let ClockState::Paused { elapsed } | ClockState::Met { elapsed, .. } = self.state {
            self.state = running(self.target, at, elapsed, clock)?;
        }
        Ok(())
    }

    fn meet(&mut self, at: DateTime<Utc>, clock: Clock<'_>) -> Result<(), ScheduleError> {
        self.note_breach(at);
        if !matches!(self.state, ClockState::Met { .. }) {
            self.state = ClockState::Met {
                at,
                elapsed: self.elapsed(at, clock)?,
            };
        }
        Ok(())
    }

    /// Measured against `target` from now on, its progress kept: a running clock owes the new
    /// target minus what it spent; a breach already noted stays.
    fn retarget(&mut self, target: SlaTarget, clock: Clock<'_>) -> Result<(), ScheduleError> {
        self.target = target;
        if let ClockState::Running {
            since,
            elapsed_before,
            ..
        } = self.state
        {
            self.state = running(target, since, elapsed_before, clock)?;
        }
        Ok(())
    }
}

fn running(
    target: SlaTarget,
    since: DateTime<Utc>,
    elapsed_before: TimeDelta,
    clock: Clock<'_>,
) -> Result<ClockState, ScheduleError> {
    let owed = TimeDelta::minutes(i64::from(target.minutes())) - elapsed_before;
    Ok(ClockState::Running {
        since,
        elapsed_before,
        due_at: clock.due_after(since, owed)?,
    })
}

/// The policy a ticket matched, as its change's transaction found it: the revision, its targets
/// at the ticket's priority, and the schedule its business-hours targets run on.
#[derive(Clone, Copy, Debug)]
pub struct AppliedPolicy<'a> {
    pub stamp: SlaStamp,
    pub targets: &'a [SlaTarget],
    pub schedule: Option<&'a Schedule>,
}

impl AppliedPolicy<'_> {
    fn target(&self, metric: SlaMetric) -> Option<SlaTarget> {
        self.targets
            .iter()
            .find(|target| target.metric == metric)
            .copied()
    }
}

/// What happened to a ticket, as its clocks need to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlaEvent {
    /// A public reply of an agent (or an agent's API key).
    AgentReply,
    /// A public reply of the requester; `answered`: the desk has replied in public before.
    RequesterReply { answered: bool },
    StatusChanged {
        from: TicketStatus,
        to: TicketStatus,
    },
}

/// Why a clock could not be set: a business-hours target without its schedule, or a schedule
/// the target cannot be reached on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlaClockError {
    #[error("a business-hours target of the policy has no schedule to run on")]
    NoSchedule,
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// A ticket's clocks and the policy revision that set them; empty when no policy matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlaClock {
    pub stamp: Option<SlaStamp>,
    pub clocks: Vec<MetricClock>,
}

impl SlaClock {
    /// The clocks of a ticket created at `at` in `status` under `policy` (none when no policy
    /// matches): first reply and resolution start; next reply waits for the requester.
    pub fn started(
        policy: Option<&AppliedPolicy<'_>>,
        status: TicketStatus,
        at: DateTime<Utc>,
    ) -> Result<Self, SlaClockError> {
        let mut started = Self::default();
        if let Some(policy) = policy {
            started.stamp = Some(policy.stamp);
            for metric in [SlaMetric::FirstReply, SlaMetric::Resolution] {
                if let Some(target) = policy.target(metric) {
                    started.start(target, 1, status, at, policy.schedule)?;
                }
            }
            if let Some(target) = policy.target(SlaMetric::NextReply) {
                started
                    .clocks
                    .push(MetricClock::before_any_cycle(target, at));
            }
        }
        Ok(started)
    }

    /// The clock of `metric`, if the policy sets a target for it.
    pub fn clock(&self, metric: SlaMetric) -> Option<&MetricClock> {
        self.clocks.iter().find(|clock| clock.metric() == metric)
    }

    /// The earliest due time of a running clock: what the ticket is ordered by, overdue first.
    pub fn next_due_at(&self) -> Option<DateTime<Utc>> {
        self.clocks.iter().filter_map(MetricClock::due_at).min()
    }

    /// What `event` at `at` does to the clocks, measured on `schedule` (the stamped policy's).
    pub fn record(
        &mut self,
        event: SlaEvent,
        at: DateTime<Utc>,
        schedule: Option<&Schedule>,
    ) -> Result<(), SlaClockError> {
        match event {
            SlaEvent::AgentReply => {
                for clock in &mut self.clocks {
                    if clock.metric() != SlaMetric::Resolution {
                        clock.meet(at, clock_of(clock.target, schedule)?)?;
                    }
                }
            }
            SlaEvent::RequesterReply { answered } => {
                let first_pending = self
                    .clock(SlaMetric::FirstReply)
                    .is_some_and(|clock| !matches!(clock.state, ClockState::Met { .. }));
                if answered
                    && !first_pending
                    && let Some(index) = self.index(SlaMetric::NextReply)
                {
                    let clock = &mut self.clocks[index];
                    if let ClockState::Met { .. } = clock.state {
                        *clock = MetricClock::started(
                            clock.target,
                            clock.cycle + 1,
                            at,
                            clock_of(clock.target, schedule)?,
                        )?;
                    }
                }
            }
            SlaEvent::StatusChanged { from, to } => {
                for clock in &mut self.clocks {
                    let measured = clock_of(clock.target, schedule)?;
                    if !to.is_open() {
                        clock.meet(at, measured)?;
                    } else if clock.metric() == SlaMetric::Resolution {
                        if to.is_waiting() {
                            clock.pause(at, measured)?;
                        } else if from.is_waiting() || !from.is_open() {
                            clock.resume(at, measured)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Measures the ticket against `policy` from `at` on (another policy matched, or the
    /// stamped one changed, or the ticket's priority did): the clocks of metrics both set keep
    /// their progress under the new targets; a metric new to the ticket starts at `at` (first
    /// reply only while unanswered, next reply at the requester's next reply); a metric the
    /// policy no longer sets is dropped. `None`: no policy matches any more, no clock runs.
    pub fn reapply(
        &mut self,
        policy: Option<&AppliedPolicy<'_>>,
        status: TicketStatus,
        answered: bool,
        at: DateTime<Utc>,
    ) -> Result<(), SlaClockError> {
        let Some(policy) = policy else {
            *self = Self::default();
            return Ok(());
        };
        self.stamp = Some(policy.stamp);
        let mut kept = Vec::new();
        for metric in SlaMetric::ALL {
            let Some(target) = policy.target(metric) else {
                continue;
            };
            let measured = clock_of(target, policy.schedule)?;
            if let Some(mut clock) = self.clock(metric).copied() {
                clock.retarget(target, measured)?;
                kept.push(clock);
            } else {
                let fresh = match metric {
                    SlaMetric::FirstReply if answered => None,
                    SlaMetric::FirstReply | SlaMetric::Resolution => {
                        Some(MetricClock::started(target, 1, at, measured)?)
                    }
                    SlaMetric::NextReply => Some(MetricClock::before_any_cycle(target, at)),
                };
                if let Some(mut clock) = fresh {
                    settle_for_status(&mut clock, status, at, measured)?;
                    kept.push(clock);
                }
            }
        }
        self.clocks = kept;
        Ok(())
    }

    fn index(&self, metric: SlaMetric) -> Option<usize> {
        self.clocks
            .iter()
            .position(|clock| clock.metric() == metric)
    }

    fn start(
        &mut self,
        target: SlaTarget,
        cycle: u32,
        status: TicketStatus,
        at: DateTime<Utc>,
        schedule: Option<&Schedule>,
    ) -> Result<(), SlaClockError> {
        let measured = clock_of(target, schedule)?;
        let mut clock = MetricClock::started(target, cycle, at, measured)?;
        settle_for_status(&mut clock, status, at, measured)?;
        self.clocks.push(clock);
        Ok(())
    }
}

/// A clock started at `at` on a ticket already in `status`: met when it is solved, resolution
/// paused while it waits.
fn settle_for_status(
    clock: &mut MetricClock,
    status: TicketStatus,
    at: DateTime<Utc>,
    measured: Clock<'_>,
) -> Result<(), ScheduleError> {
    if !status.is_open() {
        clock.meet(at, measured)?;
    } else if status.is_waiting() && clock.metric() == SlaMetric::Resolution {
        clock.pause(at, measured)?;
    }
    Ok(())
}

/// The clock `target` runs on: calendar time, or the policy's schedule.
fn clock_of(target: SlaTarget, schedule: Option<&Schedule>) -> Result<Clock<'_>, SlaClockError> {
    if !target.business_hours {
        return Ok(Clock::Calendar);
    }
    schedule
        .map(Clock::Business)
        .ok_or(SlaClockError::NoSchedule)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::TicketPriority;
    use crate::domain::schedule::test_support::{at, office_hours};

    const T0: &str = "2026-03-02T10:00:00Z";

    fn t(minutes: i64) -> DateTime<Utc> {
        T0.parse::<DateTime<Utc>>().unwrap() + TimeDelta::minutes(minutes)
    }

    fn target(metric: SlaMetric, minutes: i64, business_hours: bool) -> SlaTarget {
        SlaTarget::new(TicketPriority::High, metric, minutes, business_hours).unwrap()
    }

    fn policy<'a>(targets: &'a [SlaTarget], schedule: Option<&'a Schedule>) -> AppliedPolicy<'a> {
        AppliedPolicy {
            stamp: SlaStamp {
                policy_id: Uuid::nil(),
                revision: 1,
            },
            targets,
            schedule,
        }
    }

    fn calendar_targets() -> [SlaTarget; 3] {
        [
            target(SlaMetric::FirstReply, 60, false),
            target(SlaMetric::NextReply, 30, false),
            target(SlaMetric::Resolution, 120, false),
        ]
    }

    fn status(clock: &mut SlaClock, from: TicketStatus, to: TicketStatus, minute: i64) {
        clock
            .record(SlaEvent::StatusChanged { from, to }, t(minute), None)
            .unwrap();
    }

    #[test]
    fn a_new_ticket_owes_its_first_reply_and_resolution_and_waits_for_a_requester_reply() {
        let targets = calendar_targets();
        let clock =
            SlaClock::started(Some(&policy(&targets, None)), TicketStatus::New, t(0)).unwrap();
        let due = |metric| clock.clock(metric).and_then(MetricClock::due_at);
        assert_eq!(due(SlaMetric::FirstReply), Some(t(60)));
        assert_eq!(due(SlaMetric::Resolution), Some(t(120)));
        assert_eq!(clock.clock(SlaMetric::NextReply).map(|c| c.cycle), Some(0));
        assert_eq!(due(SlaMetric::NextReply), None);
        assert_eq!(clock.next_due_at(), Some(t(60)));
        assert_eq!(
            SlaClock::started(None, TicketStatus::New, t(0)).unwrap(),
            SlaClock::default()
        );
    }

    #[test]
    fn a_reply_in_time_is_met_and_a_late_one_is_met_and_breached_at_its_due_time() {
        let targets = calendar_targets();
        let applied = policy(&targets, None);
        let mut in_time = SlaClock::started(Some(&applied), TicketStatus::New, t(0)).unwrap();
        in_time.record(SlaEvent::AgentReply, t(30), None).unwrap();
        let first = in_time.clock(SlaMetric::FirstReply).unwrap();
        assert!(matches!(first.state, ClockState::Met { at, .. } if at == t(30)));
        assert_eq!(first.breached_as_of(t(500)), None);

        let mut late = SlaClock::started(Some(&applied), TicketStatus::New, t(0)).unwrap();
        assert_eq!(
            late.clock(SlaMetric::FirstReply)
                .unwrap()
                .breached_as_of(t(61)),
            Some(t(60)),
            "overdue before anyone writes"
        );
        late.record(SlaEvent::AgentReply, t(90), None).unwrap();
        assert_eq!(
            late.clock(SlaMetric::FirstReply).unwrap().breached_at,
            Some(t(60))
        );
        assert_eq!(late.next_due_at(), Some(t(120)), "resolution still runs");
    }

    #[test]
    fn resolution_pauses_while_the_ticket_waits_and_resumes_where_it_stopped() {
        let targets = calendar_targets();
        let mut clock =
            SlaClock::started(Some(&policy(&targets, None)), TicketStatus::New, t(0)).unwrap();
        status(&mut clock, TicketStatus::New, TicketStatus::Pending, 30);
        let resolution = |clock: &SlaClock| *clock.clock(SlaMetric::Resolution).unwrap();
        assert_eq!(
            resolution(&clock).state,
            ClockState::Paused {
                elapsed: TimeDelta::minutes(30)
            }
        );
        status(&mut clock, TicketStatus::Pending, TicketStatus::OnHold, 50);
        status(&mut clock, TicketStatus::OnHold, TicketStatus::Open, 90);
        assert_eq!(resolution(&clock).due_at(), Some(t(180)));
        assert_eq!(
            clock.clock(SlaMetric::FirstReply).unwrap().due_at(),
            Some(t(60)),
            "a wait does not pause the reply"
        );

        status(&mut clock, TicketStatus::Open, TicketStatus::Solved, 100);
        assert_eq!(clock.next_due_at(), None, "solving meets every clock");
        status(&mut clock, TicketStatus::Solved, TicketStatus::Open, 300);
        assert_eq!(
            resolution(&clock).due_at(),
            Some(t(380)),
            "40 of its 120 minutes were spent"
        );
        assert!(matches!(
            clock.clock(SlaMetric::FirstReply).unwrap().state,
            ClockState::Met { .. }
        ));
    }

    #[test]
    fn next_reply_runs_one_cycle_per_requester_reply_after_the_first_answer() {
        let targets = calendar_targets();
        let applied = policy(&targets, None);
        let mut clock = SlaClock::started(Some(&applied), TicketStatus::New, t(0)).unwrap();
        let next = |clock: &SlaClock| *clock.clock(SlaMetric::NextReply).unwrap();
        assert_eq!(next(&clock).cycle, 0);

        let requester = SlaEvent::RequesterReply { answered: false };
        clock.record(requester, t(10), None).unwrap();
        assert_eq!(next(&clock).cycle, 0, "first reply still owed");
        clock.record(SlaEvent::AgentReply, t(20), None).unwrap();
        let requester = SlaEvent::RequesterReply { answered: true };
        clock.record(requester, t(40), None).unwrap();
        assert_eq!(
            (next(&clock).cycle, next(&clock).due_at()),
            (1, Some(t(70)))
        );
        clock.record(requester, t(50), None).unwrap();
        assert_eq!(next(&clock).due_at(), Some(t(70)), "the oldest reply waits");
        clock.record(SlaEvent::AgentReply, t(80), None).unwrap();
        assert_eq!(next(&clock).breached_at, Some(t(70)));
        clock.record(requester, t(100), None).unwrap();
        assert_eq!(
            (next(&clock).cycle, next(&clock).due_at()),
            (2, Some(t(130)))
        );
        assert_eq!(next(&clock).breached_at, None, "a new cycle, a new promise");
    }

    #[test]
    fn business_hours_targets_run_only_while_the_schedule_is_open() {
        let berlin = office_hours("Europe/Berlin", &[]);
        let targets = [
            target(SlaMetric::FirstReply, 60, true),
            target(SlaMetric::Resolution, 120, true),
        ];
        let applied = policy(&targets, Some(&berlin));
        // Friday 2026-10-23, 16:30 in Berlin.
        let created = at("Europe/Berlin", "2026-10-23 16:30");
        let mut clock = SlaClock::started(Some(&applied), TicketStatus::New, created).unwrap();
        assert_eq!(
            clock.clock(SlaMetric::FirstReply).unwrap().due_at(),
            Some(at("Europe/Berlin", "2026-10-26 09:30"))
        );
        // Pending from 16:45 Friday to Monday 10:00: 15 business minutes spent, 105 left.
        let pending = at("Europe/Berlin", "2026-10-23 16:45");
        let back = at("Europe/Berlin", "2026-10-26 10:00");
        let change = |from, to| SlaEvent::StatusChanged { from, to };
        clock
            .record(
                change(TicketStatus::New, TicketStatus::Pending),
                pending,
                Some(&berlin),
            )
            .unwrap();
        clock
            .record(
                change(TicketStatus::Pending, TicketStatus::Open),
                back,
                Some(&berlin),
            )
            .unwrap();
        assert_eq!(
            clock.clock(SlaMetric::Resolution).unwrap().due_at(),
            Some(at("Europe/Berlin", "2026-10-26 11:45"))
        );
        assert_eq!(
            SlaClock::started(Some(&policy(&targets, None)), TicketStatus::New, created),
            Err(SlaClockError::NoSchedule)
        );
    }

    #[test]
    fn a_new_policy_keeps_each_clocks_progress_and_starts_what_it_adds() {
        let before = [target(SlaMetric::Resolution, 120, false)];
        let mut clock =
            SlaClock::started(Some(&policy(&before, None)), TicketStatus::New, t(0)).unwrap();
        status(&mut clock, TicketStatus::New, TicketStatus::Pending, 30);
        status(&mut clock, TicketStatus::Pending, TicketStatus::Open, 60);
        let after = [
            target(SlaMetric::FirstReply, 15, false),
            target(SlaMetric::Resolution, 60, false),
        ];
        let mut revised = policy(&after, None);
        revised.stamp.revision = 2;
        clock
            .reapply(Some(&revised), TicketStatus::Open, false, t(70))
            .unwrap();
        assert_eq!(clock.stamp.map(|stamp| stamp.revision), Some(2));
        assert_eq!(
            clock.clock(SlaMetric::Resolution).unwrap().due_at(),
            Some(t(90)),
            "30 minutes spent before the wait: 30 of the new 60 left from minute 60"
        );
        assert_eq!(
            clock.clock(SlaMetric::FirstReply).unwrap().due_at(),
            Some(t(85))
        );

        let mut answered = clock.clone();
        answered
            .clocks
            .retain(|c| c.metric() != SlaMetric::FirstReply);
        answered
            .reapply(Some(&revised), TicketStatus::Open, true, t(70))
            .unwrap();
        assert_eq!(
            answered.clock(SlaMetric::FirstReply),
            None,
            "already answered"
        );

        clock
            .reapply(None, TicketStatus::Open, false, t(80))
            .unwrap();
        assert_eq!(clock, SlaClock::default());
    }

    fn any_wait() -> impl Strategy<Value = Vec<(bool, i64)>> {
        // (waits on a third party rather than the requester, minutes) alternating with open spans.
        prop::collection::vec((any::<bool>(), 1..500i64), 0..6)
    }

    proptest! {
        #[test]
        fn a_calendar_resolution_is_due_its_target_plus_every_wait_after_creation(
            waits in any_wait(),
            open_span in 1..50i64,
        ) {
            let targets = [target(SlaMetric::Resolution, 10_000, false)];
            let mut clock = SlaClock::started(
                Some(&policy(&targets, None)), TicketStatus::New, t(0),
            ).unwrap();
            let (mut now, mut waited, mut current) = (0, 0, TicketStatus::New);
            for (on_hold, minutes) in waits {
                now += open_span;
                let waiting = if on_hold { TicketStatus::OnHold } else { TicketStatus::Pending };
                status(&mut clock, current, waiting, now);
                now += minutes;
                waited += minutes;
                status(&mut clock, waiting, TicketStatus::Open, now);
                current = TicketStatus::Open;
            }
            prop_assert_eq!(
                clock.clock(SlaMetric::Resolution).unwrap().due_at(),
                Some(t(10_000 + waited))
            );
        }
    }
}
