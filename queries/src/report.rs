//! The daily report: its model (what the JSON holds, and everything the HTML
//! and Markdown show) and [`build`], which runs the SQL over the lake.

use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use datafusion::execution::context::SessionContext;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::day::HISTORY_DAYS;
use crate::sections::{DAY_TABLES, SECTIONS, Sql};
use crate::{Lake, QueryError, ReportDay};

/// The day's security report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// The calendar day reported on, in `tz`.
    pub date: NaiveDate,
    /// The IANA time zone the day and the timeline are in.
    pub tz: String,
    /// The day's first instant and the instant after it, UTC.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    /// The lake read.
    pub lake: String,
    /// True when the lake holds no event of the day at all.
    pub empty: bool,
    pub traffic: Traffic,
    pub top_countries: Vec<Country>,
    pub top_attackers: Vec<Attacker>,
    /// Top attackers not seen in the [`HISTORY_DAYS`] days before.
    pub new_attackers: Vec<Attacker>,
    pub history_days: i64,
    pub waf_rules: Vec<WafRule>,
    pub attack_types: Vec<AttackType>,
    /// One entry per hour of the day in `tz` (23 to 25), hours without
    /// requests included.
    pub timeline: Vec<Hour>,
    pub threat_levels: Vec<ThreatLevel>,
    pub falco: Falco,
    pub leaked_credentials: Vec<LeakedKey>,
    /// The automatic response's decisions, newest first, at most
    /// `critical_limit`.
    #[serde(default)]
    pub blocks: Vec<BlockDecision>,
    pub app: App,
}

/// WAF requests by action.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Traffic {
    pub requests: u64,
    pub allowed: u64,
    pub blocked: u64,
    pub counted: u64,
    pub captcha: u64,
    pub challenge: u64,
    pub unique_ips: u64,
    /// `blocked / requests`, in percent (0 without requests).
    #[serde(default)]
    pub blocked_pct: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Country {
    #[serde(default)]
    pub country_iso: Option<String>,
    #[serde(default)]
    pub country_name: Option<String>,
    pub requests: u64,
    pub blocked: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attacker {
    pub client_ip: String,
    #[serde(default)]
    pub country_iso: Option<String>,
    #[serde(default)]
    pub asn: Option<i64>,
    #[serde(default)]
    pub as_org: Option<String>,
    #[serde(default)]
    pub requests: u64,
    pub blocked: u64,
    pub max_threat_score: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WafRule {
    pub rule: String,
    pub action: String,
    #[serde(default)]
    pub attack_type: Option<String>,
    pub hits: u64,
    pub client_ips: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttackType {
    pub attack_type: String,
    pub hits: u64,
    pub blocked: u64,
    pub client_ips: u64,
}

/// One hour of the timeline.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Hour {
    /// The hour's start, in the report's time zone.
    pub start: DateTime<FixedOffset>,
    pub allowed: u64,
    pub blocked: u64,
    pub counted: u64,
    pub captcha: u64,
    pub challenge: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThreatLevel {
    pub source: String,
    pub threat_level: String,
    pub events: u64,
}

/// Falco alerts of the day.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Falco {
    pub alerts: u64,
    pub by_priority: Vec<FalcoPriority>,
    pub rules: Vec<FalcoRule>,
    pub hosts: Vec<FalcoGroup>,
    pub namespaces: Vec<FalcoGroup>,
    /// Critical (or worse) alerts, newest first, at most `critical_limit`.
    pub critical: Vec<CriticalAlert>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FalcoPriority {
    #[serde(default)]
    pub priority: Option<String>,
    pub alerts: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FalcoRule {
    #[serde(default)]
    pub rule: Option<String>,
    pub alerts: u64,
    pub critical: u64,
    pub hosts: u64,
}

/// Alerts of one host or namespace (`name` null: none logged).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FalcoGroup {
    #[serde(default, alias = "hostname", alias = "namespace")]
    pub name: Option<String>,
    pub alerts: u64,
    pub critical: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CriticalAlert {
    pub ts: DateTime<Utc>,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub container_image: Option<String>,
    #[serde(default)]
    pub proc_cmdline: Option<String>,
    #[serde(default)]
    pub output: Option<String>,
}

/// An AWS access key id found in the app's logs, redacted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeakedKey {
    pub key_redacted: String,
    pub records: u64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub routes: u64,
    pub users: u64,
}

/// One decision of the automatic response (docs/operations.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockDecision {
    pub ts: DateTime<Utc>,
    /// `blocked`, `dry_run`, `allow_listed`, `evicted` or `refused`.
    pub decision: String,
    pub client_ip: String,
    #[serde(default)]
    pub country_iso: Option<String>,
    #[serde(default)]
    pub asn: Option<i64>,
    #[serde(default)]
    pub as_org: Option<String>,
    pub threat_score: i32,
    pub threat_level: String,
    /// What triggered it, e.g. `level critical` or `5 events in 60s`.
    #[serde(default)]
    pub trigger: Option<String>,
    #[serde(default)]
    pub reasons: Option<String>,
    /// What was done and until when.
    #[serde(default)]
    pub message: Option<String>,
}

/// The commerce API's day.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct App {
    pub requests: u64,
    pub server_errors: u64,
    pub client_errors: u64,
    /// Server errors (5xx) per request, in percent.
    #[serde(default)]
    pub error_rate_pct: f64,
    pub orders: u64,
    pub revenue_krw: i64,
    #[serde(default)]
    pub routes: Vec<AppRoute>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppRoute {
    pub route: String,
    pub requests: u64,
    pub server_errors: u64,
    #[serde(default)]
    pub error_rate_pct: f64,
    #[serde(default)]
    pub p50_ms: Option<f64>,
    #[serde(default)]
    pub p95_ms: Option<f64>,
    #[serde(default)]
    pub p99_ms: Option<f64>,
}

/// How a report is built.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows of the top-N sections.
    pub top: usize,
    /// Most critical Falco alerts listed.
    pub critical_limit: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            top: 10,
            critical_limit: 50,
        }
    }
}

