//! Suites that walk every RPC or the whole source: the contract, the declared field rules, tenancy, declarations, round trips, bad input, imports, error reasons, the middleware order as the docs repeat it, the request scope's rule, and the checklists of docs/architecture.md.

pub(crate) mod bad_input;
pub(crate) mod checklists;
pub(crate) mod contract;
pub(crate) mod declarations;
pub(crate) mod declared_rules;
pub(crate) mod error_reasons;
pub(crate) mod imports;
pub(crate) mod middleware_order;
pub(crate) mod request_scope;
pub(crate) mod round_trips;
pub(crate) mod rpcs;
pub(crate) mod tenancy;
