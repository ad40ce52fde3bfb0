//! The report as one self-contained HTML page, templated with maud: every
//! value from the data is escaped by the template; only the SVG charts, which
//! plotters escapes itself, are inserted as markup.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::charts::{self, ACTIONS, Bar, ChartError, Swatch, palette};
use super::{
    Zone, busiest_route, critical_priorities, is_new, numbers, priority_name, severity,
    threat_levels,
};
use crate::report::{Attacker, Report};

/// The page's style: fluid from phone to desktop, light and dark. Charts are
/// recoloured here, as plotters writes fixed colours.
const CSS: &str = r#"
:root {
  color-scheme: light dark;
  --bg: #f5f6f8; --fg: #1b2027; --muted: #5a6470; --card: #ffffff;
  --line: #d9dee4; --axis: #8d96a0; --bad: #c0262d; --new-bg: #fff1c2; --new-fg: #6b4a00;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0e1116; --fg: #e4e8ec; --muted: #9ba6b2; --card: #161b22;
    --line: #2a313a; --axis: #6e7884; --bad: #ff7b72; --new-bg: #4a3a0a; --new-fg: #ffd970;
  }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
}
header, main, footer { max-width: 1180px; margin: 0 auto; padding: 0 16px; }
h1 { font-size: 1.45rem; line-height: 1.25; margin: 20px 0 6px; }
h2 { font-size: 1.2rem; margin: 36px 0 12px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 22px 0 8px; }
p { margin: 8px 0; }
.meta, .note { color: var(--muted); font-size: .88rem; overflow-wrap: anywhere; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 165px), 1fr)); gap: 10px; margin-top: 16px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; min-width: 0; }
.card .label { color: var(--muted); font-size: .8rem; }
.card .value { font-size: clamp(1.1rem, 4.6vw, 1.35rem); font-weight: 650; overflow-wrap: break-word; }
.card .sub { color: var(--muted); font-size: .8rem; overflow-wrap: anywhere; }
.card.alert { border-color: var(--bad); }
.card.alert .value { color: var(--bad); }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 420px), 1fr)); gap: 16px; align-items: start; margin: 16px 0; }
figure { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px; min-width: 0; }
figcaption { font-weight: 600; margin-bottom: 6px; }
svg.chart { display: block; max-width: 100%; height: auto; margin: 0 auto; }
svg.chart text { fill: var(--fg); }
svg.chart polyline, svg.chart line { stroke: var(--axis); }
.legend { list-style: none; padding: 0; margin: 8px 0 0; display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: .85rem; color: var(--muted); }
.scroll { overflow-x: auto; background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { padding: 6px 10px; text-align: left; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: .8rem; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:last-child td { border-bottom: 0; }
.badge { display: inline-block; font-size: .7rem; font-weight: 700; letter-spacing: .03em; padding: 0 6px; border-radius: 999px; background: var(--new-bg); color: var(--new-fg); margin-left: 6px; text-transform: uppercase; }
td code { white-space: nowrap; overflow-wrap: normal; }
.grid h3 { margin-top: 0; }
.swatch { display: inline-block; width: .8em; height: .8em; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.alerts { list-style: none; padding: 0; margin: 0; display: grid; gap: 10px; }
.alerts li { background: var(--card); border: 1px solid var(--line); border-left: 4px solid var(--bad); border-radius: 8px; padding: 10px 12px; min-width: 0; }
.alerts .title { font-weight: 600; overflow-wrap: anywhere; }
.alerts dl { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 2px 12px; margin: 6px 0 0; font-size: .88rem; }
.alerts dt { color: var(--muted); }
.alerts dd { margin: 0; min-width: 0; overflow-wrap: anywhere; }
code { font: .85em/1.4 ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap; overflow-wrap: anywhere; }
.none { color: var(--muted); font-style: italic; }
.empty { margin-top: 24px; padding: 20px; background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
.empty h2 { border: 0; margin-top: 0; }
footer { color: var(--muted); font-size: .8rem; padding-top: 28px; padding-bottom: 32px; }
"#;

pub(super) fn render(report: &Report) -> String {
    let zone = Zone::of(report);
    let title = format!("Security report {}", report.date);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { (title) }
                    p.meta {
                        "From " (zone.minute(report.start)) " to " (zone.minute(report.end))
                        " (" (report.tz) ") · lake " code { (report.lake) }
                        " · generated " (zone.minute(report.generated_at))
                    }
                }
                main {
                    @if report.empty {
                        section.empty {
                            h2 { "No data for this day" }
                            p {
                                "The lake holds no WAF request, Falco alert or app log between "
                                (zone.minute(report.start)) " and " (zone.minute(report.end)) "."
                            }
                            p.note { "Check that ingestion ran for this day and that the lake URL is the right one." }
                        }
                    } @else {
                        (overview(report))
                        (waf(report))
                        (severity_section(report))
                        (falco(report, &zone))
                        (credentials(report, &zone))
                        (blocks(report, &zone))
                        (app(report))
                    }
                }
                footer {
                    "seclake · every figure on this page is in the report's JSON"
                }
            }
        }
    }
    .into_string()
}

