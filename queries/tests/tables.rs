//! The lake as tables: partition pruning by day and time zone, files written
//! before a column existed, duplicates, an empty day, a missing lake and an
//! unreadable file.

use std::path::Path;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;
use parquet::arrow::ArrowWriter;
use seclake_enrich::schema::{Event, events_to_batch};
use seclake_queries::report::{Options, Report, Timing};
use seclake_queries::sections::{DAY_TABLES, SECTIONS, find};
use seclake_queries::{Lake, QueryError, ReportDay, build};
use seclake_sink::store::S3Options;

const HOUR_US: i64 = 3_600_000_000;

fn us(y: i32, m: u32, d: u32, h: u32) -> i64 {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
        .unwrap()
        .timestamp_micros()
}

/// A WAF event at `ts`; `i` makes the id and the address.
fn waf(i: u64, ts: i64, action: &str) -> Event {
    Event {
        event_id: format!("{i:032x}"),
        source: "waf".into(),
        ts,
        ingest_ts: ts,
        client_ip: Some(format!("198.51.100.{}", i % 7)),
        action: Some(action.into()),
        rule: Some("Default_Action".into()),
        threat_level: "low".into(),
        ..Event::default()
    }
}

/// Writes `events` as one Parquet file of the partition their first event's
/// hour falls in, without the `source` column (a partition key), and without
/// the columns in `drop` (a file written before they existed).
fn write_file(lake: &Path, name: &str, events: &[Event], drop: &[&str]) {
    let batch = events_to_batch(events).unwrap();
    let keep: Vec<usize> = batch
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name() != "source" && !drop.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let batch = batch.project(&keep).unwrap();
    let ts = Utc.timestamp_micros(events[0].ts).unwrap();
    let dir = lake.join(format!(
        "source={}/dt={}/hour={}",
        events[0].source,
        ts.format("%Y-%m-%d"),
        ts.format("%H")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::File::create(dir.join(name)).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// Three days (Nov 28-30) of WAF events, ten per hour, two of them blocked.
fn three_days(lake: &Path) {
    let mut n = 0;
    for day in 28..=30 {
        for hour in 0..24 {
            let start = us(2026, 11, day, hour);
            let events: Vec<Event> = (0..10)
                .map(|k| {
                    n += 1;
                    let action = if k < 2 { "BLOCK" } else { "ALLOW" };
                    waf(n, start + k * HOUR_US / 10, action)
                })
                .collect();
            write_file(lake, "part-0.parquet", &events, &[]);
        }
    }
}

async fn open(lake: &Path) -> Lake {
    Lake::open(lake.to_str().unwrap(), &S3Options::default())
        .await
        .unwrap()
}

fn day(date: &str, tz: &str) -> ReportDay {
    ReportDay::new(NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap(), tz).unwrap()
}

/// The partitions (`dt=…/hour=…`) of the files a query's plan scans.
async fn scanned_partitions(lake: &Lake, sql: &str) -> Vec<String> {
    let plan = lake
        .context()
        .sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let mut partitions = Vec::new();
    let mut stack: Vec<Arc<dyn ExecutionPlan>> = vec![plan];
    while let Some(node) = stack.pop() {
        if let Some(source) = node.downcast_ref::<DataSourceExec>()
            && let Some(scan) = source.data_source().downcast_ref::<FileScanConfig>()
        {
            for group in &scan.file_groups {
                for file in group.files() {
                    let path = file.object_meta.location.to_string();
                    let at = path.find("dt=").unwrap();
                    partitions.push(path[at..at + "dt=2026-11-29/hour=00".len()].to_owned());
                }
            }
        }
        stack.extend(node.children().into_iter().cloned());
    }
    partitions.sort();
    partitions.dedup();
    partitions
}

/// The report of `date` in UTC with the default options.
async fn build_utc(lake: &Lake, date: &str) -> Result<(Report, Vec<Timing>), QueryError> {
    build(lake, &day(date, "UTC"), &Options::default(), |_| {}).await
}

#[tokio::test]
async fn only_the_partitions_of_the_day_are_opened() {
    let dir = tempfile::tempdir().unwrap();
    three_days(dir.path());
    let lake = open(dir.path()).await;

    let utc = day("2026-11-29", "UTC");
    for scanned in scanned_by_the_waf_day_tables(&lake, &utc).await {
        assert_eq!(
            scanned,
            utc.partitions(),
            "24 hours of 2026-11-29, nothing else"
        );
        assert!(scanned.iter().all(|p| p.starts_with("dt=2026-11-29/")));
    }

    // Seoul's 29 November is 15:00 on the 28th to 15:00 on the 29th, UTC.
    let seoul = day("2026-11-29", "Asia/Seoul");
    for scanned in scanned_by_the_waf_day_tables(&lake, &seoul).await {
        assert_eq!(scanned, seoul.partitions());
        assert_eq!(scanned.len(), 24);
        assert_eq!(scanned.first().unwrap(), "dt=2026-11-28/hour=15");
        assert_eq!(scanned.last().unwrap(), "dt=2026-11-29/hour=14");
    }
}

/// The partitions scanned by `waf_copies` and by `waf_day` (made after it)
/// for `day`.
async fn scanned_by_the_waf_day_tables(lake: &Lake, day: &ReportDay) -> [Vec<String>; 2] {
    let params = day.params(10, 50);
    let copies = params.bind(find("waf_copies").unwrap().text);
    let scanned_copies = scanned_partitions(lake, &copies).await;
    lake.context()
        .sql(&format!("CREATE OR REPLACE TABLE waf_copies AS {copies}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let waf_day = params.bind(find("waf_day").unwrap().text);
    [scanned_copies, scanned_partitions(lake, &waf_day).await]
}

#[tokio::test]
async fn the_time_zone_moves_the_day_and_its_timeline() {
    let dir = tempfile::tempdir().unwrap();
    three_days(dir.path());
    let lake = open(dir.path()).await;
    for tz in ["UTC", "Asia/Seoul", "Asia/Kolkata", "America/New_York"] {
        let d = day("2026-11-29", tz);
        let (report, _) = build(&lake, &d, &Options::default(), |_| {}).await.unwrap();
        // Ten events an hour at every tenth of it, two of them blocked: 240
        // a day wherever the day starts (Kolkata's starts at :30).
        assert_eq!(report.traffic.requests, 240, "{tz}");
        assert_eq!(report.traffic.blocked, 48, "{tz}");
        assert_eq!(report.traffic.blocked_pct, 20.0, "{tz}");
        assert_eq!(report.timeline.len(), 24, "{tz}");
        assert!(
            report.timeline.iter().all(|h| h.total == 10),
            "{tz}: {:?}",
            report.timeline.iter().map(|h| h.total).collect::<Vec<_>>()
        );
        let first = report.timeline[0].start;
        assert_eq!(
            first.format("%Y-%m-%d %H:%M").to_string(),
            "2026-11-29 00:00",
            "{tz}"
        );
        assert_eq!(report.tz, tz);
    }
}

#[tokio::test]
async fn duplicates_of_an_event_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let start = us(2026, 11, 29, 5);
    let events: Vec<Event> = (0..50).map(|i| waf(i, start + i as i64, "BLOCK")).collect();
    write_file(dir.path(), "a.parquet", &events, &[]);
    // A replay wrote the first 20 again, with a later ingest time.
    let replayed: Vec<Event> = events[..20]
        .iter()
        .map(|e| Event {
            ingest_ts: e.ingest_ts + 1_000_000,
            ..e.clone()
        })
        .collect();
    write_file(dir.path(), "b.parquet", &replayed, &[]);
    let lake = open(dir.path()).await;
    let (report, _) = build_utc(&lake, "2026-11-29").await.unwrap();
    assert_eq!(report.traffic.requests, 50);
    assert_eq!(report.traffic.blocked, 50);
    let blocked: u64 = report.top_attackers.iter().map(|a| a.blocked).sum();
    assert_eq!(blocked, 50, "{:?}", report.top_attackers);
}

/// A Falco alert at `ts`; `i` makes the id.
fn falco(i: u64, ts: i64, priority: &str) -> Event {
    Event {
        event_id: format!("f{i:031x}"),
        source: "falco".into(),
        ts,
        ingest_ts: ts,
        rule: Some("Terminal shell in container".into()),
        severity: Some(priority.to_lowercase()),
        falco_priority: Some(priority.into()),
        hostname: Some("node-1".into()),
        threat_level: "low".into(),
        ..Event::default()
    }
}

/// An app request at `ts`; `i` makes the id.
fn app(i: u64, ts: i64, status: i32) -> Event {
    Event {
        event_id: format!("a{i:031x}"),
        source: "app".into(),
        ts,
        ingest_ts: ts,
        client_ip: Some(format!("192.0.2.{}", i % 5)),
        http_method: Some("GET".into()),
        app_route: Some("/api/products".into()),
        status: Some(status),
        latency_ms: Some(10.0),
        threat_level: "low".into(),
        ..Event::default()
    }
}

#[tokio::test]
async fn a_copy_with_other_enrichment_counts_once_and_the_first_ingested_copy_wins() {
    let dir = tempfile::tempdir().unwrap();
    let start = us(2026, 11, 29, 5);
    let seen = |e: Event| Event {
        country_iso: Some("KR".into()),
        country_name: Some("South Korea".into()),
        threat_score: 40,
        threat_level: "medium".into(),
        ..e
    };
    let waf_events: Vec<Event> = (0..30)
        .map(|i| seen(waf(i, start + i as i64, "BLOCK")))
        .collect();
    let falco_events: Vec<Event> = (0..12)
        .map(|i| seen(falco(i, start + i as i64, "Critical")))
        .collect();
    let app_events: Vec<Event> = (0..8)
        .map(|i| seen(app(i, start + i as i64, 200)))
        .collect();
    // The hour read again later, after a GeoIP reload and with threat
    // windows rebuilt: the same ids, other enrichment, a later ingest time.
    // Its file name sorts first, so a rule of "the first file listed" would
    // keep it.
    let again = |e: &Event| Event {
        ingest_ts: e.ingest_ts + 3_600_000_000,
        country_iso: Some("US".into()),
        country_name: Some("United States".into()),
        threat_score: 95,
        threat_level: "critical".into(),
        ..e.clone()
    };
    for events in [&waf_events, &falco_events, &app_events] {
        write_file(dir.path(), "b-first.parquet", events, &[]);
        let copies: Vec<Event> = events.iter().map(again).collect();
        write_file(dir.path(), "a-again.parquet", &copies, &[]);
    }
    // A copy ingested at the same instant as the first (a record delivered
    // twice in one batch, scored against different window state): the lower
    // threat score is kept, whichever file holds it.
    let twin = Event {
        threat_score: 10,
        threat_level: "low".into(),
        ..waf_events[0].clone()
    };
    write_file(dir.path(), "c-twin.parquet", &[twin], &[]);

    let lake = open(dir.path()).await;
    let (report, timings) = build_utc(&lake, "2026-11-29").await.unwrap();
    let rows = |name: &str| timings.iter().find(|t| t.name == name).unwrap().rows;
    assert_eq!(
        (rows("waf_day"), rows("falco_day"), rows("app_day")),
        (30, 12, 8),
        "one row per event_id in each day table"
    );
    assert_eq!(report.traffic.requests, 30);
    assert_eq!(report.traffic.blocked, 30);
    assert_eq!(report.falco.alerts, 12);
    assert_eq!(report.app.requests, 8);
    let countries: Vec<(Option<&str>, u64)> = report
        .top_countries
        .iter()
        .map(|c| (c.country_iso.as_deref(), c.requests))
        .collect();
    assert_eq!(countries, [(Some("KR"), 30)]);
    let attackers: Vec<(Option<&str>, u64, i32)> = report
        .top_attackers
        .iter()
        .map(|a| (a.country_iso.as_deref(), a.requests, a.max_threat_score))
        .collect();
    // 198.51.100.0 made requests 0, 7, 14, 21 and 28, once each.
    assert_eq!(attackers[0], (Some("KR"), 5, 40), "{attackers:?}");
    assert!(
        attackers.iter().all(|a| a.0 == Some("KR") && a.2 == 40),
        "{attackers:?}"
    );
    // Request 0 is its twin, scored low; no copy of the second read is kept.
    let levels: Vec<(&str, &str, u64)> = report
        .threat_levels
        .iter()
        .map(|l| (l.source.as_str(), l.threat_level.as_str(), l.events))
        .collect();
    assert_eq!(
        levels,
        [
            ("app", "medium", 8),
            ("falco", "medium", 12),
            ("waf", "low", 1),
            ("waf", "medium", 29),
        ]
    );
}

#[tokio::test]
async fn a_file_written_before_a_column_existed_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let start = us(2026, 11, 29, 7);
    let old: Vec<Event> = (0..5).map(|i| waf(i, start, "ALLOW")).collect();
    write_file(
        dir.path(),
        "old.parquet",
        &old,
        &["ja4", "threat_reasons", "as_org"],
    );
    let new: Vec<Event> = (5..8)
        .map(|i| Event {
            ja4: Some("t13d1516h2_8daaf6152771_b186095e22b6".into()),
            ..waf(i, start, "ALLOW")
        })
        .collect();
    write_file(dir.path(), "new.parquet", &new, &[]);
    let lake = open(dir.path()).await;
    let batches = lake
        .context()
        .sql("SELECT count(*) AS n, count(ja4) AS with_ja4 FROM waf WHERE dt = '2026-11-29'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let rows: Vec<serde_json::Value> = seclake_queries::report::rows("q", &batches).unwrap();
    assert_eq!(rows, [serde_json::json!({"n": 8, "with_ja4": 3})]);
    let (report, _) = build_utc(&lake, "2026-11-29").await.unwrap();
    assert_eq!(report.traffic.requests, 8);
}

#[tokio::test]
async fn a_day_without_data_gives_an_empty_report() {
    let dir = tempfile::tempdir().unwrap();
    three_days(dir.path());
    let lake = open(dir.path()).await;
    let (report, _) = build_utc(&lake, "2026-12-25").await.unwrap();
    assert!(report.empty);
    assert_eq!(report.traffic.requests, 0);
    assert_eq!(report.traffic.blocked_pct, 0.0);
    assert!(report.top_attackers.is_empty());
    assert_eq!(report.timeline.len(), 24);
    assert!(report.timeline.iter().all(|h| h.total == 0));
    assert_eq!(report.app.requests, 0);
}

#[tokio::test]
async fn an_empty_lake_is_an_empty_report_and_a_missing_one_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    let (report, _) = build_utc(&lake, "2026-11-29").await.unwrap();
    assert!(report.empty);

    let missing = dir.path().join("nope");
    let err = Lake::open(missing.to_str().unwrap(), &S3Options::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope") && err.contains("no such directory"),
        "{err}"
    );
    let err = Lake::open("ftp://host/lake", &S3Options::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("lake: unsupported lake URL"), "{err}");
}

#[tokio::test]
async fn an_unreadable_file_fails_the_report_naming_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let start = us(2026, 11, 29, 3);
    write_file(dir.path(), "good.parquet", &[waf(1, start, "ALLOW")], &[]);
    let bad = dir
        .path()
        .join("source=waf/dt=2026-11-29/hour=03/bad.parquet");
    std::fs::write(&bad, b"PAR1 this is not parquet PAR1").unwrap();
    let lake = open(dir.path()).await;
    let err = build_utc(&lake, "2026-11-29")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("query waf_copies: "), "{err}");
}

#[test]
fn every_sql_file_says_what_it_is_and_leaves_no_parameter_unbound() {
    let params = day("2026-11-29", "UTC").params(10, 50);
    for sql in DAY_TABLES.iter().chain(SECTIONS) {
        assert!(sql.text.starts_with("-- "), "{} has a header", sql.name);
        let body: Vec<String> = params
            .bind(sql.text)
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .map(str::to_owned)
            .collect();
        for line in body {
            let outside_literals: String = line.split('\'').step_by(2).collect();
            assert!(
                !outside_literals.contains(':'),
                "{}: unbound parameter in {line:?}",
                sql.name
            );
        }
    }
}
