//! The operations behind the RPCs: permissions, business rules and transactions, in domain
//! types. `api/` calls these after converting the wire request, handing each the request's
//! scope (`&RequestScope`) or, for a write, its `&KeyedWrite`; these call `db/` and `auth/`
//! and never see tonic.

pub mod accounts;
pub mod api_keys;
pub mod attachments;
pub mod authentication;
pub mod billing;
pub mod custom_fields;
pub mod dashboard;
pub mod event_tail;
pub mod events;
pub mod groups;
pub mod notification_worker;
pub mod notifications;
pub mod operation_worker;
pub mod operations;
pub mod outbound_webhooks;
pub mod password_reset;
pub mod payment_events;
pub mod schedules;
pub mod sla_policies;
pub mod tickets;
pub mod users;
pub mod views;

pub use accounts::Accounts;
pub use api_keys::ApiKeys;
pub use attachments::{
    Attachments, DirectUpload, FilePieces, NewUpload, StartedUpload, SweepReport,
};
pub use authentication::{Authentication, IssuedTokens};
pub use billing::{
    Billing, Completed, CompleterPolicy, NewChargeRequest, ReconciliationPolicy,
    ReconciliationReport,
};
pub use custom_fields::{CustomFields, FieldUpdate, NewFieldRequest};
pub use dashboard::Dashboard;
pub use groups::{GroupUpdate, Groups};
pub use notification_worker::NotificationWorkers;
pub use notifications::{EmailEventReceipt, Notifications, SvixHeaders};
pub use operation_worker::{BATCH_MAX_FAILURES, CLAIMS_WITHOUT_PROGRESS_MAX, OperationWorkers};
pub use operations::Operations;
pub use outbound_webhooks::delivery::WebhookDeliveryWorkers;
pub use outbound_webhooks::endpoints::{
    EndpointUpdate, IssuedSecret, NewEndpointRequest, WebhookEndpointAdmin,
};
pub use password_reset::PasswordResets;
pub use payment_events::worker::PaymentEventWorkers;
pub use payment_events::{PaymentEvents, Receipt};
pub use schedules::{DryRunClock, DueTime, ScheduleUpdate, Schedules, name_schedule_problems};
pub use sla_policies::{SlaPolicies, SlaPolicyUpdate};
pub use tickets::{
    EXPORT_BATCH, Export, ExportBatch, ExportInterruption, ExportSettings, FeedPage, RawFieldEdit,
    SearchPage, TicketDesk, TicketEdits,
};
pub use users::{NewUserRequest, UserChanges, Users};
pub use views::{NewView, ViewUpdate, Views, run_filter};

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::domain::{PageCursor, PageSize};
use crate::errors::AppError;

/// One page of a newest-first list and where the next one starts (a [`PageCursor`], or a
/// [`crate::domain::TextPageCursor`] for items keyed by text).
#[derive(Debug)]
pub struct Page<T, C = PageCursor> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// How many rows to ask for: one more than the page, to know whether another page exists
/// without a count query.
fn rows_to_fetch(page_size: PageSize) -> i64 {
    i64::from(page_size.get()) + 1
}

/// The cursor of a list ordered by something other than time (a position): the offset of the
/// next page, carried as microseconds after the epoch, and the last item's id.
fn offset_cursor(offset: i64, last: uuid::Uuid) -> PageCursor {
    PageCursor::at(
        chrono::DateTime::<chrono::Utc>::UNIX_EPOCH + chrono::Duration::microseconds(offset),
        last,
    )
}

/// The offset an [`offset_cursor`] carries; 0 for the first page.
fn offset_of(after: Option<PageCursor>) -> i64 {
    after.map_or(0, |cursor| {
        (cursor.at - chrono::DateTime::<chrono::Utc>::UNIX_EPOCH)
            .num_microseconds()
            .unwrap_or(0)
            .max(0)
    })
}

/// Cuts `rows` (fetched with [`rows_to_fetch`]) to a page and notes where the next one starts.
fn paginate<T, C>(mut rows: Vec<T>, page_size: PageSize, position: impl Fn(&T) -> C) -> Page<T, C> {
    let size = usize::from(page_size.get());
    let has_more = rows.len() > size;
    rows.truncate(size);
    let next = match rows.last() {
        Some(last) if has_more => Some(position(last)),
        _ => None,
    };
    Page { items: rows, next }
}

/// Turns the unique violation of `constraint` into `conflict`; other errors map as usual.
fn on_unique_violation(error: DieselError, constraint: &str, conflict: AppError) -> AppError {
    if let DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = &error
        && info.constraint_name() == Some(constraint)
    {
        conflict
    } else {
        error.into()
    }
}
