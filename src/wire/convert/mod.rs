//! Domain ↔ wire: the `From` impls that turn domain types (and the read models
//! `db/models/mod.rs` lists) into the API's messages, and the `TryFrom` impls that turn a
//! request's enum numbers and values into domain types, one file per resource. They sit here,
//! beside the generated code, rather than in `api/`, because more than the handlers speak the
//! wire: the outbound webhook workers render every event's body ([`event::JsonEvents`]) from the
//! same messages the API answers with, so a webhook and a GetTicket show a ticket alike.

pub mod account;
pub mod api_key;
pub mod attachment;
pub mod charge;
pub mod custom_field;
pub mod event;
pub mod group;
pub mod notification;
pub mod operation;
pub mod payment_event;
pub mod schedule;
pub mod sla_policy;
pub mod ticket;
pub mod user;
pub mod view;
pub mod webhook_endpoint;

use crate::domain::{InvalidValue, Timestamp};

/// A chrono instant as a protobuf Timestamp.
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        // Always below 2e9: chrono keeps nanoseconds within the second.
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// An optional chrono instant as an optional protobuf Timestamp.
pub fn optional_timestamp(
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<prost_types::Timestamp> {
    at.map(timestamp)
}

/// An instant a request names, within what PostgreSQL stores.
impl TryFrom<prost_types::Timestamp> for Timestamp {
    type Error = InvalidValue;

    fn try_from(at: prost_types::Timestamp) -> Result<Self, Self::Error> {
        Timestamp::parse(at.seconds, at.nanos)
    }
}

/// An enum field whose zero value (`*_UNSPECIFIED`, which buf's lint makes every enum start
/// with) means "none" or "the default", as a filter or an optional setting reads it: `None` for
/// zero, the domain value's own `TryFrom<i32>` for any other number (which refuses a number
/// outside the enum with that type's message).
pub fn unless_unspecified<T>(value: i32) -> Result<Option<T>, InvalidValue>
where
    T: TryFrom<i32, Error = InvalidValue>,
{
    if value == 0 {
        Ok(None)
    } else {
        T::try_from(value).map(Some)
    }
}
