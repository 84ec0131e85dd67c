//! The lifecycle of a ticket: which statuses are open, which wait, which action is allowed from
//! which status and where it leads. [`super::Ticket::apply`] decides a change with these rules.

use super::TicketStatus;
use super::comment::TicketAction;

/// The lifecycle: which action is allowed in which status, and where it leads.
impl TicketStatus {
    /// Unresolved: solved and closed tickets do not count against the open-ticket limit, nor
    /// among the dashboard's open tickets.
    pub fn is_open(&self) -> bool {
        matches!(self, Self::New | Self::Open | Self::Pending | Self::OnHold)
    }

    /// Waiting on someone other than the desk: the requester (pending) or a third party (on
    /// hold). The requester's reply ends the wait.
    pub fn is_waiting(&self) -> bool {
        matches!(self, Self::Pending | Self::OnHold)
    }

    /// Closed is final: nothing changes a closed ticket any more.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Closed)
    }

    /// The status after an assignment: a new ticket someone takes on is open.
    pub fn after_assignment(&self) -> Self {
        match self {
            Self::New => Self::Open,
            other @ (Self::Open | Self::Pending | Self::OnHold | Self::Solved | Self::Closed) => {
                *other
            }
        }
    }
}

/// A state-changing action on a ticket, with the statuses it starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketTransition {
    /// Waiting for the requester.
    MarkPending,
    /// Waiting for a third party.
    Hold,
    Resolve,
    Reopen,
    Close,
}

impl TicketTransition {
    /// The statuses the action is allowed in.
    pub fn allowed_from(&self) -> &'static [TicketStatus] {
        match self {
            Self::MarkPending => &[TicketStatus::New, TicketStatus::Open, TicketStatus::OnHold],
            Self::Hold => &[TicketStatus::New, TicketStatus::Open, TicketStatus::Pending],
            Self::Resolve => &[
                TicketStatus::New,
                TicketStatus::Open,
                TicketStatus::Pending,
                TicketStatus::OnHold,
            ],
            // Reopening a waiting ticket ends the wait without a reply.
            Self::Reopen => &[
                TicketStatus::Pending,
                TicketStatus::OnHold,
                TicketStatus::Solved,
            ],
            Self::Close => &[TicketStatus::Solved],
        }
    }

    pub fn target(&self) -> TicketStatus {
        match self {
            Self::MarkPending => TicketStatus::Pending,
            Self::Hold => TicketStatus::OnHold,
            Self::Resolve => TicketStatus::Solved,
            Self::Reopen => TicketStatus::Open,
            Self::Close => TicketStatus::Closed,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::MarkPending => "mark pending",
            Self::Hold => "put on hold",
            Self::Resolve => "resolve",
            Self::Reopen => "reopen",
            Self::Close => "close",
        }
    }

    /// How the audit trail names it.
    pub fn action(&self) -> TicketAction {
        match self {
            Self::MarkPending => TicketAction::MarkedPending,
            Self::Hold => TicketAction::PutOnHold,
            Self::Resolve => TicketAction::Resolved,
            Self::Reopen => TicketAction::Reopened,
            Self::Close => TicketAction::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ticket::tests::ticket;
    use crate::domain::{FieldChange, TicketChange};

    #[test]
    fn reopening_a_waiting_ticket_does_not_count_against_the_limit() {
        for waiting in [TicketStatus::Pending, TicketStatus::OnHold] {
            let reopened = ticket(waiting, None)
                .apply(&TicketChange::Transition(TicketTransition::Reopen))
                .unwrap();
            assert_eq!(reopened.after.status, TicketStatus::Open);
            assert!(!reopened.reopens, "{waiting} was counted as reopened");
        }
    }

    fn comment(public: bool, by_requester: bool) -> TicketChange {
        TicketChange::Comment {
            comment_id: "c".to_owned(),
            public,
            by_requester,
        }
    }

    #[test]
    fn the_requesters_public_reply_ends_the_wait_and_records_the_status() {
        for waiting in [TicketStatus::Pending, TicketStatus::OnHold] {
            let decision = ticket(waiting, None).apply(&comment(true, true)).unwrap();
            assert_eq!(decision.after.status, TicketStatus::Open);
            assert_eq!(decision.action, TicketAction::Commented);
            assert_eq!(
                decision.changes.get("status"),
                Some(&FieldChange {
                    old: Some(waiting.as_str().to_owned()),
                    new: Some("open".to_owned())
                })
            );
            assert!(!decision.reopens);
        }
    }

    #[test]
    fn only_the_requesters_public_reply_on_a_waiting_ticket_moves_its_status() {
        let cases = [
            (TicketStatus::Pending, comment(false, true)),
            (TicketStatus::Pending, comment(true, false)),
            (TicketStatus::OnHold, comment(true, false)),
            (TicketStatus::New, comment(true, true)),
            (TicketStatus::Open, comment(true, true)),
            (TicketStatus::Solved, comment(true, true)),
        ];
        for (status, change) in cases {
            let decision = ticket(status, None).apply(&change).unwrap();
            assert_eq!(decision.after.status, status, "{change:?} on {status}");
            assert_eq!(decision.changes.get("status"), None);
        }
    }

    #[test]
    fn on_hold_counts_as_open_and_both_waits_switch_into_each_other() {
        assert!(TicketStatus::OnHold.is_open());
        assert_eq!(
            TicketStatus::parse("on_hold").unwrap(),
            TicketStatus::OnHold
        );
        let held = ticket(TicketStatus::Pending, None)
            .apply(&TicketChange::Transition(TicketTransition::Hold))
            .unwrap();
        assert_eq!(held.after.status, TicketStatus::OnHold);
        assert_eq!(held.action, TicketAction::PutOnHold);
        let pending = held
            .after
            .apply(&TicketChange::Transition(TicketTransition::MarkPending))
            .unwrap();
        assert_eq!(pending.after.status, TicketStatus::Pending);
        assert_eq!(pending.action, TicketAction::MarkedPending);
    }
}
