//! The report as HTML, Markdown, JSON and a few lines of summary.
//!
//! The JSON is the [`Report`] itself. The other forms show only its numbers,
//! formatted by [`numbers`], and its times in the report's time zone; nothing
//! they show is computed beyond that, so each figure can be found in the JSON.

pub mod charts;
mod html;
mod markdown;
pub mod numbers;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::report::{App, AppRoute, Attacker, Falco, FalcoPriority, Report, ThreatLevel};

/// The whole report as pretty-printed JSON.
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report)
        // A `Report` has no map and derives `Serialize` throughout: serde_json
        // fails only on non-string map keys or a failing custom impl.
        .expect("a Report always serializes to JSON")
}

/// The report as GitHub-flavoured Markdown: the headline figures, then one
/// table per section. Text from the data is escaped.
pub fn markdown(report: &Report) -> String {
    markdown::render(report)
}

/// The report as one self-contained HTML page: inline CSS and SVG charts, no
/// script, nothing loaded from elsewhere; fluid for phones, light and dark.
pub fn html(report: &Report) -> String {
    html::render(report)
}

/// The day in three to six plain lines for a terminal or a chat message:
/// WAF requests, blocked share and top attacker; Falco alerts and the
/// critical ones; leaked keys; the app's error rate and its busiest route's
/// p95. The text is not escaped for any markup.
pub fn summary(report: &Report) -> String {
    let head = format!("Security report {} ({})", report.date, plain(&report.tz));
    if report.empty {
        return format!("{head}: no events in the lake for this day.\n");
    }
    let mut lines = vec![head];

    let t = &report.traffic;
    let mut waf = format!(
        "WAF: {}, {} blocked, {}",
        numbers::counted(t.requests, "request", "requests"),
        numbers::pct(t.blocked_pct),
        numbers::counted(t.unique_ips, "client IP", "client IPs"),
    );
    if let Some(a) = report.top_attackers.first() {
        waf.push_str(&format!(
            "; top attacker {}{} with {} blocked{}",
            plain(&a.client_ip),
            origin(a).map(|o| format!(" ({o})")).unwrap_or_default(),
            numbers::count(a.blocked),
            if is_new(report, &a.client_ip) {
                format!(", not seen in the {} days before", report.history_days)
            } else {
                String::new()
            },
        ));
    }
    lines.push(waf);

    let f = &report.falco;
    let critical: Vec<String> = critical_priorities(f)
        .map(|p| format!("{} {}", priority_name(p), numbers::count(p.alerts)))
        .collect();
    lines.push(format!(
        "Falco: {}; critical or worse: {}",
        numbers::counted(f.alerts, "alert", "alerts"),
        if critical.is_empty() {
            "none".to_owned()
        } else {
            critical.join(", ")
        },
    ));

    lines.push(if report.leaked_credentials.is_empty() {
        "Leaked AWS keys: none".to_owned()
    } else {
        let keys: Vec<String> = report
            .leaked_credentials
            .iter()
            .map(|k| {
                format!(
                    "{} ({})",
                    plain(&k.key_redacted),
                    numbers::counted(k.records, "record", "records")
                )
            })
            .collect();
        format!("Leaked AWS keys: {}", keys.join(", "))
    });

    let blocked = report
        .blocks
        .iter()
        .filter(|b| b.decision == "blocked")
        .count();
    let dry = report
        .blocks
        .iter()
        .filter(|b| b.decision == "dry_run")
        .count();
    lines.push(match (blocked, dry) {
        (0, 0) => "Automatic blocks: none".to_owned(),
        (n, 0) => format!(
            "Automatic blocks: {}",
            numbers::counted(n as u64, "address", "addresses")
        ),
        (n, d) => format!(
            "Automatic blocks: {}, {} in dry run",
            numbers::counted(n as u64, "address", "addresses"),
            numbers::count(d as u64)
        ),
    });

    let app = &report.app;
    let mut line = format!(
        "App: {}, {} server errors",
        numbers::counted(app.requests, "request", "requests"),
        numbers::pct(app.error_rate_pct),
    );
    if let Some(route) = busiest_route(app) {
        line.push_str(&format!(
            "; busiest route {} p95 {}",
            plain(&route.route),
            numbers::ms_or_dash(route.p95_ms),
        ));
    }
    lines.push(line);

    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The report's clock: its time zone, UTC when the name is unknown.
struct Zone(Tz);

impl Zone {
    fn of(report: &Report) -> Zone {
        Zone(report.tz.parse().unwrap_or(Tz::UTC))
    }

    /// `14:03:27`, for instants within the report's day.
    fn time(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.0).format("%H:%M:%S").to_string()
    }

    /// `2026-11-30 09:00 KST`.
    fn minute(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.0)
            .format("%Y-%m-%d %H:%M %Z")
            .to_string()
    }
}

/// The Falco priorities critical or worse, as the day's counts.
fn critical_priorities(falco: &Falco) -> impl Iterator<Item = &FalcoPriority> {
    falco.by_priority.iter().filter(|p| {
        p.priority
            .as_deref()
            .is_some_and(|p| severity(p) <= severity("critical"))
    })
}

/// The threat levels grouped by source, in the order the report gives the
/// sources, most severe level first.
fn threat_levels(report: &Report) -> Vec<&ThreatLevel> {
    let mut levels: Vec<&ThreatLevel> = report.threat_levels.iter().collect();
    let source_rank = |s: &str| report.threat_levels.iter().position(|l| l.source == s);
    levels.sort_by_key(|l| (source_rank(&l.source), severity(&l.threat_level)));
    levels
}

/// Rank of a Falco priority or a threat level, most severe first; unknown
/// names last.
fn severity(name: &str) -> u8 {
    match name.to_ascii_lowercase().as_str() {
        "emergency" => 0,
        "alert" => 1,
        "critical" => 2,
        "error" | "high" => 3,
        "warning" | "medium" => 4,
        "notice" | "low" => 5,
        "informational" | "info" => 6,
        "debug" => 7,
        _ => 8,
    }
}

fn priority_name(p: &FalcoPriority) -> &str {
    p.priority.as_deref().unwrap_or("(none)")
}

/// The route with the most requests (the first of equals).
fn busiest_route(app: &App) -> Option<&AppRoute> {
    app.routes
        .iter()
        .reduce(|best, r| if r.requests > best.requests { r } else { best })
}

/// Whether `ip` is among the attackers not seen in the days before.
fn is_new(report: &Report, ip: &str) -> bool {
    report.new_attackers.iter().any(|a| a.client_ip == ip)
}

/// `KR, AS4766 Korea Telecom`: what is known of where an attacker is.
fn origin(a: &Attacker) -> Option<String> {
    let network = match (a.asn, a.as_org.as_deref()) {
        (Some(n), Some(org)) => Some(format!("AS{n} {}", plain(org))),
        (Some(n), None) => Some(format!("AS{n}")),
        (None, Some(org)) => Some(plain(org)),
        (None, None) => None,
    };
    let parts: Vec<String> = [a.country_iso.as_deref().map(plain), network]
        .into_iter()
        .flatten()
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `text` on one line: control characters (newlines, tabs, escapes) become
/// spaces, so data cannot break a line-based format.
fn plain(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
