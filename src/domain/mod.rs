//! Domain types: values that can only exist in a valid state. Each has one constructor, `parse`,
//! that takes raw input and either returns the value or says what is wrong with it. Nothing here
//! knows of tonic or diesel; `api/` converts wire types into these at the edge.

mod attachment;
mod charge;
mod comment;
pub mod custom_field;
mod dashboard;
mod email;
mod email_webhook;
pub mod filter;
mod group;
mod html;
mod idempotency_key;
mod identity;
mod ids;
mod money;
mod notification;
// A module of its own, not re-exported: its `render` and `single_line` name what they do to a
// notification, and would read as something else among the domain types.
pub mod notification_message;
mod operation;
mod outbound_webhook;
mod pagination;
mod password_token;
mod payment_event;
mod payment_event_signature;
mod rate_quota;
mod reconciliation;
mod schedule;
mod sla_clock;
mod sla_policy;
mod tag;
mod ticket;
mod ticket_export;
mod ticket_filter_expr;
mod ticket_import;
mod ticket_lifecycle;
mod ticket_match;
mod ticket_query;
mod timestamp;
mod view;

pub use attachment::{
    Attachment, AttachmentContentType, AttachmentState, Filename, Sha256Digest, UploadDifference,
    sniff_matches,
};
pub use charge::{
    Charge, ChargeDecision, ChargeEvent, ChargeStatus, ChargeViolation, FailureKind, RefundStatus,
};
pub use comment::{
    Actor, Comment, CommentBody, FieldChange, FieldChanges, Opening, TicketAction, TicketActivity,
};
pub use custom_field::{
    Catalogue, CustomField, FieldKey, FieldKind, FieldValue, KindProblem, RawValue, StoredValues,
    ValueProblems,
};
pub use dashboard::{DateRange, RangeProblem, RevenueInterval};
pub use email::{Email, idna_form};
pub use email_webhook::{EmailEvent, EmailEventEffect, SvixVerifier, svix_signature};
pub use group::{
    Group, GroupDescription, GroupMember, GroupName, MAX_GROUPS_PER_ACCOUNT, optional_uuid,
};
pub use html::{html_entity, html_escape, push_html_escaped};
pub use idempotency_key::IdempotencyKey;
pub use identity::{
    Account, AccountName, AccountSlug, ApiKey, ApiKeyName, DisplayName, Password, Role, User,
    UserLogin,
};
pub use ids::{
    AccountId, ApiKeyId, AttachmentId, ChargeId, CommentId, OperationId, RefundId, SessionId,
    TicketId, UserId, hyphenated_uuid,
};
pub use money::{Currency, Money, MoneyArithmeticError};
pub use notification::{
    CommentAddedData, EndpointDisabledData, NotificationKind, NotificationState, PasswordLinkData,
    PaymentNoticeData, SkipReason, SuppressionReason, TicketCreatedData, TicketSolvedData,
};
pub use operation::{
    OPERATION_NAME_PREFIX, Operation, OperationFailure, OperationFilter, OperationKind,
    OperationState, RowError,
};
pub use outbound_webhook::{
    AddressPolicy, AddressRefusal, DeliveryAttempt, DeliveryState, DisabledReason, EndpointState,
    EndpointUrl, EventCursor, EventResource, EventType, RetrySchedule, SIGNING_SECRET_PREFIX,
    SchemePolicy, SigningSecret, WebhookDelivery, WebhookEndpoint, event_public_id,
    parse_event_public_id, parse_event_types, webhook_signature_header,
};
pub use pagination::{
    CountedPageCursor, ListSnapshot, PageCursor, PageScope, PageSize, PageTokenKeys, TextPageCursor,
};
pub use password_token::{PasswordToken, PasswordTokenKey, PasswordTokenSeed};
pub use payment_event::{
    DisputeOpened, HANDLED_EVENT_TYPES, PaymentEvent, ProviderEvent, QuarantineReason,
    WebhookEventId, WebhookEventState,
};
pub use payment_event_signature::{
    SignatureHeader, SignatureRefusal, SignatureVerifier, signature_header,
};
pub use rate_quota::RateQuota;
pub use reconciliation::FindingKind;
pub use schedule::{
    BusinessInterval, Clock, DUE_TIME_HORIZON_DAYS, Holiday, HolidayField, IntervalField,
    MAX_HOLIDAY_DAYS, MAX_HOLIDAYS, MAX_INTERVALS, MAX_MEASURED_SPAN_DAYS,
    MAX_SCHEDULES_PER_ACCOUNT, RawHoliday, RawInterval, Schedule, ScheduleError, ScheduleField,
    ScheduleName, ScheduleProblem, StoredSchedule, WallTime,
};
pub use sla_clock::{
    AppliedPolicy, ClockState, MetricClock, SlaClock, SlaClockError, SlaEvent, SlaStamp,
};
pub use sla_policy::{
    MAX_SLA_POLICIES_PER_ACCOUNT, MAX_TARGETS, SlaCondition, SlaMetric, SlaPolicy,
    SlaPolicyDescription, SlaPolicyFields, SlaPolicyName, SlaTarget, SlaTargets, TargetProblem,
    policy_position, warning_minutes,
};
pub use tag::{MAX_TAG_CHARS, MAX_TAGS_PER_TICKET, Tag, TagCount, TagPrefix, TagSet};
pub use ticket::{
    CustomFieldEdit, Etag, NewTicketRequest, RuleViolation, Ticket, TicketChange, TicketDecision,
    TicketDescription, TicketPriority, TicketStatus, TicketSubject,
};
pub use ticket_export::{
    ChangeCursor, FeedEntry, MATCH_END, MATCH_START, MAX_MATCHES_RANKED, ReadMask, SearchCursor,
    SearchHit, SearchOrder, SearchText, TICKET_FIELDS, TicketSearch, marked_snippet,
};
pub use ticket_filter_expr::{
    Condition, CustomFieldCatalogue, FILTER_FIELDS, FilterContext, Moment, NoCustomFields, Test,
    TicketFilterExpr, TimeComparator, TimeField,
};
pub use ticket_import::{
    FieldCell, IMPORT_COLUMNS, ImportFile, ImportFormat, ImportRow, ImportTicket, RowCells,
    read_rows,
};
pub use ticket_lifecycle::TicketTransition;
pub use ticket_query::{TicketFilter, TicketOrder, TicketOrderField, TotalSize};
pub use timestamp::Timestamp;
pub use view::{
    MAX_PERSONAL_VIEWS_PER_USER, MAX_SHARED_VIEWS_PER_ACCOUNT, MAX_VIEWS_COUNTED, VIEW_COUNT_CAP,
    View, ViewCount, ViewFilter, ViewName, ViewOrder, ViewReadMask, ViewScope,
};

