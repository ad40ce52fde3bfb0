//! Golden files: the committed samples in `fixtures/samples/` parse, enrich and
//! score to exactly `fixtures/golden/<format>.json`.
//!
//! After an intended change, regenerate with
//! `UPDATE_GOLDEN=1 cargo test --test golden` and review the diff.

use std::path::PathBuf;
use std::sync::Arc;

use seclake_enrich::geoip::{GeoIp, GeoIpConfig, PathList};
use seclake_enrich::parse::Enricher;
use seclake_enrich::schema::Event;
use seclake_enrich::scoring::WindowScorer;
use seclake_enrich::threat::ThreatEngine;
use seclake_enrich::time_window::TimeWindow;
use seclake_ingest::Format;
use serde::Serialize;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Serialize)]
struct Golden {
    events: Vec<Event>,
    dead_letters: Vec<(usize, String)>,
}

fn run_sample(format: Format) -> Golden {
    let geo_dir = root().join("fixtures/geoip");
    let geo = GeoIp::open(&GeoIpConfig {
        city: Some(PathList(vec![geo_dir.join("GeoLite2-City-Test.mmdb")])),
        asn: Some(PathList(vec![geo_dir.join("GeoLite2-ASN-Test.mmdb")])),
        ..GeoIpConfig::default()
    })
    .expect("test databases open")
    .map(Arc::new);
    let engine = Arc::new(ThreatEngine::defaults());
    // The samples keep their own times, ingested at 0.
    let mut enricher = Enricher::new(geo.as_ref(), Arc::clone(&engine), TimeWindow::UNBOUNDED);
    let mut scorer = WindowScorer::new(engine);

    let sample = root().join(format!("fixtures/samples/{format}.ndjson"));
    let text = std::fs::read(&sample).expect("sample exists");
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let parsed = enricher
        .parse_records(format, lines.iter().map(|l| (*l, None)), 0)
        .expect("batch builds");
    let batch = scorer.apply(&parsed).expect("scored");
    let events = Event::from_batch(&batch).expect("readable");
    Golden {
        events,
        dead_letters: parsed
            .rejects
            .iter()
            .map(|r| (r.index + 1, r.reason.to_string()))
            .collect(),
    }
}

fn check(format: Format) {
    let got = serde_json::to_string_pretty(&run_sample(format)).expect("serialises") + "\n";
    let path = root().join(format!("fixtures/golden/{format}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        std::fs::write(&path, &got).expect("golden written");
    }
    let want = std::fs::read_to_string(&path).expect("golden exists (UPDATE_GOLDEN=1 writes it)");
    assert!(
        got == want,
        "{format} output differs from {}; if intended, rerun with UPDATE_GOLDEN=1 and review the diff",
        path.display()
    );
}

#[test]
fn waf_sample_matches_golden() {
    check(Format::Waf);
}

#[test]
fn falco_sample_matches_golden() {
    check(Format::Falco);
}

#[test]
fn app_sample_matches_golden() {
    check(Format::App);
}

#[test]
fn guardduty_sample_matches_golden() {
    check(Format::GuardDuty);
}