/// How long one query took and how many rows it gave.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub name: &'static str,
    pub rows: usize,
    #[serde(with = "secs")]
    pub elapsed: Duration,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Every query the report runs, in order: the day tables, then the sections.
pub fn steps() -> usize {
    DAY_TABLES.len() + SECTIONS.len()
}

/// Runs the report's SQL over `lake` for `day`. `progress` is called after
/// each query with its timing; the timings are returned too.
pub async fn build(
    lake: &Lake,
    day: &ReportDay,
    options: &Options,
    mut progress: impl FnMut(&Timing),
) -> Result<(Report, Vec<Timing>), QueryError> {
    let params = day.params(options.top, options.critical_limit);
    let ctx = lake.context();
    let mut timings = Vec::with_capacity(steps());
    for table in DAY_TABLES {
        let started = Instant::now();
        let sql = format!(
            "CREATE OR REPLACE TABLE {} AS {}",
            table.name,
            params.bind(table.text)
        );
        query(ctx, table.name, sql).await?;
        let rows = count(lake, table.name).await?;
        let timing = Timing {
            name: table.name,
            rows,
            elapsed: started.elapsed(),
        };
        progress(&timing);
        timings.push(timing);
    }
    let mut results = Results::with_capacity(SECTIONS.len());
    for section in SECTIONS {
        let started = Instant::now();
        let batches = run(lake, section, &params).await?;
        let timing = Timing {
            name: section.name,
            rows: batches.iter().map(RecordBatch::num_rows).sum(),
            elapsed: started.elapsed(),
        };
        progress(&timing);
        timings.push(timing);
        results.insert(section.name, batches);
    }
    let mut traffic: Traffic = one("traffic_summary", section(&results, "traffic_summary"))?;
    traffic.blocked_pct = pct(traffic.blocked, traffic.requests);
    let mut app: App = one("app_summary", section(&results, "app_summary"))?;
    app.error_rate_pct = pct(app.server_errors, app.requests);
    app.routes = rows("app_routes", section(&results, "app_routes"))?;
    for route in &mut app.routes {
        route.error_rate_pct = pct(route.server_errors, route.requests);
    }
    let by_priority: Vec<FalcoPriority> =
        rows("falco_priorities", section(&results, "falco_priorities"))?;
    let falco = Falco {
        alerts: by_priority.iter().map(|p| p.alerts).sum(),
        by_priority,
        rules: rows("falco_rules", section(&results, "falco_rules"))?,
        hosts: rows("falco_hosts", section(&results, "falco_hosts"))?,
        namespaces: rows("falco_namespaces", section(&results, "falco_namespaces"))?,
        critical: rows("falco_critical", section(&results, "falco_critical"))?,
    };
    let timeline = timeline(
        day,
        &rows::<HourAction>("timeline", section(&results, "timeline"))?,
    );
    let empty = traffic.requests == 0 && falco.alerts == 0 && app.requests == 0;
    let report = Report {
        date: day.date,
        tz: day.tz.name().to_owned(),
        start: day.start,
        end: day.end,
        generated_at: Utc::now(),
        lake: lake.url().to_owned(),
        empty,
        traffic,
        top_countries: rows("top_countries", section(&results, "top_countries"))?,
        top_attackers: rows("top_attackers", section(&results, "top_attackers"))?,
        new_attackers: rows("new_attackers", section(&results, "new_attackers"))?,
        history_days: HISTORY_DAYS,
        waf_rules: rows("waf_rules", section(&results, "waf_rules"))?,
        attack_types: rows("attack_types", section(&results, "attack_types"))?,
        timeline,
        threat_levels: rows("threat_levels", section(&results, "threat_levels"))?,
        falco,
        leaked_credentials: rows(
            "leaked_credentials",
            section(&results, "leaked_credentials"),
        )?,
        blocks: rows("blocks", section(&results, "blocks"))?,
        app,
    };
    Ok((report, timings))
}