use std::fmt;

/// Why a raw value was refused, in words a client can act on (the field is named by the caller,
/// which knows where the value came from).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidValue(String);

impl InvalidValue {
    pub fn new(description: impl Into<String>) -> Self {
        Self(description.into())
    }

    pub fn description(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidValue {}

/// The most items any list of a request may hold (every `repeated` request field declares it as
/// `(buf.validate.field).repeated.max_items`). A bound far above what any filter or role list
/// needs, and low enough that naming each refused item keeps an error small.
pub const MAX_LIST_ITEMS: usize = 32;

/// Refuses a list of more than [`MAX_LIST_ITEMS`] `what` (`"statuses"`): its items are then not
/// looked at, so a list of 10,000 refused values costs one violation, not 10,000.
pub fn within_list_bound<T>(items: &[T], what: &str) -> Result<(), InvalidValue> {
    if items.len() > MAX_LIST_ITEMS {
        return Err(InvalidValue::new(format!(
            "must name at most {MAX_LIST_ITEMS} {what} (got {})",
            items.len()
        )));
    }
    Ok(())
}

/// What [`bounded_text`] judges text by.
#[derive(Debug, PartialEq, Eq)]
struct TextScan {
    /// In characters.
    length: usize,
    /// A control character other than a line break or tab.
    control: bool,
    bidi: bool,
    visible: bool,
}

impl TextScan {
    fn of(text: &str) -> Self {
        if text.is_ascii() {
            Self::of_ascii(text.as_bytes())
        } else {
            Self::of_chars(text)
        }
    }

    fn of_chars(text: &str) -> Self {
        Self {
            length: text.chars().count(),
            control: text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t'),
            bidi: text.chars().any(is_bidi_control),
            visible: text
                .chars()
                .any(|c| !c.is_whitespace() && !is_default_ignorable(c)),
        }
    }

    /// The same judgement by bytes, for the usual all-ASCII text: ASCII has no bidirectional
    /// controls and no default-ignorable characters.
    fn of_ascii(text: &[u8]) -> Self {
        Self {
            length: text.len(),
            control: text
                .iter()
                .any(|b| b.is_ascii_control() && !matches!(b, b'\n' | b'\r' | b'\t')),
            bidi: false,
            visible: text.iter().any(|b| !char::from(*b).is_whitespace()),
        }
    }
}

/// Checks that `raw` has at most `max` characters (not bytes) as sent, and, trimmed, at least
/// `min`, no control characters (but line breaks and tabs), no bidirectional controls, and some
/// visible character; answers it trimmed. The maximum counts what was sent, whitespace around it
/// included, so that it is the `max_len` the proto declares (buf.validate counts the raw value).
/// Every ticket read is parsed again: ASCII text is judged by bytes.
fn bounded_text(raw: &str, min: usize, max: usize) -> Result<String, InvalidValue> {
    let sent = if raw.is_ascii() {
        raw.len()
    } else {
        raw.chars().count()
    };
    if sent > max {
        return Err(InvalidValue::new(format!(
            "must be at most {max} characters (got {sent})"
        )));
    }
    let trimmed = raw.trim();
    let TextScan {
        length,
        control,
        bidi,
        visible,
    } = TextScan::of(trimmed);
    if length < min {
        return Err(if min == 1 {
            InvalidValue::new("must not be empty")
        } else {
            InvalidValue::new(format!("must be at least {min} characters"))
        });
    }
    if control {
        return Err(InvalidValue::new("must not contain control characters"));
    }
    if bidi {
        return Err(InvalidValue::new(
            "must not contain bidirectional override, embedding or isolate characters (U+202A to U+202E, U+2066 to U+2069)",
        ));
    }
    if !visible {
        return Err(InvalidValue::new(
            "must contain visible characters, not only invisible ones such as zero-width spaces",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Text that must stay on one line: no line feed or carriage return, and none of Unicode's
/// other line breaks (U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR), which renderers and
/// JavaScript treat as line ends too.
fn single_line(text: String) -> Result<String, InvalidValue> {
    if text.contains(['\n', '\r', '\u{2028}', '\u{2029}']) {
        return Err(InvalidValue::new("must be a single line"));
    }
    Ok(text)
}

/// Characters that reorder the text around them when displayed, so what a reader sees is not
/// what was stored ("Trojan Source", CVE-2021-42574). The implicit marks (U+200E, U+200F, U+061C)
/// only nudge neutral characters and are fine in right-to-left text.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Unicode's Default_Ignorable_Code_Point: characters with no visible glyph of their own (zero
/// width spaces and joiners, variation selectors, fillers, tags). Inside visible text they do
/// work (joining an emoji sequence, shaping Persian); alone they make a value that looks empty.
fn is_default_ignorable(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_of_only_invisible_characters_is_refused() {
        for raw in [
            "\u{200B}",
            "\u{200B}\u{200D}\u{FEFF}",
            " \u{2060} ",
            "\u{E0041}",
        ] {
            assert!(bounded_text(raw, 1, 10).is_err(), "{raw:?} accepted");
        }
    }

    #[test]
    fn bidirectional_overrides_and_isolates_are_refused_anywhere() {
        for c in ['\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}'] {
            assert!(bounded_text(&format!("a{c}b"), 1, 10).is_err(), "{c:?}");
        }
        for c in ['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'] {
            assert!(bounded_text(&format!("a{c}b"), 1, 10).is_err(), "{c:?}");
        }
        // The implicit right-to-left mark is ordinary in Hebrew and Arabic text.
        assert!(bounded_text("שלום\u{200F}!", 1, 10).is_ok());
    }

    #[test]
    fn unicode_line_breaks_end_a_single_line() {
        for raw in ["a\u{2028}b", "a\u{2029}b", "a\nb", "a\rb"] {
            assert!(single_line(raw.to_owned()).is_err(), "{raw:?} accepted");
        }
        assert!(single_line("one line".to_owned()).is_ok());
    }

    #[test]
    fn ascii_text_is_judged_by_bytes_as_by_characters() {
        let every_byte: Vec<String> = (0_u8..128).map(|b| char::from(b).to_string()).collect();
        let texts = [
            "plain",
            "tab\there",
            "line\r\nbreak",
            "bell\u{7}",
            "\u{b}\u{c}",
            "   ",
        ];
        for text in every_byte.iter().map(String::as_str).chain(texts) {
            assert_eq!(
                TextScan::of_ascii(text.as_bytes()),
                TextScan::of_chars(text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn joiners_inside_visible_text_are_kept() {
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}";
        assert_eq!(bounded_text(family, 1, 10).unwrap(), family);
    }
}
