//! Many instances behind one Envoy (docs/deployment.md, "Scaling out"): the retry rule Envoy
//! follows, generated from the method table and safe by construction (`retry_rule`); draining
//! that Envoy and clients can see (`draining`); and three real instances under a steady mixed
//! load through a rolling restart, the loss of an instance, a new instance joining and a
//! PostgreSQL outage (`under_load`), with the direct round-robin client beside Envoy.

pub(crate) mod draining;
pub(crate) mod retry_rule;
pub(crate) mod under_load;