/// Each section's result batches, by section name.
type Results = std::collections::HashMap<&'static str, Vec<RecordBatch>>;

/// The batches of section `name` (none if it gave none).
fn section<'a>(results: &'a Results, name: &str) -> &'a [RecordBatch] {
    results.get(name).map_or(&[], Vec::as_slice)
}

/// Runs one SQL text with `params` bound.
pub async fn run(
    lake: &Lake,
    sql: &Sql,
    params: &crate::day::Params,
) -> Result<Vec<RecordBatch>, QueryError> {
    query(lake.context(), sql.name, params.bind(sql.text)).await
}

/// Plans and runs `sql` to the end on a task of its own, so that a panic in
/// a reader (the Parquet footer decoder panics on some corrupt files) fails
/// this query instead of taking the process down.
pub async fn query(
    ctx: &SessionContext,
    name: &str,
    sql: String,
) -> Result<Vec<RecordBatch>, QueryError> {
    let ctx = ctx.clone();
    let task = tokio::spawn(async move { ctx.sql(&sql).await?.collect().await });
    match task.await {
        Ok(result) => result.map_err(df_err(name)),
        Err(e) => {
            let message = match e.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panicked".to_owned()),
                Err(e) => e.to_string(),
            };
            Err(QueryError::Panicked {
                name: name.to_owned(),
                message,
            })
        }
    }
}

async fn count(lake: &Lake, table: &'static str) -> Result<usize, QueryError> {
    let batches = query(
        lake.context(),
        table,
        format!("SELECT count(*) AS n FROM {table}"),
    )
    .await?;
    #[derive(Deserialize)]
    struct N {
        n: usize,
    }
    Ok(one::<N>(table, &batches)?.n)
}

fn df_err(name: &str) -> impl Fn(datafusion::error::DataFusionError) -> QueryError + '_ {
    move |source| QueryError::DataFusion {
        name: name.to_owned(),
        source,
    }
}

/// The rows of `batches` as `T`s, through Arrow's JSON writer (column names
/// are field names; null columns are left out, so `Option` fields default).
pub fn rows<T: DeserializeOwned>(
    name: &str,
    batches: &[RecordBatch],
) -> Result<Vec<T>, QueryError> {
    let shape = |why: String| QueryError::Shape {
        name: name.to_owned(),
        why,
    };
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for batch in batches {
        writer.write(batch).map_err(|e| shape(e.to_string()))?;
    }
    writer.finish().map_err(|e| shape(e.to_string()))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| shape(e.to_string()))
}

fn one<T: DeserializeOwned>(name: &str, batches: &[RecordBatch]) -> Result<T, QueryError> {
    rows(name, batches)?
        .into_iter()
        .next()
        .ok_or_else(|| QueryError::Shape {
            name: name.to_owned(),
            why: "no row".into(),
        })
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[derive(Deserialize)]
struct HourAction {
    hour_start: DateTime<FixedOffset>,
    #[serde(default)]
    action: Option<String>,
    requests: u64,
}

/// Every hour of the day in its zone, with the counts the query found.
fn timeline(day: &ReportDay, found: &[HourAction]) -> Vec<Hour> {
    let mut hours = Vec::new();
    let mut at = day.start;
    while at < day.end {
        let local = at.with_timezone(&day.tz);
        hours.push(Hour {
            start: local.fixed_offset(),
            ..Hour::default()
        });
        at += chrono::Duration::hours(1);
    }
    for row in found {
        let Some(hour) = hours.iter_mut().rev().find(|h| h.start <= row.hour_start) else {
            continue;
        };
        match row.action.as_deref() {
            Some("ALLOW") => hour.allowed += row.requests,
            Some("BLOCK") => hour.blocked += row.requests,
            Some("COUNT") => hour.counted += row.requests,
            Some("CAPTCHA") => hour.captcha += row.requests,
            Some("CHALLENGE") => hour.challenge += row.requests,
            _ => {}
        }
        hour.total += row.requests;
    }
    hours
}
