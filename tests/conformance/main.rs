//! HTTP caching conformance, one module per RFC area, each test named after the
//! behaviour and citing its section. Expiry is driven by moving the edge's clock
//! (`TestEdge::advance`), never by sleeping.

#[path = "../common/mod.rs"]
mod common;

mod conditional;
mod freshness;
mod invalidation;
mod range;
mod requests;
mod revalidation;
mod stale;
mod targeted;
mod vary;
