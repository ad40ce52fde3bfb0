//! The report as GitHub-flavoured Markdown: headline figures, then a table
//! per section. Every piece of data is escaped ([`escape`]) so it reads as
//! the text it is, and cannot break a table or inject a link.

use std::fmt::Write;

use super::{
    Zone, busiest_route, critical_priorities, is_new, numbers, plain, priority_name, threat_levels,
};
use crate::report::Report;

/// Column alignment.
#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}
use Align::{Left, Right};

pub(super) fn render(report: &Report) -> String {
    let zone = Zone::of(report);
    let mut out = String::new();
    let w = &mut out;
    line(
        w,
        format!("# Security report {} ({})", report.date, escape(&report.tz)),
    );
    line(
        w,
        format!(
            "From {} to {} · lake {} · generated {}",
            zone.minute(report.start),
            zone.minute(report.end),
            escape(&report.lake),
            zone.minute(report.generated_at),
        ),
    );
    if report.empty {
        line(
            w,
            "**No data: the lake holds no WAF request, Falco alert or app log of this day.**"
                .to_owned(),
        );
        return out;
    }

    let t = &report.traffic;
    let f = &report.falco;
    let app = &report.app;
    let critical: Vec<String> = critical_priorities(f)
        .map(|p| format!("{} {}", priority_name(p), numbers::count(p.alerts)))
        .collect();
    line(w, "## Overview".to_owned());
    table(
        w,
        &[("Figure", Left), ("Value", Right)],
        [
            ["WAF requests".to_owned(), numbers::count(t.requests)],
            [
                "Blocked".to_owned(),
                format!(
                    "{} ({})",
                    numbers::count(t.blocked),
                    numbers::pct(t.blocked_pct)
                ),
            ],
            ["Client IPs".to_owned(), numbers::count(t.unique_ips)],
            ["Falco alerts".to_owned(), numbers::count(f.alerts)],
            [
                "Critical or worse".to_owned(),
                if critical.is_empty() {
                    "none".to_owned()
                } else {
                    critical.join(", ")
                },
            ],
            [
                "Leaked AWS keys".to_owned(),
                if report.leaked_credentials.is_empty() {
                    "none"
                } else {
                    "found"
                }
                .to_owned(),
            ],
            ["App requests".to_owned(), numbers::count(app.requests)],
            [
                "Server errors (5xx)".to_owned(),
                format!(
                    "{} ({})",
                    numbers::count(app.server_errors),
                    numbers::pct(app.error_rate_pct)
                ),
            ],
            ["Orders".to_owned(), numbers::count(app.orders)],
            ["Revenue".to_owned(), numbers::krw(app.revenue_krw)],
        ],
    );

    line(w, "## Top attackers".to_owned());
    table(
        w,
        &[
            ("IP", Left),
            ("Country", Left),
            ("Network", Left),
            ("Requests", Right),
            ("Blocked", Right),
            ("Max score", Right),
            ("New", Left),
        ],
        report.top_attackers.iter().map(|a| {
            [
                a.client_ip.clone(),
                a.country_iso.clone().unwrap_or_default(),
                network(a.asn, a.as_org.as_deref()),
                numbers::count(a.requests),
                numbers::count(a.blocked),
                a.max_threat_score.to_string(),
                if is_new(report, &a.client_ip) {
                    "new"
                } else {
                    ""
                }
                .to_owned(),
            ]
        }),
    );
    if !report.new_attackers.is_empty() {
        line(
            w,
            format!(
                "_New: not seen in the {} days before._",
                report.history_days
            ),
        );
    }

    line(w, "## Source countries".to_owned());
    table(
        w,
        &[("Country", Left), ("Requests", Right), ("Blocked", Right)],
        report.top_countries.iter().map(|c| {
            [
                match (&c.country_iso, &c.country_name) {
                    (Some(iso), Some(name)) => format!("{iso} {name}"),
                    (Some(one), None) | (None, Some(one)) => one.clone(),
                    (None, None) => "unknown".to_owned(),
                },
                numbers::count(c.requests),
                numbers::count(c.blocked),
            ]
        }),
    );

    line(w, "## Attack types".to_owned());
    table(
        w,
        &[
            ("Attack type", Left),
            ("Hits", Right),
            ("Blocked", Right),
            ("Client IPs", Right),
        ],
        report.attack_types.iter().map(|a| {
            [
                a.attack_type.clone(),
                numbers::count(a.hits),
                numbers::count(a.blocked),
                numbers::count(a.client_ips),
            ]
        }),
    );

    line(w, "## WAF rules".to_owned());
    table(
        w,
        &[
            ("Rule", Left),
            ("Action", Left),
            ("Attack type", Left),
            ("Hits", Right),
            ("Client IPs", Right),
        ],
        report.waf_rules.iter().map(|r| {
            [
                r.rule.clone(),
                r.action.clone(),
                r.attack_type.clone().unwrap_or_default(),
                numbers::count(r.hits),
                numbers::count(r.client_ips),
            ]
        }),
    );

    line(w, "## Threat levels".to_owned());
    table(
        w,
        &[("Source", Left), ("Level", Left), ("Events", Right)],
        threat_levels(report).into_iter().map(|l| {
            [
                l.source.clone(),
                l.threat_level.clone(),
                numbers::count(l.events),
            ]
        }),
    );

    line(w, "## Falco alerts by priority".to_owned());
    table(
        w,
        &[("Priority", Left), ("Alerts", Right)],
        f.by_priority
            .iter()
            .map(|p| [priority_name(p).to_owned(), numbers::count(p.alerts)]),
    );

    line(w, "## Falco rules".to_owned());
    table(
        w,
        &[
            ("Rule", Left),
            ("Alerts", Right),
            ("Critical", Right),
            ("Hosts", Right),
        ],
        f.rules.iter().map(|r| {
            [
                r.rule.clone().unwrap_or_default(),
                numbers::count(r.alerts),
                numbers::count(r.critical),
                numbers::count(r.hosts),
            ]
        }),
    );
    for (title, column, groups) in [
        ("## Falco hosts", "Host", &f.hosts),
        ("## Falco namespaces", "Namespace", &f.namespaces),
    ] {
        line(w, title.to_owned());
        table(
            w,
            &[(column, Left), ("Alerts", Right), ("Critical", Right)],
            groups.iter().map(|g| {
                [
                    g.name.clone().unwrap_or_else(|| "(none)".to_owned()),
                    numbers::count(g.alerts),
                    numbers::count(g.critical),
                ]
            }),
        );
    }

    line(
        w,
        format!(
            "## Critical Falco alerts ({}, newest first)",
            escape(&report.tz)
        ),
    );
    table(
        w,
        &[
            ("Time", Left),
            ("Priority", Left),
            ("Rule", Left),
            ("Host", Left),
            ("Namespace/pod", Left),
            ("Command", Left),
            ("Output", Left),
        ],
        f.critical.iter().map(|a| {
            [
                zone.time(a.ts),
                a.priority.clone().unwrap_or_default(),
                a.rule.clone().unwrap_or_default(),
                a.hostname.clone().unwrap_or_default(),
                [a.namespace.as_deref(), a.pod.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("/"),
                a.proc_cmdline.clone().unwrap_or_default(),
                a.output.clone().unwrap_or_default(),
            ]
        }),
    );

    line(w, format!("## Leaked AWS keys ({})", escape(&report.tz)));
    table(
        w,
        &[
            ("Key (redacted)", Left),
            ("Records", Right),
            ("First seen", Left),
            ("Last seen", Left),
            ("Routes", Right),
            ("Users", Right),
        ],
        report.leaked_credentials.iter().map(|k| {
            [
                k.key_redacted.clone(),
                numbers::count(k.records),
                zone.time(k.first_seen),
                zone.time(k.last_seen),
                numbers::count(k.routes),
                numbers::count(k.users),
            ]
        }),
    );

    line(w, format!("## Automatic blocks ({})", escape(&report.tz)));
    table(
        w,
        &[
            ("Time", Left),
            ("Decision", Left),
            ("Address", Left),
            ("Country", Left),
            ("ASN", Left),
            ("Score", Right),
            ("Why", Left),
            ("Outcome", Left),
        ],
        report.blocks.iter().map(|b| {
            [
                zone.time(b.ts),
                b.decision.clone(),
                b.client_ip.clone(),
                b.country_iso.clone().unwrap_or_default(),
                b.asn.map(|a| format!("AS{a}")).unwrap_or_default(),
                format!("{} {}", b.threat_score, b.threat_level),
                b.reasons.clone().unwrap_or_default(),
                b.message.clone().unwrap_or_default(),
            ]
        }),
    );

    line(w, "## App routes".to_owned());
    if let Some(route) = busiest_route(app) {
        line(
            w,
            format!(
                "Busiest: {} · p95 {}",
                escape(&route.route),
                numbers::ms_or_dash(route.p95_ms)
            ),
        );
    }
    table(
        w,
        &[
            ("Route", Left),
            ("Requests", Right),
            ("5xx", Right),
            ("Error rate", Right),
            ("p50", Right),
            ("p95", Right),
            ("p99", Right),
        ],
        app.routes.iter().map(|r| {
            [
                r.route.clone(),
                numbers::count(r.requests),
                numbers::count(r.server_errors),
                numbers::pct(r.error_rate_pct),
                numbers::ms_or_dash(r.p50_ms),
                numbers::ms_or_dash(r.p95_ms),
                numbers::ms_or_dash(r.p99_ms),
            ]
        }),
    );
    out
}

/// Appends a paragraph (or heading) and the blank line after it.
fn line(out: &mut String, text: String) {
    out.push_str(&text);
    out.push_str("\n\n");
}

/// Appends a table of `rows` under `columns`, every cell escaped; `_None._`
/// when there is no row.
fn table<const N: usize>(
    out: &mut String,
    columns: &[(&str, Align); N],
    rows: impl IntoIterator<Item = [String; N]>,
) {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        line(out, "_None._".to_owned());
        return;
    }
    let mut head = String::from("|");
    let mut rule = String::from("|");
    for (name, align) in columns {
        let _ = write!(head, " {} |", escape(name));
        rule.push_str(match align {
            Left => " --- |",
            Right => " ---: |",
        });
    }
    out.push_str(&head);
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    for row in rows {
        out.push('|');
        for cell in &row {
            let _ = write!(out, " {} |", escape(cell));
        }
        out.push('\n');
    }
    out.push('\n');
}

/// `AS4766 Korea Telecom`.
fn network(asn: Option<i64>, org: Option<&str>) -> String {
    match (asn, org) {
        (Some(n), Some(org)) => format!("AS{n} {org}"),
        (Some(n), None) => format!("AS{n}"),
        (None, Some(org)) => org.to_owned(),
        (None, None) => String::new(),
    }
}

/// `text` as literal inline Markdown on one line: the characters GFM gives a
/// meaning inline (emphasis, code, links, HTML, entities, table pipes) are
/// backslash-escaped, and control characters become spaces.
fn escape(text: &str) -> String {
    let text = plain(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&' | '!'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_tables_links_and_html() {
        assert_eq!(escape("a|b"), r"a\|b");
        assert_eq!(escape("<script>&x"), r"\<script\>\&x");
        assert_eq!(escape("[x](http://e)"), r"\[x\](http://e)");
        assert_eq!(escape("line\nbreak"), "line break");
        assert_eq!(escape(r"C:\tmp *b*"), r"C:\\tmp \*b\*");
    }
}
