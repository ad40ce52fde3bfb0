//! The rendered report: escaping, the empty day, numbers traceable to the
//! JSON, well-formed Markdown tables, and the JSON round trip.

mod reports;

use std::collections::HashSet;

use regex::Regex;
use scraper::{Html, Selector};
use seclake_queries::Report;
use seclake_queries::render::{self, numbers};
use serde_json::Value;

use reports::{AS_ORG, CMDLINE, FALCO_OUTPUT, SCRIPT, WAF_RULE, busy_day, empty_day};

fn select<'a>(doc: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

fn text(e: &scraper::ElementRef<'_>) -> String {
    e.text().collect()
}

/// The text of `e` with its text nodes apart, as a reader sees them.
fn words(e: &scraper::ElementRef<'_>) -> String {
    e.text().collect::<Vec<_>>().join(" ")
}

#[test]
fn json_round_trips_to_an_equal_report() {
    for report in [busy_day(), empty_day()] {
        let json = render::json(&report);
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        assert!(json.contains("\n  \"traffic\": {"), "pretty-printed");
    }
}

#[test]
fn html_escapes_every_string_from_the_data() {
    let html = render::html(&busy_day());
    for raw in [
        SCRIPT,
        "<b>hi</b>",
        "<svg onload",
        "<\"Hosting\">",
        "<untrusted>",
        "<Friends>",
    ] {
        assert!(!html.contains(raw), "{raw:?} left unescaped");
    }
    let doc = Html::parse_document(&html);
    assert!(select(&doc, "script").is_empty());
    let handlers: Vec<_> = doc
        .root_element()
        .descendants()
        .filter_map(scraper::ElementRef::wrap)
        .flat_map(|e| {
            e.value()
                .attrs()
                .map(|(name, _)| name.to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|name| name.starts_with("on"))
        .collect();
    assert!(
        handlers.is_empty(),
        "event handler attributes: {handlers:?}"
    );

    // Escaped, not dropped: the text reads as the data.
    let codes: Vec<String> = select(&doc, ".alerts code").iter().map(text).collect();
    assert!(codes.iter().any(|c| c == FALCO_OUTPUT), "{codes:?}");
    assert!(codes.iter().any(|c| c == CMDLINE));
    assert!(codes.iter().any(|c| c == SCRIPT));
    let cells: Vec<String> = select(&doc, "td").iter().map(text).collect();
    assert!(cells.iter().any(|c| c.contains(AS_ORG)), "{cells:?}");
    assert!(cells.iter().any(|c| c == WAF_RULE));
    let chart_text: Vec<String> = select(&doc, "svg text").iter().map(text).collect();
    assert!(
        chart_text.iter().any(|t| t.trim() == "xss <svg onload=x>"),
        "{chart_text:?}"
    );
}

#[test]
fn html_is_self_contained_and_fits_a_phone() {
    let html = render::html(&busy_day());
    let doc = Html::parse_document(&html);
    let viewport = select(&doc, r#"meta[name="viewport"]"#);
    assert_eq!(viewport.len(), 1);
    assert!(html.contains("prefers-color-scheme: dark"));
    for css in ["link", "img", "iframe", "object", "[src]", "[href]"] {
        assert!(select(&doc, css).is_empty(), "{css} in the page");
    }
    for reference in ["@import", "url(", "@font-face"] {
        assert!(!html.contains(reference), "{reference} in the page");
    }
    let charts = select(&doc, "svg.chart");
    assert_eq!(
        charts.len(),
        5,
        "timeline, countries, attack types, threat levels, Falco priorities"
    );
    let rect = Selector::parse("rect").unwrap();
    for chart in &charts {
        assert!(chart.value().attr("viewBox").is_some());
        assert!(chart.select(&rect).next().is_some(), "bars drawn");
    }
    // Wide tables scroll inside their own box.
    for table in select(&doc, "table") {
        let parent = scraper::ElementRef::wrap(table.parent().unwrap()).unwrap();
        assert!(
            parent
                .value()
                .has_class("scroll", scraper::CaseSensitivity::CaseSensitive)
        );
    }
}

#[test]
fn html_shows_the_tables_and_marks_new_attackers() {
    let report = busy_day();
    let doc = Html::parse_document(&render::html(&report));
    let rows = select(&doc, "#attackers tbody tr");
    let first = text(&rows[0]);
    assert!(
        first.contains("203.0.113.77") && first.to_lowercase().contains("new"),
        "{first}"
    );
    let badges = select(&doc, "#attackers .badge");
    assert_eq!(badges.len(), report.new_attackers.len());
    let routes = text(&select(&doc, "#app table")[0]);
    for expected in ["p50", "p95", "p99", "1,204 ms", "87 ms", "4.2 ms", "0.0%"] {
        assert!(
            routes.contains(expected),
            "{expected} missing from {routes}"
        );
    }
    let leaked = text(&select(&doc, "#credentials table")[0]);
    assert!(leaked.contains("AKIA************MPLE"));
    let app = text(&select(&doc, "#app")[0]);
    assert!(app.contains("Revenue (KRW)418,937,500"), "{app}");
}

#[test]
fn times_are_in_the_report_time_zone() {
    let report = busy_day();
    let html = render::html(&report);
    let md = render::markdown(&report);
    // 05:04:03 UTC and 23:12:45 UTC in Seoul (UTC+9).
    for page in [&html, &md] {
        assert!(page.contains("14:04:03"));
        assert!(page.contains("08:12:45"));
        assert!(!page.contains("05:04:03"));
        assert!(!page.contains("23:12:45"));
    }
    assert!(html.contains("2026-11-29 00:00 KST"), "the day's start");
}

#[test]
fn every_number_in_the_html_is_a_number_of_the_json() {
    let report = busy_day();
    let allowed = allowed_tokens(&render::json(&report));
    let doc = Html::parse_document(&render::html(&report));
    let body = words(&select(&doc, "body")[0]);
    let shown = numeric_tokens(&body);
    let strays: Vec<&String> = shown.iter().filter(|t| !allowed.contains(*t)).collect();
    assert!(strays.is_empty(), "numbers not in the JSON: {strays:?}");
    // Not vacuous: the headline figures are among those checked.
    for expected in [
        numbers::count(report.traffic.requests),
        numbers::pct(report.traffic.blocked_pct),
        numbers::count(report.falco.alerts),
        numbers::pct(report.app.error_rate_pct),
        "1,204".to_owned(),
        "418,937,500".to_owned(),
    ] {
        assert!(shown.contains(&expected), "{expected} not shown");
    }
}

/// The numeric tokens that the formatters make of the JSON's numbers, and
/// those inside its strings (a Falco output may well quote a port).
fn allowed_tokens(json: &str) -> HashSet<String> {
    fn walk(v: &Value, numbers: &mut Vec<f64>, strings: &mut Vec<String>) {
        match v {
            Value::Number(n) => numbers.push(n.as_f64().unwrap()),
            Value::String(s) => strings.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| walk(i, numbers, strings)),
            Value::Object(map) => map.values().for_each(|i| walk(i, numbers, strings)),
            Value::Bool(_) | Value::Null => {}
        }
    }
    let (mut found, mut strings) = (Vec::new(), Vec::new());
    walk(
        &serde_json::from_str(json).unwrap(),
        &mut found,
        &mut strings,
    );
    let mut formatted = strings;
    for n in found {
        formatted.push(numbers::pct(n));
        formatted.push(numbers::ms(n));
        if n.fract() == 0.0 {
            formatted.push(n.to_string());
            formatted.push(numbers::int(n as i64));
            formatted.push(numbers::krw(n as i64));
            if n >= 0.0 {
                formatted.push(numbers::count(n as u64));
            }
        }
    }
    formatted.iter().flat_map(|s| numeric_tokens(s)).collect()
}

/// Whitespace-separated words that are numbers once stripped of the
/// punctuation around them: `1,234`, `12.3%`, `4.2`. Dates, times, IPs and
/// identifiers (`14:04:03`, `2026-11-29`, `203.0.113.77`, `AS64501`) are not.
fn numeric_tokens(text: &str) -> Vec<String> {
    let number = Regex::new(r"^(\d{1,3}(,\d{3})+|\d+)(\.\d+)?%?$").unwrap();
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| "()[]{},;:.·\"'".contains(c)))
        .filter(|w| number.is_match(w))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_number_check_rejects_what_the_json_lacks() {
    let allowed = allowed_tokens(r#"{"requests": 1234567, "pct": 12.345, "p": 1203.5}"#);
    for ok in ["1,234,567", "12.3%", "1,204"] {
        assert!(allowed.contains(ok), "{ok}");
    }
    assert_eq!(
        numeric_tokens("at 14:04:03 from 203.0.113.77, AS64501 on 2026-11-29"),
        Vec::<String>::new()
    );
    assert_eq!(numeric_tokens("(1,234) and 12.3%."), ["1,234", "12.3%"]);
    assert!(!allowed.contains("1,234,568"));
}

#[test]
fn an_empty_day_says_so_and_draws_nothing() {
    let report = empty_day();
    let html = render::html(&report);
    let doc = Html::parse_document(&html);
    let body = text(&select(&doc, "body")[0]);
    assert!(body.contains("No data for this day"), "{body}");
    assert!(select(&doc, "svg").is_empty());
    assert!(select(&doc, "table").is_empty());
    assert!(!body.contains("NaN"));

    let md = render::markdown(&report);
    assert!(md.contains("No data"), "{md}");
    assert!(!md.contains('|'), "no table: {md}");

    let summary = render::summary(&report);
    assert_eq!(summary.lines().count(), 1);
    assert!(summary.contains("no events"), "{summary}");
}

#[test]
fn a_day_without_waf_traffic_says_so_in_its_section() {
    let mut report = busy_day();
    report.traffic = Default::default();
    report.top_countries.clear();
    report.top_attackers.clear();
    report.new_attackers.clear();
    report.waf_rules.clear();
    report.attack_types.clear();
    for hour in &mut report.timeline {
        *hour = seclake_queries::report::Hour {
            start: hour.start,
            ..Default::default()
        };
    }
    let doc = Html::parse_document(&render::html(&report));
    let waf = text(&select(&doc, "#waf")[0]);
    assert!(waf.contains("No WAF request this day."), "{waf}");
    assert!(select(&doc, "#waf svg").is_empty());
    assert!(
        !select(&doc, "#severity svg").is_empty(),
        "Falco still charted"
    );
}

#[test]
fn markdown_tables_are_well_formed_and_escaped() {
    let md = render::markdown(&busy_day());
    assert!(!md.contains("<script>"));
    assert!(md.contains(r"\<script\>"));
    assert!(
        md.contains(r"AWSManagedRulesSQLiRuleSet\|SQLi\_BODY"),
        "{md}"
    );
    let separator = Regex::new(r"^\|( :?-{3,}:? \|)+$").unwrap();
    let lines: Vec<&str> = md.lines().collect();
    let mut tables = 0;
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].starts_with('|') {
            i += 1;
            continue;
        }
        tables += 1;
        assert!(
            i > 0 && lines[i - 1].is_empty(),
            "a blank line before the table at line {i}"
        );
        let end = lines[i..]
            .iter()
            .position(|l| !l.starts_with('|'))
            .map_or(lines.len(), |n| i + n);
        let table = &lines[i..end];
        assert!(table.len() >= 3, "header, separator and a row: {table:?}");
        assert!(separator.is_match(table[1]), "{}", table[1]);
        let columns = cells(table[0]);
        for row in table {
            assert!(row.ends_with('|') && !row.ends_with("\\|"), "{row}");
            assert_eq!(cells(row), columns, "{row}");
        }
        i = end;
    }
    assert_eq!(tables, 14, "a table per section");
}

