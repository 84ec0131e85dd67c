//! The operations behind the RPCs: business rules and transactions, in domain types. `api/`
//! calls these after converting the wire request; these call `db/` and never see tonic.

pub mod tickets;

pub use tickets::{TicketDesk, TicketPage};
