//! Ticket rules that are settings: the open-ticket limit, the ticket cache's lifetime and how
//! long an export may run, and how many may run at once.

use std::time::Duration;

use super::reader::Reader;

#[derive(Clone, Debug)]
pub struct TicketSettings {
    /// `MAX_OPEN_TICKETS_PER_REQUESTER`: how many tickets one requester may have open (not solved
    /// or closed) at once.
    pub max_open_per_requester: u32,
    /// `TICKET_CACHE_TTL_SECS`: how long GetTicket may serve a ticket from Redis.
    pub cache_ttl: Duration,
    /// `EXPORT_MAX_DURATION_SECS`: how long one ExportTickets stream may hold its database
    /// snapshot (and its pooled connection); an export still running then ends with
    /// DEADLINE_EXCEEDED.
    pub export_max_duration: Duration,
    /// `EXPORT_MAX_CONCURRENT_PER_ACCOUNT`: how many exports of one account may run at once on
    /// one instance; beyond, RESOURCE_EXHAUSTED `STREAM_LIMIT`.
    pub export_max_per_account: u32,
    /// `EXPORT_MAX_CONCURRENT_PER_INSTANCE`: how many exports may run at once on one instance
    /// (each holds a pooled connection for as long as it runs): well below the pool's size.
    pub export_max_per_instance: u32,
}

impl Reader<'_> {
    pub(super) fn tickets(&mut self) -> TicketSettings {
        let settings = TicketSettings {
            max_open_per_requester: self.parsed("MAX_OPEN_TICKETS_PER_REQUESTER", 10),
            cache_ttl: Duration::from_secs(self.parsed("TICKET_CACHE_TTL_SECS", 300)),
            export_max_duration: Duration::from_secs(self.parsed("EXPORT_MAX_DURATION_SECS", 600)),
            export_max_per_account: self.parsed("EXPORT_MAX_CONCURRENT_PER_ACCOUNT", 2),
            export_max_per_instance: self.parsed("EXPORT_MAX_CONCURRENT_PER_INSTANCE", 3),
        };
        self.positive(
            "EXPORT_MAX_CONCURRENT_PER_ACCOUNT",
            settings.export_max_per_account,
        );
        self.positive(
            "EXPORT_MAX_CONCURRENT_PER_INSTANCE",
            settings.export_max_per_instance,
        );
        self.positive_duration("EXPORT_MAX_DURATION_SECS", settings.export_max_duration);
        self.positive_duration("TICKET_CACHE_TTL_SECS", settings.cache_ttl);
        self.positive(
            "MAX_OPEN_TICKETS_PER_REQUESTER",
            settings.max_open_per_requester,
        );
        settings
    }
}
