//! Threat scoring:
//! - `assess_waf` — `ThreatEngine::assess` (the stateless, per-event rules a
//!   worker runs) on the signals of fixture WAF records;
//! - `window_apply_waf` — `WindowScorer::apply` (the sequential per-IP window
//!   stage) over parsed WAF batches in order, from empty windows. This stage
//!   runs on one thread for the whole pipeline, so its events/s bounds the
//!   pipeline's.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use seclake_benches::{BATCH_RECORDS, Format, fixture_ndjson, parse_batches, split_lines};
use seclake_enrich::scoring::WindowScorer;
use seclake_enrich::threat::{Signals, ThreatEngine};
use serde::Deserialize;

const RECORDS: usize = 20_000;

/// The fields of a WAF record the stateless rules read, owned.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WafSignals {
    action: String,
    terminating_rule_id: Option<String>,
    terminating_rule_type: Option<String>,
    response_code_sent: Option<u16>,
    #[serde(default)]
    rule_group_list: Vec<RuleGroup>,
    #[serde(default)]
    rate_based_rule_list: Vec<sonic_rs::Value>,
    #[serde(default)]
    labels: Vec<Label>,
    http_request: HttpRequest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleGroup {
    rule_group_id: Option<String>,
    terminating_rule: Option<sonic_rs::Value>,
    #[serde(default)]
    non_terminating_matching_rules: Vec<sonic_rs::Value>,
}

#[derive(Deserialize)]
struct Label {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpRequest {
    client_ip: String,
    #[serde(default)]
    headers: Vec<Header>,
}

#[derive(Deserialize)]
struct Header {
    name: String,
    value: Option<String>,
}

/// One record's signals with the slices `Signals` borrows.
struct Owned {
    rec: WafSignals,
    ip: Option<IpAddr>,
    groups: Vec<String>,
    labels: Vec<String>,
    user_agent: Option<String>,
}

fn waf_signals(lines: &[&[u8]]) -> Vec<Owned> {
    lines
        .iter()
        .filter_map(|line| sonic_rs::from_slice::<WafSignals>(line).ok())
        .map(|rec| Owned {
            ip: rec.http_request.client_ip.parse().ok(),
            groups: rec
                .rule_group_list
                .iter()
                .filter(|g| {
                    g.terminating_rule.is_some() || !g.non_terminating_matching_rules.is_empty()
                })
                .filter_map(|g| g.rule_group_id.clone())
                .collect(),
            labels: rec.labels.iter().map(|l| l.name.clone()).collect(),
            user_agent: rec
                .http_request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("user-agent"))
                .and_then(|h| h.value.clone()),
            rec,
        })
        .collect()
}

fn scoring(c: &mut Criterion) {
    let data = fixture_ndjson(Format::Waf, RECORDS);
    let lines = split_lines(&data);
    let bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
    let engine = Arc::new(ThreatEngine::defaults());

    let owned = waf_signals(&lines);
    let refs: Vec<(Vec<&str>, Vec<&str>)> = owned
        .iter()
        .map(|o| {
            (
                o.groups.iter().map(String::as_str).collect(),
                o.labels.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let signals: Vec<Signals<'_>> = owned
        .iter()
        .zip(&refs)
        .map(|(o, (groups, labels))| {
            let rate_based = o.rec.terminating_rule_type.as_deref() == Some("RATE_BASED")
                || !o.rec.rate_based_rule_list.is_empty();
            Signals {
                format: seclake_ingest::Format::Waf,
                client_ip: o.ip,
                waf_action: Some(&o.rec.action),
                terminating_rule_id: o.rec.terminating_rule_id.as_deref(),
                terminating_rule_type: o.rec.terminating_rule_type.as_deref(),
                rule_groups: groups,
                labels,
                rate_based_hit: rate_based,
                user_agent: o.user_agent.as_deref(),
                status: o.rec.response_code_sent,
                ..Signals::default()
            }
        })
        .collect();
    let flagged = signals
        .iter()
        .filter(|s| engine.assess(s).score > 0)
        .count();
    eprintln!(
        "scoring: {} WAF records, {flagged} with a stateless score > 0",
        signals.len()
    );

    let mut group = c.benchmark_group("scoring");
    group.throughput(Throughput::Elements(signals.len() as u64));
    group.bench_function("assess_waf", |b| {
        b.iter(|| {
            let mut total = 0u64;
            for s in &signals {
                total += u64::from(engine.assess(black_box(s)).score);
            }
            total
        });
    });

    let parsed = parse_batches(Format::Waf, &lines, BATCH_RECORDS).expect("parsed WAF batches");
    let rows: u64 = parsed.iter().map(|p| p.events.num_rows() as u64).sum();
    group.throughput(Throughput::ElementsAndBytes {
        elements: rows,
        bytes,
    });
    group.bench_function("window_apply_waf", |b| {
        b.iter(|| {
            let mut scorer = WindowScorer::new(Arc::clone(&engine));
            let mut out = 0usize;
            for p in &parsed {
                out += scorer.apply(p).expect("scored batch").num_rows();
            }
            out
        });
    });
    group.finish();
}

criterion_group!(benches, scoring);
criterion_main!(benches);