/// The cells of a table row: its unescaped pipes, less one.
fn cells(row: &str) -> usize {
    let mut pipes = 0;
    let mut chars = row.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '|' => pipes += 1,
            _ => {}
        }
    }
    pipes - 1
}

#[test]
fn the_summary_is_a_few_plain_lines_of_headline_figures() {
    let report = busy_day();
    let summary = render::summary(&report);
    let lines: Vec<&str> = summary.lines().collect();
    assert!((3..=6).contains(&lines.len()), "{summary}");
    for expected in [
        numbers::count(report.traffic.requests),
        numbers::pct(report.traffic.blocked_pct),
        "203.0.113.77".to_owned(),
        "not seen in the 7 days before".to_owned(),
        "Emergency 1, Critical 13".to_owned(),
        "AKIA************MPLE (37 records)".to_owned(),
        numbers::pct(report.app.error_rate_pct),
        "GET /api/products/{id} p95 87 ms".to_owned(),
    ] {
        assert!(
            summary.contains(&expected),
            "{expected} missing from\n{summary}"
        );
    }
}

#[test]
fn a_count_of_one_reads_in_the_singular() {
    let mut report = busy_day();
    report.traffic.requests = 1;
    report.traffic.blocked = 1;
    report.traffic.unique_ips = 1;
    report.falco.alerts = 1;
    report.leaked_credentials.truncate(1);
    report.leaked_credentials[0].records = 1;
    report.app.requests = 1;
    report.app.orders = 1;
    report.app.client_errors = 1;
    report.app.server_errors = 1;

    let summary = render::summary(&report);
    for expected in [
        "WAF: 1 request, ",
        ", 1 client IP;",
        "Falco: 1 alert;",
        "AKIA************MPLE (1 record)",
        "App: 1 request, ",
    ] {
        assert!(
            summary.contains(expected),
            "{expected:?} missing from\n{summary}"
        );
    }
    let plural = Regex::new(r"\b1 (requests|client IPs|alerts|records)\b").unwrap();
    assert!(!plural.is_match(&summary), "{summary}");

    let doc = Html::parse_document(&render::html(&report));
    let subs: Vec<String> = select(&doc, ".card .sub").iter().map(text).collect();
    for expected in [
        "1 client IP",
        "1 request",
        "1 order",
        "1 client error (4xx)",
        "1 5xx response",
    ] {
        assert!(
            subs.iter().any(|s| s == expected),
            "{expected:?} in {subs:?}"
        );
    }

    // Two or none stay plural.
    report.leaked_credentials[0].records = 2;
    report.app.orders = 0;
    assert!(render::summary(&report).contains("AKIA************MPLE (2 records)"));
    let doc = Html::parse_document(&render::html(&report));
    let subs: Vec<String> = select(&doc, ".card .sub").iter().map(text).collect();
    assert!(subs.iter().any(|s| s == "0 orders"), "{subs:?}");
}