fn overview(report: &Report) -> Markup {
    let t = &report.traffic;
    let f = &report.falco;
    let app = &report.app;
    let critical: Vec<String> = critical_priorities(f)
        .map(|p| format!("{} {}", priority_name(p), numbers::count(p.alerts)))
        .collect();
    let leaked = !report.leaked_credentials.is_empty();
    html! {
        section.cards aria-label="Overview" {
            (card("WAF requests", numbers::count(t.requests), numbers::counted(t.unique_ips, "client IP", "client IPs"), false))
            (card("Blocked", numbers::pct(t.blocked_pct), numbers::counted(t.blocked, "request", "requests"), false))
            (card(
                "Falco alerts",
                numbers::count(f.alerts),
                if critical.is_empty() { "none critical".to_owned() } else { critical.join(" · ") },
                !critical.is_empty(),
            ))
            (card(
                "Leaked AWS keys",
                if leaked { "Found" } else { "None" }.to_owned(),
                if leaked { "see Leaked credentials" } else { "in the app's logs" }.to_owned(),
                leaked,
            ))
            (card("App requests", numbers::count(app.requests), numbers::counted(app.orders, "order", "orders"), false))
            (card(
                "Server errors",
                numbers::pct(app.error_rate_pct),
                numbers::counted(app.server_errors, "5xx response", "5xx responses"),
                false,
            ))
        }
    }
}

fn card(label: &str, value: String, sub: String, alert: bool) -> Markup {
    html! {
        div.card.alert[alert] {
            div.label { (label) }
            div.value { (value) }
            div.sub { (sub) }
        }
    }
}

