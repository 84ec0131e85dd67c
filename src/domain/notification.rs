//! Email notifications as the domain sees them: what kind of event a message tells of, and the
//! data each kind carries from the change that caused it to the message sent later.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// What a notification tells its recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotificationKind {
    /// A ticket was created: the acknowledgement to its requester, with the ticket's reference.
    TicketCreated,
    /// Someone at the desk commented publicly on a ticket: the comment, to its requester
    /// (internal notes never leave the desk).
    CommentAdded,
    /// Someone at the desk marked a ticket solved: the notice to its requester.
    TicketSolved,
    /// Someone asked to reset a user's password: the single-use link, to the user.
    PasswordReset,
    /// An admin added a user: the single-use link to choose a password, to the new user.
    Invitation,
    /// A charge succeeded: the receipt, to the charged customer.
    ChargeReceipt,
    /// A refund succeeded: the notice, to the charged customer.
    RefundNotice,
    /// A webhook endpoint failed for the whole retry schedule and was disabled: the notice, to
    /// each of the account's admins.
    EndpointDisabled,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TicketCreated => "ticket_created",
            Self::CommentAdded => "comment_added",
            Self::TicketSolved => "ticket_solved",
            Self::PasswordReset => "password_reset",
            Self::Invitation => "invitation",
            Self::ChargeReceipt => "charge_receipt",
            Self::RefundNotice => "refund_notice",
            Self::EndpointDisabled => "endpoint_disabled",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "ticket_created" => Ok(Self::TicketCreated),
            "comment_added" => Ok(Self::CommentAdded),
            "ticket_solved" => Ok(Self::TicketSolved),
            "password_reset" => Ok(Self::PasswordReset),
            "invitation" => Ok(Self::Invitation),
            "charge_receipt" => Ok(Self::ChargeReceipt),
            "refund_notice" => Ok(Self::RefundNotice),
            "endpoint_disabled" => Ok(Self::EndpointDisabled),
            _ => Err(InvalidValue::new(
                "must be ticket_created, comment_added, ticket_solved, password_reset, \
                 invitation, charge_receipt, refund_notice or endpoint_disabled",
            )),
        }
    }
}

impl NotificationKind {
    /// Whether a recipient may turn this kind off (Get/UpdateNotificationSettings). Only the
    /// desk's public comments are optional; acknowledgements, solved notices and every message
    /// a user needs to use the desk (receipts, resets, invitations) are essential and always sent.
    pub fn is_optional(self) -> bool {
        match self {
            Self::CommentAdded => true,
            Self::TicketCreated
            | Self::TicketSolved
            | Self::PasswordReset
            | Self::Invitation
            | Self::ChargeReceipt
            | Self::RefundNotice
            | Self::EndpointDisabled => false,
        }
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a notification is in its delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotificationState {
    /// Waiting for a worker, being sent, or waiting to be retried.
    Received,
    /// Accepted by the email provider.
    Sent,
    /// Refused for good, or failed every attempt: waits for an admin.
    Dead,
    /// Not sent on purpose ([`SkipReason`]).
    Skipped,
}

impl NotificationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Sent => "sent",
            Self::Dead => "dead",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "received" => Ok(Self::Received),
            "sent" => Ok(Self::Sent),
            "dead" => Ok(Self::Dead),
            "skipped" => Ok(Self::Skipped),
            _ => Err(InvalidValue::new("must be received, sent, dead or skipped")),
        }
    }
}

impl fmt::Display for NotificationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a notification was not sent, on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The recipient's address is on the account's suppression list.
    Suppressed,
    /// The recipient turned this (optional) kind off.
    OptedOut,
    /// The password link it carries expired before it could be sent.
    LinkExpired,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suppressed => "suppressed",
            Self::OptedOut => "opted_out",
            Self::LinkExpired => "link_expired",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "suppressed" => Ok(Self::Suppressed),
            "opted_out" => Ok(Self::OptedOut),
            "link_expired" => Ok(Self::LinkExpired),
            _ => Err(InvalidValue::new(
                "must be suppressed, opted_out or link_expired",
            )),
        }
    }
}

/// Why an address is on an account's suppression list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SuppressionReason {
    /// The provider reported a permanent bounce.
    HardBounce,
    /// The recipient marked a message as spam.
    Complaint,
    /// The mail server refused the recipient for good (a 5xx answer).
    SmtpPermanentFailure,
}

