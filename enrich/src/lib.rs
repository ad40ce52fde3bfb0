//! Turns raw WAF, Falco and app log records into rows of the seclake event
//! schema, with GeoIP and an explainable threat score.
//!
//! [`parse::Enricher`] does the stateless work (parse, GeoIP, per-event rules)
//! and runs on every worker thread; [`scoring::WindowScorer`] adds the per-IP
//! window findings in input order, in one place, so scores are deterministic.

pub mod geoip;
pub mod parse;
pub mod schema;
pub mod scoring;
pub mod threat;
