//! End to end: generated logs → `seclake run` → lake and dead letters, read
//! back with DataFusion.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::dead_letter_lines;
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use seclake::config::Config;
use seclake::pipeline::{RunOptions, run};
use seclake_fixtures::{GenConfig, GenSummary, generate};

fn gen_logs(dir: &Path, scale: f64, gzip: bool) -> GenSummary {
    generate(&GenConfig {
        date: chrono::NaiveDate::from_ymd_opt(2026, 11, 24).expect("valid date"),
        scale,
        seed: 7,
        out: dir.join("logs"),
        gzip,
    })
    .expect("fixtures generate")
}

fn config(dir: &Path, gzip: bool, extra: &str) -> Config {
    let d = dir.display();
    let ext = if gzip { "ndjson.gz" } else { "ndjson" };
    let geo = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/geoip");
    let text = format!(
        r#"
        [[source]]
        type = "file"
        format = "waf"
        path = "{d}/logs/waf.{ext}"

        [[source]]
        type = "file"
        format = "falco"
        path = "{d}/logs/falco.{ext}"

        [[source]]
        type = "file"
        format = "app"
        path = "{d}/logs/app.{ext}"

        [[source]]
        type = "file"
        format = "guardduty"
        path = "{d}/logs/guardduty.{ext}"

        [geoip]
        city = "{geo}/GeoLite2-City-Test.mmdb"
        asn = "{geo}/GeoLite2-ASN-Test.mmdb"

        [lake]
        url = "file://{d}/lake"

        [dlq]
        url = "file://{d}/dlq"
        {extra}
        "#
    );
    Config::parse(&text, "test.toml").expect("config parses")
}

async fn lake_counts(dir: &Path) -> BTreeMap<String, i64> {
    let ctx = SessionContext::new();
    let options = ParquetReadOptions::default().table_partition_cols(vec![
        ("source".into(), DataType::Utf8),
        ("dt".into(), DataType::Utf8),
        ("hour".into(), DataType::Utf8),
    ]);
    ctx.register_parquet("events", &format!("{}/lake/", dir.display()), options)
        .await
        .expect("lake registers");
    let batches = ctx
        .sql("SELECT source, count(*) AS n, count(DISTINCT event_id) AS ids FROM events GROUP BY source")
        .await
        .expect("query plans")
        .collect()
        .await
        .expect("query runs");
    let mut out = BTreeMap::new();
    for b in &batches {
        let sources = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8).expect("cast");
        let sources = sources
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .expect("strings");
        let n = b
            .column(1)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .expect("counts");
        let ids = b
            .column(2)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .expect("counts");
        for i in 0..b.num_rows() {
            out.insert(sources.value(i).to_owned(), n.value(i));
            out.insert(format!("{}_ids", sources.value(i)), ids.value(i));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_good_line_reaches_the_lake_and_every_bad_one_the_dead_letters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = gen_logs(dir.path(), 0.05, false);
    let cfg = config(dir.path(), false, "");
    let summary = tokio::task::spawn_blocking(move || run(&cfg, &RunOptions::default()))
        .await
        .expect("joined")
        .expect("pipeline runs");

    let counts = lake_counts(dir.path()).await;
    let letters = dead_letter_lines(dir.path());
    for file in &generated.files {
        let good = (file.lines - file.malformed) as i64;
        assert!(
            file.malformed > 0,
            "{} has malformed lines to test",
            file.format
        );
        assert_eq!(
            counts[file.format], good,
            "{} rows in the lake",
            file.format
        );
        assert_eq!(
            counts[&format!("{}_ids", file.format)],
            good,
            "{} event ids unique",
            file.format
        );
        let dead = letters
            .iter()
            .filter(|l| l.source.as_str() == file.format)
            .count() as u64;
        assert_eq!(dead, file.malformed, "{} dead letters", file.format);
        let s = summary.formats[file.format];
        assert_eq!((s.events, s.dead_letters), (good as u64, file.malformed));
    }
    // Each dead letter points at its line, which holds exactly the raw bytes.
    for letter in letters.iter().take(20) {
        let origin = letter.position["origin"].as_str().expect("origin");
        let line = letter.position["line"].as_u64().expect("line") as usize;
        let bytes = std::fs::read(origin).expect("source file");
        let original = bytes
            .split(|b| *b == b'\n')
            .nth(line - 1)
            .expect("line exists");
        assert_eq!(letter.raw_bytes().expect("raw"), original);
        assert!(letter.reason.starts_with("invalid"), "{}", letter.reason);
    }
    assert_eq!(summary.undelivered_batches, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_input_gives_the_same_lake_as_plain() {
    let plain_dir = tempfile::tempdir().expect("tempdir");
    let gz_dir = tempfile::tempdir().expect("tempdir");
    gen_logs(plain_dir.path(), 0.01, false);
    gen_logs(gz_dir.path(), 0.01, true);
    let (a, b) = (
        config(plain_dir.path(), false, ""),
        config(gz_dir.path(), true, ""),
    );
    let (sa, sb) = tokio::task::spawn_blocking(move || {
        (
            run(&a, &RunOptions::default()),
            run(&b, &RunOptions::default()),
        )
    })
    .await
    .expect("joined");
    let (sa, sb) = (sa.expect("plain runs"), sb.expect("gzip runs"));
    assert_eq!(sa.formats, sb.formats);
    assert_eq!(
        lake_counts(plain_dir.path()).await,
        lake_counts(gz_dir.path()).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scores_are_the_same_on_every_run_whatever_the_worker_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    gen_logs(dir.path(), 0.05, false);
    // A scanner burst: 400 distinct paths from one address within a minute.
    let burst: String = (0..400)
        .map(|i| {
            format!(
                "{{\"ts\":\"2026-11-24T12:00:{:02}.{i:03}Z\",\"method\":\"GET\",\"path\":\"/probe/{i}\",\"status\":404,\"client_ip\":\"45.155.205.233\"}}\n",
                i * 59 / 400
            )
        })
        .collect();
    let app = dir.path().join("logs/app.ndjson");
    let mut text = std::fs::read_to_string(&app).expect("app log");
    text.push_str(&burst);
    std::fs::write(&app, text).expect("app log written");
    let mut scores = Vec::new();
    for (i, workers) in [1, 3].into_iter().enumerate() {
        let run_dir = dir.path().join(format!("run{i}"));
        std::fs::create_dir_all(&run_dir).expect("mkdir");
        std::os::unix::fs::symlink(dir.path().join("logs"), run_dir.join("logs")).expect("symlink");
        let cfg = config(
            &run_dir,
            false,
            &format!("[pipeline]\nworkers = {workers}\nqueue = 2"),
        );
        tokio::task::spawn_blocking(move || run(&cfg, &RunOptions::default()))
            .await
            .expect("joined")
            .expect("pipeline runs");
        let ctx = SessionContext::new();
        ctx.register_parquet(
            "events",
            &format!("{}/lake/", run_dir.display()),
            ParquetReadOptions::default(),
        )
        .await
        .expect("registers");
        let batches = ctx
            .sql("SELECT event_id, threat_score, threat_level, array_to_string(threat_reasons, ',') AS r FROM events ORDER BY event_id")
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs");
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .expect("formats")
            .to_string();
        scores.push(text);
    }
    assert!(
        scores[0].contains("window."),
        "window rules fire on the fixture's attackers"
    );
    assert_eq!(scores[0], scores[1]);
}
