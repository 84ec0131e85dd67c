//! Many instances behind one Envoy (docs/deployment.md, "Scaling out"): the retry rule Envoy
//! follows, generated from the method table and safe by construction (`retry_rule`); draining
//! that Envoy and clients can see (`draining`); and three real instances under a steady mixed
//! load through a rolling restart, the loss of an instance, a new instance joining and a
//! PostgreSQL outage (`under_load`), with the direct round-robin client beside Envoy; in its
//! chaos run, an import held by an instance told to stop (`held_work`) and a subscriber of the
//! account's events (`subscriber`).

pub(crate) mod draining;
pub(crate) mod held_work;
pub(crate) mod retry_rule;
pub(crate) mod subscriber;
pub(crate) mod under_load;
