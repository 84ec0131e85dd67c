//! Read masks (AIP-157) on tickets: which fields GetTicket, ListTickets and ExportTickets send.

use crate::domain::{InvalidValue, ReadMask, TICKET_FIELDS};
use crate::wire::proto::v1;

/// The read mask of a request (AIP-157): absent or empty, every field.
pub(super) fn read_mask(mask: Option<&prost_types::FieldMask>) -> Result<ReadMask, InvalidValue> {
    mask.map_or(Ok(ReadMask::ALL), |mask| {
        ReadMask::parse(&mask.paths, TICKET_FIELDS)
    })
}

/// `ticket` with the fields `mask` leaves out at their defaults (not sent on the wire, and
/// printed as empty over REST).
pub(super) fn masked(ticket: v1::Ticket, mask: &ReadMask) -> v1::Ticket {
    if *mask == ReadMask::ALL {
        return ticket;
    }
    fn pick<T: Default>(mask: &ReadMask, field: &str, value: T) -> T {
        if mask.includes(field) {
            value
        } else {
            T::default()
        }
    }
    let v1::Ticket {
        id,
        account_id,
        subject,
        description,
        priority,
        status,
        requester_id,
        requester_email,
        assignee_id,
        create_time,
        update_time,
        etag,
        tags,
        group_id,
        custom_fields,
    } = ticket;
    v1::Ticket {
        id: pick(mask, "id", id),
        account_id: pick(mask, "account_id", account_id),
        subject: pick(mask, "subject", subject),
        description: pick(mask, "description", description),
        priority: pick(mask, "priority", priority),
        status: pick(mask, "status", status),
        requester_id: pick(mask, "requester_id", requester_id),
        requester_email: pick(mask, "requester_email", requester_email),
        assignee_id: pick(mask, "assignee_id", assignee_id),
        create_time: pick(mask, "create_time", create_time),
        update_time: pick(mask, "update_time", update_time),
        etag: pick(mask, "etag", etag),
        tags: pick(mask, "tags", tags),
        group_id: pick(mask, "group_id", group_id),
        custom_fields: pick(mask, "custom_fields", custom_fields),
    }
}
