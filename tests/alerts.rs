//! Alerts in the pipeline: `seclake run` over a Falco file, with an
//! `[[alert]]` rule for critical events and a Slack webhook played by the
//! test. Every critical (or worse) Falco event in the lake is alerted and
//! nothing below critical is; with `dedup_window`, repeats of one rule on
//! one host (or client address) are collapsed into one alert.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use common::{Seclake, free_port};
use datafusion::arrow::array::{Array as _, AsArray as _};

#[path = "../sink/tests/support/slack_hook.rs"]
mod slack_hook;
use slack_hook::{Hook, alerts, event_id, sections};

const RECORDS: u64 = 3000;
const SEED: u64 = 1414;

/// A Falco event as the lake holds it.
#[derive(Debug, Clone)]
struct Stored {
    severity: String,
    /// The client address, else the host: the de-duplication key's "who".
    who: String,
    rule: String,
}

/// Runs `seclake run` to the end over fixture Falco logs with the rule
/// `falco-critical` (plus `extra` keys) posting to `hook`; the summary.
fn run(dir: &Path, hook: &Hook, extra: &str) -> serde_json::Value {
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 29).expect("date");
    let mut input = Vec::new();
    seclake_fixtures::write_lines(
        seclake_ingest::Format::Falco,
        SEED,
        day,
        RECORDS,
        &mut input,
    )
    .expect("generated");
    std::fs::write(dir.join("falco.ndjson"), input).expect("input written");
    let port = free_port();
    let d = dir.display();
    let config = format!(
        "[[source]]\ntype = \"file\"\nformat = \"falco\"\npath = \"{d}/falco.ndjson\"\n\
         [lake]\nurl = \"file://{d}/lake\"\n[dlq]\nurl = \"file://{d}/dlq\"\n{}\
         [alerts.slack]\nwebhook_url = \"{}\"\n\
         [[alert]]\nname = \"falco-critical\"\noutput = \"slack\"\nformat = \"falco\"\n\
         min_severity = \"critical\"\n{extra}",
        Seclake::metrics_section(port),
        hook.url
    );
    let path = dir.join("seclake.toml");
    std::fs::write(&path, config).expect("config written");
    Seclake::start(&path, port, &[]).wait_success(Duration::from_secs(120))
}

/// Every event in the lake under `dir/lake`, by event id.
fn lake(dir: &Path) -> HashMap<String, Stored> {
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let batches = rt.block_on(async {
        let ctx = SessionContext::new();
        ctx.register_parquet(
            "events",
            &format!("{}/lake/", dir.display()),
            ParquetReadOptions::default(),
        )
        .await
        .expect("the lake");
        ctx.sql("SELECT event_id, severity, coalesce(client_ip, hostname) AS who, rule FROM events")
            .await
            .expect("query")
            .collect()
            .await
            .expect("rows")
    });
    let mut out = HashMap::new();
    for batch in &batches {
        let column = |i: usize| {
            datafusion::arrow::compute::cast(
                batch.column(i),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .expect("text")
        };
        let (ids, severities, who, rules) = (column(0), column(1), column(2), column(3));
        let text = |a: &datafusion::arrow::array::ArrayRef, row: usize| {
            let a = a.as_string::<i32>();
            if a.is_null(row) {
                String::new()
            } else {
                a.value(row).to_owned()
            }
        };
        for row in 0..batch.num_rows() {
            out.insert(
                text(&ids, row),
                Stored {
                    severity: text(&severities, row),
                    who: text(&who, row),
                    rule: text(&rules, row),
                },
            );
        }
    }
    out
}

fn is_critical(event: &Stored) -> bool {
    matches!(event.severity.as_str(), "critical" | "alert" | "emergency")
}

/// Every alert the hook accepted: how many in all, and the event ids of
/// those shown one by one.
fn received(hook: &Hook) -> (u64, Vec<String>) {
    let messages = hook.delivered();
    assert!(!messages.is_empty(), "no message reached the webhook");
    let total = messages.iter().map(alerts).sum();
    let shown = messages
        .iter()
        .flat_map(sections)
        .map(|s| event_id(&s).unwrap_or_else(|| panic!("no event id in {s}")))
        .collect();
    (total, shown)
}

#[test]
fn every_critical_falco_event_is_alerted_and_nothing_below() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = Hook::start(&[]);
    let summary = run(dir.path(), &hook, "");
    let lake = lake(dir.path());
    let critical: HashSet<&String> = lake
        .iter()
        .filter(|(_, e)| is_critical(e))
        .map(|(id, _)| id)
        .collect();
    assert!(
        critical.len() > 30 && critical.len() < lake.len() / 2,
        "{} critical of {} events: the fixture changed",
        critical.len(),
        lake.len()
    );

    let (total, shown) = received(&hook);
    assert_eq!(total, critical.len() as u64, "alerts vs critical events");
    for id in &shown {
        let event = lake
            .get(id)
            .unwrap_or_else(|| panic!("{id} is not in the lake"));
        assert!(is_critical(event), "{id} alerted at {}", event.severity);
    }
    assert_eq!(
        shown.iter().collect::<HashSet<_>>().len(),
        shown.len(),
        "an event alerted twice"
    );
    assert_eq!(summary["sinks"]["alert"]["rows"], total);
}

#[test]
fn dedup_window_alerts_each_rule_and_host_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = Hook::start(&[]);
    run(dir.path(), &hook, "dedup_window = \"1h\"\n");
    let lake = lake(dir.path());
    let critical: Vec<&Stored> = lake.values().filter(|e| is_critical(e)).collect();
    let keys: HashSet<(&str, &str)> = critical
        .iter()
        .map(|e| (e.who.as_str(), e.rule.as_str()))
        .collect();
    assert!(
        keys.len() < critical.len(),
        "the fixture repeats no rule on a host"
    );

    let (total, shown) = received(&hook);
    assert_eq!(total, keys.len() as u64, "one alert per host and rule");
    let mut seen = HashSet::new();
    for id in &shown {
        let event = &lake[id];
        assert!(is_critical(event), "{id} alerted at {}", event.severity);
        assert!(
            seen.insert((event.who.as_str(), event.rule.as_str())),
            "{} on {} alerted twice",
            event.rule,
            event.who
        );
    }
}
