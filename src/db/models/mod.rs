//! One file per table, one convention (crates.io's `models/keyword.rs`): **the row type holds
//! its queries.** Each table's file has its row type, `<Table>Row` (`TicketRow`, `UserRow`,
//! `WebhookDeliveryRow`, ...), whose associated async functions taking a
//! `&mut AsyncPgConnection` are the table's queries (`TicketRow::find`, `UserRow::find_in_account`),
//! beside the row as inserted (`NewTicket<'a>`) and, where a statement updates several columns,
//! its changeset (`TicketChangeset`). No empty struct serves as a namespace: a table whose rows
//! the service never reads back still has its row type (`RevokedSessionRow`). A few tables keep
//! statements shared with others as free functions of their file, named for what they share
//! (`send_lease::claim` for `charges` and `refunds`, `db::queue` for the two durable queues).
//!
//! Rows convert into `domain` types here (`into_domain`, a stored value that does not parse being
//! [`corrupt`]), and the service hands domain types up. The one exception is the **read models**,
//! `Stored*` and the dashboard's rows, which `api/` may name and `wire/convert/` converts:
//! read-only views of a row for the listing and admin RPCs whose message mirrors the row field
//! for field, where a domain type
//! would be a copy of the row under another name. Each has its enums already parsed here, carries
//! no secret column and is never written back. They are exactly: `StoredNotification`,
//! `StoredSuppression`, `NotificationSettings` and its `NotificationSettingsChanges`
//! (NotificationService), `StoredWebhookEvent`
//! (WebhookService), `StoredCharge` and `StoredFinding` with the filter `ChargeListFilter`
//! (BillingService), `StoredEvent` and its `EventData` (EventService and the webhooks we send),
//! `ActivityFeedRow` and `ResponseTimes` (DashboardService). Any other row stays below
//! `service/`; a new read model that `api/` needs is added to this list and to
//! docs/architecture.md (`cross_cutting::imports` reads this list, and fails on any other row that
//! `api/` or `wire/` names).

pub mod account;
pub mod account_tag;
pub mod activity;
pub mod api_key;
pub mod attachment;
pub mod charge;
pub mod charge_activity;
pub mod charge_dispute;
pub mod comment;
pub mod custom_field;
pub mod email_event;
pub mod email_suppression;
pub mod event;
pub mod group;
pub mod idempotency;
pub mod notification;
pub mod notification_settings;
pub mod operation;
pub mod password_token;
pub mod recent_activity;
pub mod reconciliation_finding;
pub mod reconciliation_run;
pub mod refund;
pub mod requester_open_tickets;
pub mod revenue_daily;
pub mod revoked_session;
pub mod schedule;
pub mod send_lease;
pub mod sla_policy;
pub mod ticket;
pub mod ticket_counts_daily;
pub mod ticket_counts_open;
pub mod ticket_filter;
pub mod ticket_response_histogram;
pub mod user;
pub mod view;
pub mod webhook_delivery;
pub mod webhook_endpoint;
pub mod webhook_endpoint_secret;
pub mod webhook_event;
pub mod webhook_event_quarantine;

pub use account::{AccountRow, NewAccount};
pub use account_tag::AccountTagRow;
pub use activity::{ActivityRow, NewActivity};
pub use api_key::{ApiKeyRow, NewApiKey};
pub use attachment::{AttachmentRow, NewAttachment, StorageDeletionRow, Viewer};
pub use charge::{Attention, ChargeListFilter, ChargeRow, NewCharge, StoredCharge};
pub use charge_activity::NewChargeActivity;
pub use charge_dispute::NewChargeDispute;
pub use comment::{CommentRow, NewComment};
pub use custom_field::{CustomFieldChangeset, CustomFieldRow, NewCustomField};
pub use email_suppression::{StoredSuppression, SuppressionRow};
pub use group::{GroupMemberRow, GroupRow};
pub use idempotency::{IdempotencyOutcome, IdempotencyRow, NewIdempotencyKey};
pub use notification::{NewNotification, NotificationRow, StoredNotification};
pub use operation::{BatchProgress, ClaimedOperation, NewOperation, OperationRow};
pub use password_token::{NewPasswordToken, PasswordTokenRow};
pub use recent_activity::ActivityFeedRow;
pub use reconciliation_finding::{
    NewReconciliationFinding, ReconciliationFindingRow, StoredFinding,
};
pub use reconciliation_run::{NewReconciliationRun, ReconciliationRunRow, RunCounts};
pub use refund::{NewRefund, RefundRow, StoredRefund};
pub use requester_open_tickets::RequesterOpenTicketsRow;
pub use revenue_daily::RevenueDay;
pub use revoked_session::RevokedSessionRow;
pub use schedule::ScheduleRow;
pub use sla_policy::SlaPolicyRow;
pub use ticket::{
    FirstPageBound, ImportedTickets, NewTicket, TicketChangeset, TicketListQuery, TicketRow,
};
pub use ticket_counts_daily::TicketDay;
pub use ticket_counts_open::OpenTicketCount;
pub use ticket_response_histogram::ResponseTimes;
pub use user::{NewUser, UserChangeset, UserRow};
pub use view::{ViewFields, ViewRow, ViewViewer};
pub use webhook_event::{Stored, StoredWebhookEvent, WebhookEventRow};
pub use webhook_event_quarantine::{NewWebhookEventQuarantine, QuarantinedEvent};

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::domain::InvalidValue;
use crate::errors::{AppError, AppResult};

/// Bytes a JSON snapshot carries as hex (`encode(column, 'hex')`).
fn hex_bytes<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(deserializer)?;
    hex::decode(text.as_ref()).map_err(serde::de::Error::custom)
}

/// A stored value that no longer parses is a bug or a hand-edited row, never the client's fault.
pub(crate) fn corrupt(column: &str, problem: InvalidValue) -> AppError {
    AppError::internal(anyhow::anyhow!("stored {column} does not parse: {problem}"))
}

/// Serializes, until the transaction ends, the creations of one account's rows of the kind
/// `class` names (one number per table: groups 68, schedules 69, SLA policies 692, views 45), so
/// that the count a per-account limit reads is not stale by the time the new row commits. An
/// advisory lock rather than a row lock: nothing else about the account is held.
pub(crate) async fn serialize_account_creations(
    conn: &mut AsyncPgConnection,
    account_id: Uuid,
    class: i64,
) -> AppResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, $2))")
        .bind::<diesel::sql_types::Uuid, _>(account_id)
        .bind::<diesel::sql_types::BigInt, _>(class)
        .execute(conn)
        .await?;
    Ok(())
}