fn waf(report: &Report) -> Markup {
    let countries: Vec<Bar> = report
        .top_countries
        .iter()
        .map(|c| Bar {
            label: match (&c.country_iso, &c.country_name) {
                (_, Some(name)) => name.clone(),
                (Some(iso), None) => iso.clone(),
                (None, None) => "Unknown".to_owned(),
            },
            value: c.requests,
            color: palette::NEUTRAL,
            part: Some((c.blocked, palette::BLOCKED)),
        })
        .collect();
    let attacks: Vec<Bar> = report
        .attack_types
        .iter()
        .map(|a| Bar {
            label: a.attack_type.clone(),
            value: a.hits,
            color: palette::NEUTRAL,
            part: Some((a.blocked, palette::BLOCKED)),
        })
        .collect();
    let requests_legend = [
        ("Requests", palette::NEUTRAL),
        ("Blocked", palette::BLOCKED),
    ];
    let hits_legend = [("Hits", palette::NEUTRAL), ("Blocked", palette::BLOCKED)];
    let actions: Vec<(&str, Swatch)> = ACTIONS.iter().map(|s| (s.name, s.color)).collect();
    html! {
        section #waf {
            h2 { "WAF traffic" }
            @if report.traffic.requests == 0 {
                p.none { "No WAF request this day." }
            } @else {
                div.grid {
                    (figure(
                        &format!("Requests per hour ({})", report.tz),
                        charts::timeline(&report.timeline, "Requests per hour, stacked by WAF action"),
                        &actions,
                    ))
                    (by_action(report))
                }
                div.grid {
                    (figure("Top source countries", charts::bars("countries", &countries, "Requests by source country"), &requests_legend))
                    (figure("Attack types", charts::bars("attack types", &attacks, "WAF hits by attack type"), &hits_legend))
                }
                h3 { "Top attackers" }
                (attackers(report))
                h3 { "WAF rules" }
                @if report.waf_rules.is_empty() {
                    p.none { "No WAF rule matched." }
                } @else {
                    div.scroll {
                        table {
                            thead { tr { th { "Rule" } th { "Action" } th { "Attack type" } th.num { "Hits" } th.num { "Client IPs" } } }
                            tbody {
                                @for r in &report.waf_rules {
                                    tr {
                                        td { (r.rule) }
                                        td { (r.action) }
                                        td { (r.attack_type.as_deref().unwrap_or("–")) }
                                        td.num { (numbers::count(r.hits)) }
                                        td.num { (numbers::count(r.client_ips)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The day's requests by action: the timeline's totals and its legend.
fn by_action(report: &Report) -> Markup {
    let t = &report.traffic;
    html! {
        div {
            h3 { "Requests by action" }
            div.scroll {
                table {
                    thead { tr { th { "Action" } th.num { "Requests" } } }
                    tbody {
                        @for series in &ACTIONS {
                            tr {
                                td { (swatch(series.color)) (series.name) }
                                td.num {
                                    (numbers::count((series.day)(t)))
                                    @if series.color == palette::BLOCKED { " (" (numbers::pct(t.blocked_pct)) ")" }
                                }
                            }
                        }
                        tr { td { "All" } td.num { (numbers::count(t.requests)) } }
                        tr { td { "Client IPs" } td.num { (numbers::count(t.unique_ips)) } }
                    }
                }
            }
            p.note { "The chart's gridline is the busiest hour." }
        }
    }
}

fn swatch(color: Swatch) -> Markup {
    html! { i.swatch style={ "background:" (color.css()) } {} }
}

fn attackers(report: &Report) -> Markup {
    if report.top_attackers.is_empty() {
        return html! { p.none { "No client had a request blocked." } };
    }
    html! {
        div.scroll {
            table #attackers {
                thead {
                    tr {
                        th { "IP" } th { "Country" } th { "Network" }
                        th.num { "Requests" } th.num { "Blocked" } th.num { "Max score" }
                    }
                }
                tbody {
                    @for a in &report.top_attackers {
                        tr {
                            td {
                                code { (a.client_ip) }
                                @if is_new(report, &a.client_ip) { span.badge title="Not seen in the days before" { "new" } }
                            }
                            td { (a.country_iso.as_deref().unwrap_or("–")) }
                            td { (network(a)) }
                            td.num { (numbers::count(a.requests)) }
                            td.num { (numbers::count(a.blocked)) }
                            td.num { (a.max_threat_score) }
                        }
                    }
                }
            }
        }
        @if !report.new_attackers.is_empty() {
            p.note { span.badge style="margin-left:0" { "new" } " not seen in the " (report.history_days) " days before." }
        }
    }
}

fn network(a: &Attacker) -> String {
    match (a.asn, a.as_org.as_deref()) {
        (Some(n), Some(org)) => format!("AS{n} {org}"),
        (Some(n), None) => format!("AS{n}"),
        (None, Some(org)) => org.to_owned(),
        (None, None) => "–".to_owned(),
    }
}

/// Threat levels of every source beside Falco's priorities: how severe the
/// day was.
fn severity_section(report: &Report) -> Markup {
    let levels: Vec<Bar> = threat_levels(report)
        .into_iter()
        .map(|l| Bar {
            label: format!("{} · {}", l.source, l.threat_level),
            value: l.events,
            color: level_color(&l.threat_level),
            part: None,
        })
        .collect();
    let priorities: Vec<Bar> = report
        .falco
        .by_priority
        .iter()
        .map(|p| Bar {
            label: priority_name(p).to_owned(),
            value: p.alerts,
            color: level_color(priority_name(p)),
            part: None,
        })
        .collect();
    let legend = [
        ("critical", palette::SEVERE),
        ("high", palette::HIGH),
        ("medium", palette::MEDIUM),
        ("low", palette::LOW),
    ];
    html! {
        section #severity {
            h2 { "Severity" }
            div.grid {
                @if levels.is_empty() {
                    p.none { "No event was scored." }
                } @else {
                    (figure(
                        "Events by source and threat level",
                        charts::bars("threat levels", &levels, "Events by source and threat level"),
                        &legend,
                    ))
                }
                @if priorities.is_empty() {
                    p.none { "No Falco alert this day." }
                } @else {
                    (figure(
                        "Falco alerts by priority",
                        charts::bars("Falco priorities", &priorities, "Falco alerts by priority"),
                        &[],
                    ))
                }
            }
        }
    }
}

fn falco(report: &Report, zone: &Zone) -> Markup {
    let f = &report.falco;
    html! {
        section #falco {
            h2 { "Falco runtime alerts" }
            @if f.alerts == 0 {
                p.none { "No Falco alert this day." }
            } @else {
                h3 { "Rules" }
                div.scroll {
                    table {
                        thead { tr { th { "Rule" } th.num { "Alerts" } th.num { "Critical" } th.num { "Hosts" } } }
                        tbody {
                            @for r in &f.rules {
                                tr {
                                    td { (r.rule.as_deref().unwrap_or("(none)")) }
                                    td.num { (numbers::count(r.alerts)) }
                                    td.num { (numbers::count(r.critical)) }
                                    td.num { (numbers::count(r.hosts)) }
                                }
                            }
                        }
                    }
                }
                div.grid {
                    div { h3 { "Hosts" } (groups("Host", &f.hosts)) }
                    div { h3 { "Namespaces" } (groups("Namespace", &f.namespaces)) }
                }
                h3 { "Critical alerts, newest first (" (report.tz) ")" }
                @if f.critical.is_empty() {
                    p.none { "No alert of priority critical or worse." }
                } @else {
                    ul.alerts {
                        @for a in &f.critical {
                            li {
                                div.title {
                                    (zone.time(a.ts)) " · " (a.priority.as_deref().unwrap_or("(none)"))
                                    " · " (a.rule.as_deref().unwrap_or("(no rule)"))
                                }
                                dl {
                                    @if let Some(host) = &a.hostname { dt { "Host" } dd { (host) } }
                                    @if let Some(ns) = &a.namespace { dt { "Namespace" } dd { (ns) } }
                                    @if let Some(pod) = &a.pod { dt { "Pod" } dd { (pod) } }
                                    @if let Some(image) = &a.container_image { dt { "Image" } dd { code { (image) } } }
                                    @if let Some(cmd) = &a.proc_cmdline { dt { "Command" } dd { code { (cmd) } } }
                                    @if let Some(output) = &a.output { dt { "Output" } dd { code { (output) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn groups(column: &str, groups: &[crate::report::FalcoGroup]) -> Markup {
    html! {
        div.scroll {
            table {
                thead { tr { th { (column) } th.num { "Alerts" } th.num { "Critical" } } }
                tbody {
                    @for g in groups {
                        tr {
                            td { (g.name.as_deref().unwrap_or("(none)")) }
                            td.num { (numbers::count(g.alerts)) }
                            td.num { (numbers::count(g.critical)) }
                        }
                    }
                }
            }
        }
    }
}

fn credentials(report: &Report, zone: &Zone) -> Markup {
    html! {
        section #credentials {
            h2 { "Leaked credentials" }
            @if report.leaked_credentials.is_empty() {
                p.none { "No AWS access key found in the app's logs." }
            } @else {
                p.note { "AWS access key ids found in the app's logs, redacted; times in " (report.tz) ". Rotate them." }
                div.scroll {
                    table {
                        thead {
                            tr {
                                th { "Key" } th.num { "Records" } th { "First seen" } th { "Last seen" }
                                th.num { "Routes" } th.num { "Users" }
                            }
                        }
                        tbody {
                            @for k in &report.leaked_credentials {
                                tr {
                                    td { code { (k.key_redacted) } }
                                    td.num { (numbers::count(k.records)) }
                                    td { (zone.time(k.first_seen)) }
                                    td { (zone.time(k.last_seen)) }
                                    td.num { (numbers::count(k.routes)) }
                                    td.num { (numbers::count(k.users)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn blocks(report: &Report, zone: &Zone) -> Markup {
    html! {
        section #blocks {
            h2 { "Automatic blocks" }
            @if report.blocks.is_empty() {
                p.none { "The automatic response made no decision this day." }
            } @else {
                p.note { "Addresses the pipeline blocked in the WAF IP set (or kept out, evicted or refused), newest first; times in " (report.tz) "." }
                div.scroll {
                    table {
                        thead {
                            tr {
                                th { "Time" } th { "Decision" } th { "Address" } th { "Network" }
                                th.num { "Score" } th { "Why" } th { "Outcome" }
                            }
                        }
                        tbody {
                            @for b in &report.blocks {
                                tr {
                                    td { (zone.time(b.ts)) }
                                    td { (b.decision) }
                                    td { code { (b.client_ip) } }
                                    td {
                                        (b.country_iso.as_deref().unwrap_or(""))
                                        @if let Some(asn) = b.asn { " AS" (asn) }
                                        @if let Some(org) = &b.as_org { " " (org) }
                                    }
                                    td.num { (b.threat_score) " " (b.threat_level) }
                                    td { (b.reasons.as_deref().unwrap_or("")) }
                                    td { (b.message.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn app(report: &Report) -> Markup {
    let app = &report.app;
    html! {
        section #app {
            h2 { "Commerce API" }
            @if app.requests == 0 {
                p.none { "No app request this day." }
            } @else {
                div.cards {
                    (card("Requests", numbers::count(app.requests), format!("{} (4xx)", numbers::counted(app.client_errors, "client error", "client errors")), false))
                    (card("Server errors", numbers::pct(app.error_rate_pct), numbers::counted(app.server_errors, "5xx response", "5xx responses"), false))
                    (card("Orders", numbers::count(app.orders), "placed".to_owned(), false))
                    (card("Revenue (KRW)", numbers::int(app.revenue_krw), "from orders".to_owned(), false))
                }
                @if let Some(route) = busiest_route(app) {
                    p.note { "Busiest route " code { (route.route) } ": p95 " (numbers::ms_or_dash(route.p95_ms)) "." }
                }
                div.scroll {
                    table {
                        thead {
                            tr {
                                th { "Route" } th.num { "Requests" } th.num { "5xx" } th.num { "Error rate" }
                                th.num { "p50" } th.num { "p95" } th.num { "p99" }
                            }
                        }
                        tbody {
                            @for r in &app.routes {
                                tr {
                                    td { code { (r.route) } }
                                    td.num { (numbers::count(r.requests)) }
                                    td.num { (numbers::count(r.server_errors)) }
                                    td.num { (numbers::pct(r.error_rate_pct)) }
                                    td.num { (numbers::ms_or_dash(r.p50_ms)) }
                                    td.num { (numbers::ms_or_dash(r.p95_ms)) }
                                    td.num { (numbers::ms_or_dash(r.p99_ms)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A chart with its caption and legend; a note when the chart is missing.
fn figure(
    caption: &str,
    chart: Result<Option<String>, ChartError>,
    legend: &[(&str, Swatch)],
) -> Markup {
    let chart = chart.inspect_err(|e| tracing::warn!("report: {e}"));
    html! {
        figure {
            figcaption { (caption) }
            @match chart {
                Ok(Some(svg)) => {
                    (PreEscaped(svg))
                    @if !legend.is_empty() {
                        ul.legend {
                            @for (name, color) in legend {
                                li { (swatch(*color)) (name) }
                            }
                        }
                    }
                }
                Ok(None) => { p.none { "Nothing to chart." } }
                Err(e) => { p.none { "Chart unavailable: " (e) } }
            }
        }
    }
}

/// The colour of a threat level or a Falco priority.
fn level_color(name: &str) -> Swatch {
    match severity(name) {
        0..=2 => palette::SEVERE,
        3 => palette::HIGH,
        4 => palette::MEDIUM,
        5 => palette::LOW,
        _ => palette::MUTED,
    }
}
