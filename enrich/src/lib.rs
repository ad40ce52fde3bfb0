//! Turns raw WAF, Falco and app log records into rows of the seclake event
//! schema, with GeoIP and an explainable threat score.
//!
//! [`enrichment::Enricher`] (also at `parse::Enricher`) does the stateless
//! work and runs on every worker thread: [`parse`] reads each format into a
//! row and threat signals, [`time_window`] keeps out events with unbelievable
//! times, and [`enrichment`] adds the id, GeoIP and per-event rules.
//! [`scoring::WindowScorer`] adds the per-IP window findings in input order,
//! in one place, so scores are deterministic.

pub mod enrichment;
pub mod geoip;
pub mod parse;
pub mod schema;
pub mod scoring;
pub mod threat;
pub mod time_window;