impl SuppressionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HardBounce => "hard_bounce",
            Self::Complaint => "complaint",
            Self::SmtpPermanentFailure => "smtp_permanent_failure",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "hard_bounce" => Ok(Self::HardBounce),
            "complaint" => Ok(Self::Complaint),
            "smtp_permanent_failure" => Ok(Self::SmtpPermanentFailure),
            _ => Err(InvalidValue::new(
                "must be hard_bounce, complaint or smtp_permanent_failure",
            )),
        }
    }
}

/// What the acknowledgement of a new ticket says, as the ticket was when it was created (stored
/// with the notification: a later edit does not change a message already queued).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketCreatedData {
    /// The ticket's subject, as the requester wrote it (any text: escaped where it is shown).
    pub subject: String,
    /// The requester's display name; empty when the desk knows none.
    pub requester_name: String,
}

/// What the notice of a public comment says, as it was when the comment was added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentAddedData {
    /// The ticket's subject.
    pub subject: String,
    /// The comment, as written (any text: escaped where it is shown).
    pub body: String,
}

/// What the notice of a solved ticket says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketSolvedData {
    /// The ticket's subject.
    pub subject: String,
}

/// What a password-reset or invitation message carries: the seed its link's token is derived
/// from (never the token: that needs the server's key as well, so the outbox row alone cannot
/// set anyone's password), and for whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordLinkData {
    /// The random seed, URL-safe base64.
    pub seed: String,
    /// The account's slug: the link names it, as logging in does.
    pub account_slug: String,
    /// The user's display name; empty when none.
    pub display_name: String,
    /// When the link stops working (RFC 3339).
    pub expires_at: String,
}

/// What a receipt or refund notice says: amounts in minor units with their currency, formatted
/// with the currency's exponent when the message is rendered (never through a float).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentNoticeData {
    /// The charge's id.
    pub charge_id: String,
    /// The refund's id, for a refund notice.
    #[serde(default)]
    pub refund_id: Option<String>,
    /// The amount charged or refunded, in minor units.
    pub amount_minor: i64,
    /// ISO 4217, upper case.
    pub currency: String,
}

/// What the notice of a disabled webhook endpoint says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointDisabledData {
    /// The endpoint's id.
    pub endpoint_id: String,
    /// Where its deliveries failed.
    pub url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_reads_back_what_it_writes_and_nothing_else() {
        assert_eq!(
            NotificationKind::parse(NotificationKind::TicketCreated.as_str()),
            Ok(NotificationKind::TicketCreated)
        );
        assert_eq!(
            NotificationKind::parse(NotificationKind::CommentAdded.as_str()),
            Ok(NotificationKind::CommentAdded)
        );
        assert_eq!(
            NotificationKind::parse(NotificationKind::TicketSolved.as_str()),
            Ok(NotificationKind::TicketSolved)
        );
        for kind in [
            NotificationKind::PasswordReset,
            NotificationKind::Invitation,
            NotificationKind::ChargeReceipt,
            NotificationKind::RefundNotice,
        ] {
            assert_eq!(NotificationKind::parse(kind.as_str()), Ok(kind));
        }
        assert!(NotificationKind::parse("charge_succeeded").is_err());
    }

    #[test]
    fn only_comment_notices_are_optional() {
        assert!(NotificationKind::CommentAdded.is_optional());
        assert!(!NotificationKind::TicketCreated.is_optional());
        assert!(!NotificationKind::TicketSolved.is_optional());
    }

    #[test]
    fn states_and_reasons_read_back_what_they_write() {
        for state in [
            NotificationState::Received,
            NotificationState::Sent,
            NotificationState::Dead,
            NotificationState::Skipped,
        ] {
            assert_eq!(NotificationState::parse(state.as_str()), Ok(state));
        }
        for reason in [SkipReason::Suppressed, SkipReason::OptedOut] {
            assert_eq!(SkipReason::parse(reason.as_str()), Ok(reason));
        }
        for reason in [
            SuppressionReason::HardBounce,
            SuppressionReason::Complaint,
            SuppressionReason::SmtpPermanentFailure,
        ] {
            assert_eq!(SuppressionReason::parse(reason.as_str()), Ok(reason));
        }
        assert!(NotificationState::parse("lost").is_err());
    }
}
