//! `seclake backfill opensearch` against the real OpenSearch node: a lake
//! written by the pipeline alone is re-indexed, once, twice, with every
//! event stored twice, from S3, and the documents are the pipeline's own.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::opensearch::{Indices, call, count, count_matching};
use common::{BIN, Seclake, free_port};
use serde_json::{Value, json};

const DATE: &str = "2026-11-25";

/// `[[source]]` entries generating `counts` events of each format on [`DATE`].
fn sources(counts: &[(&str, u64)]) -> String {
    counts
        .iter()
        .map(|(format, count)| {
            format!(
                "[[source]]\ntype = \"generate\"\nformat = \"{format}\"\ncount = {count}\n\
                 seed = 7\ndate = \"{DATE}\"\n"
            )
        })
        .collect()
}

/// The lake and dead-letter sections for a lake under `dir` (or `lake_url`).
fn stores(dir: &Path, lake: &str) -> String {
    format!(
        "[lake]\n{lake}\nmax_file_age_secs = 1\n\
         [dlq]\nurl = \"file://{}/dlq\"\nmax_file_age_secs = 1\n",
        dir.display()
    )
}

fn local_lake(dir: &Path) -> String {
    format!("url = \"file://{}/lake\"", dir.display())
}

/// The `[opensearch]` section for `prefix`.
fn opensearch(base: &str, prefix: &str) -> String {
    format!("[opensearch]\nurl = \"{base}\"\nindex_prefix = \"{prefix}\"\n")
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("config written");
    path
}

/// Runs the pipeline on `config` to its end; the rows it wrote to the lake.
fn pipeline(config: &Path) -> u64 {
    let port = free_port();
    let text = std::fs::read_to_string(config).expect("config");
    let with_metrics = config.with_extension(format!("{port}.toml"));
    std::fs::write(
        &with_metrics,
        format!("{text}{}", Seclake::metrics_section(port)),
    )
    .expect("config");
    let summary = Seclake::start(&with_metrics, port, &[]).wait_success(Duration::from_secs(300));
    summary["lake_rows"].as_u64().expect("lake rows")
}

/// `seclake backfill opensearch --date DATE --config CONFIG ARGS…`.
fn backfill(config: &Path, date: &str, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "warn");
    }
    command
        .args(["backfill", "opensearch", "--date", date, "--config"])
        .arg(config)
        .args(args)
        .output()
        .expect("seclake runs")
}

/// A backfill that must succeed; its standard output.
fn backfill_ok(config: &Path, args: &[&str]) -> String {
    let out = backfill(config, DATE, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "backfill failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number in the summary line starting with `label` (`waf`, `total`)
/// in column `column` (1 = files, 2 = rows read).
fn table_value(summary: &str, label: &str, column: usize) -> u64 {
    summary
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label))
        .and_then(|l| l.split_whitespace().nth(column))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label} row in:\n{summary}"))
}

/// Documents indexed, from the summary's `opensearch:` line.
fn indexed(summary: &str) -> u64 {
    summary
        .lines()
        .find_map(|l| l.strip_prefix("opensearch: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no opensearch line in:\n{summary}"))
}

#[test]
fn a_day_of_the_lake_is_indexed_once_per_event_and_a_second_backfill_changes_nothing() {
    let Some(base) = common::opensearch::url() else {
        return;
    };
    let indices = Indices::new(&base);
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = sources(&[("waf", 20_000), ("falco", 3_000), ("app", 10_000)]);
    let lake_only = write_config(
        dir.path(),
        "lake.toml",
        &format!("{generated}{}", stores(dir.path(), &local_lake(dir.path()))),
    );
    let rows = pipeline(&lake_only);
    assert!(rows > 30_000, "{rows} rows");
    assert_eq!(
        count(&base, &indices.prefix),
        0,
        "the pipeline indexed nothing"
    );

    let config = write_config(
        dir.path(),
        "backfill.toml",
        &format!(
            "{generated}{}{}",
            stores(dir.path(), &local_lake(dir.path())),
            opensearch(&base, &indices.prefix)
        ),
    );
    // One source first: only its documents.
    let waf_only = backfill_ok(&config, &["--sources", "waf"]);
    let waf_rows = table_value(&waf_only, "waf", 2);
    assert!(waf_rows > 19_000, "{waf_only}");
    assert_eq!(table_value(&waf_only, "total", 2), waf_rows, "{waf_only}");
    assert_eq!(count(&base, &indices.prefix), waf_rows);

    let summary = backfill_ok(&config, &[]);
    assert_eq!(table_value(&summary, "total", 2), rows, "{summary}");
    assert_eq!(indexed(&summary), rows, "{summary}");
    assert!(
        summary.contains("0 dead-lettered, 0 backed up"),
        "{summary}"
    );
    assert_eq!(
        count(&base, &indices.prefix),
        rows,
        "one document per event"
    );
    for format in ["waf", "falco", "app"] {
        let read = table_value(&summary, format, 2);
        assert!(table_value(&summary, format, 1) > 0, "{summary}");
        let index = format!("{}-{format}-2026.11.25", indices.prefix);
        let (status, body) = call("GET", &format!("{base}/{index}/_count"), None);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["count"].as_u64(),
            Some(read),
            "{format}: the day's index holds the day's rows"
        );
        assert_eq!(
            count_matching(&base, &indices.prefix, json!({"term": {"source": format}})),
            read,
            "{format}: documents carry the partition's source"
        );
    }

    let again = backfill_ok(&config, &[]);
    assert_eq!(indexed(&again), rows, "{again}");
    assert_eq!(
        count(&base, &indices.prefix),
        rows,
        "a second backfill overwrote its own documents"
    );
}

#[test]
fn a_lake_holding_every_event_twice_gives_one_document_per_distinct_event() {
    let Some(base) = common::opensearch::url() else {
        return;
    };
    let indices = Indices::new(&base);
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = sources(&[("waf", 5_000), ("app", 5_000)]);
    let lake_only = write_config(
        dir.path(),
        "lake.toml",
        &format!("{generated}{}", stores(dir.path(), &local_lake(dir.path()))),
    );
    let first = pipeline(&lake_only);
    let second = pipeline(&lake_only);
    assert_eq!(first, second, "the same seed makes the same events");

    let config = write_config(
        dir.path(),
        "backfill.toml",
        &format!(
            "{generated}{}{}",
            stores(dir.path(), &local_lake(dir.path())),
            opensearch(&base, &indices.prefix)
        ),
    );
    let summary = backfill_ok(&config, &[]);
    assert_eq!(table_value(&summary, "total", 2), 2 * first, "{summary}");
    assert_eq!(
        count(&base, &indices.prefix),
        first,
        "each event once, by _id = event_id"
    );
}

#[test]
fn the_backfill_indexes_the_very_documents_the_pipeline_indexes() {
    let Some(base) = common::opensearch::url() else {
        return;
    };
    let live = Indices::new(&base);
    let backfilled = Indices::new(&base);
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = sources(&[("waf", 2_000), ("falco", 1_000), ("app", 2_000)]);
    let with_sink = write_config(
        dir.path(),
        "pipeline.toml",
        &format!(
            "{generated}{}{}",
            stores(dir.path(), &local_lake(dir.path())),
            opensearch(&base, &live.prefix)
        ),
    );
    let rows = pipeline(&with_sink);
    assert_eq!(count(&base, &live.prefix), rows);

    let config = write_config(
        dir.path(),
        "backfill.toml",
        &format!(
            "{generated}{}{}",
            stores(dir.path(), &local_lake(dir.path())),
            opensearch(&base, &backfilled.prefix)
        ),
    );
    backfill_ok(&config, &[]);
    assert_eq!(count(&base, &backfilled.prefix), rows);

    let documents = |prefix: &str| -> Vec<(String, Value)> {
        let (status, body) = call(
            "POST",
            &format!("{base}/{prefix}-*/_search"),
            Some(json!({"size": 300, "sort": [{"event_id": "asc"}]})),
        );
        assert_eq!(status, 200, "{body}");
        body["hits"]["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .map(|hit| {
                let index = hit["_index"].as_str().expect("index");
                let day_index = index.strip_prefix(prefix).expect("prefixed").to_owned();
                (day_index, hit["_source"].clone())
            })
            .collect()
    };
    let (pipeline_docs, backfill_docs) = (documents(&live.prefix), documents(&backfilled.prefix));
    assert_eq!(pipeline_docs.len(), 300);
    assert_eq!(
        pipeline_docs, backfill_docs,
        "same indices (but the prefix), same ids, same documents"
    );
}

#[test]
fn a_lake_on_s3_is_read_from_its_bucket() {
    let Some(base) = common::opensearch::url() else {
        return;
    };
    let Some(s3) = seclake_fixtures::services::moto_with_credentials() else {
        return;
    };
    let indices = Indices::new(&base);
    let bucket = seclake_fixtures::services::unique_name("seclake-backfill");
    seclake_fixtures::services::create_bucket(&s3, &bucket);
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = sources(&[("falco", 3_000)]);
    let lake = format!("url = \"s3://{bucket}/lake\"\nendpoint = \"{s3}\"\nregion = \"us-east-1\"");
    let lake_only = write_config(
        dir.path(),
        "lake.toml",
        &format!("{generated}{}", stores(dir.path(), &lake)),
    );
    let rows = pipeline(&lake_only);
    let config = write_config(
        dir.path(),
        "backfill.toml",
        &format!(
            "{generated}{}{}",
            stores(dir.path(), &lake),
            opensearch(&base, &indices.prefix)
        ),
    );
    let summary = backfill_ok(&config, &[]);
    assert_eq!(table_value(&summary, "falco", 2), rows, "{summary}");
    assert_eq!(table_value(&summary, "waf", 1), 0, "{summary}");
    assert_eq!(count(&base, &indices.prefix), rows);
}

#[test]
fn a_day_the_lake_has_no_partitions_of_fails_saying_there_is_nothing_to_index() {
    let Some(base) = common::opensearch::url() else {
        return;
    };
    let indices = Indices::new(&base);
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = sources(&[("app", 1_000)]);
    let lake_only = write_config(
        dir.path(),
        "lake.toml",
        &format!("{generated}{}", stores(dir.path(), &local_lake(dir.path()))),
    );
    pipeline(&lake_only);
    let config = write_config(
        dir.path(),
        "backfill.toml",
        &format!(
            "{generated}{}{}",
            stores(dir.path(), &local_lake(dir.path())),
            opensearch(&base, &indices.prefix)
        ),
    );
    for (date, args) in [
        ("2026-11-26", &[][..]),
        (DATE, &["--sources", "waf,falco"][..]),
    ] {
        let out = backfill(&config, date, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{date} {args:?}: {stderr}");
        assert!(
            stderr.contains("nothing to index") && stderr.contains(date),
            "{stderr}"
        );
    }
    let (status, templates) = call(
        "GET",
        &format!("{base}/_index_template/{}-events", indices.prefix),
        None,
    );
    assert_eq!(status, 404, "nothing was installed: {templates}");
    assert_eq!(count(&base, &indices.prefix), 0);

    let out = backfill(&config, "2026-11-31", &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap refuses a date that isn't one"
    );
    let out = backfill(&config, DATE, &["--sources", "nginx"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses an unknown source");
}

#[test]
fn a_config_without_an_opensearch_section_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "lake.toml",
        &format!(
            "{}{}",
            sources(&[("app", 10)]),
            stores(dir.path(), &local_lake(dir.path()))
        ),
    );
    let out = backfill(&config, DATE, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("[opensearch]"), "{stderr}");
}

#[test]
fn a_missing_local_lake_is_an_error_and_is_not_created() {
    let Some(base) = common::opensearch::url() else {
        return;
    };
    let indices = Indices::new(&base);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "backfill.toml",
        &format!(
            "{}{}{}",
            sources(&[("app", 10)]),
            stores(dir.path(), &local_lake(dir.path())),
            opensearch(&base, &indices.prefix)
        ),
    );
    let out = backfill(&config, DATE, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no such directory"), "{stderr}");
    assert!(!dir.path().join("lake").exists());
}

#[test]
fn a_file_that_cannot_be_read_stops_the_backfill_which_still_reports_what_it_indexed() {
    let Some(base) = common::opensearch::url() else {
        return;
    };
    let indices = Indices::new(&base);
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = sources(&[("waf", 2_000), ("app", 2_000)]);
    let lake_only = write_config(
        dir.path(),
        "lake.toml",
        &format!("{generated}{}", stores(dir.path(), &local_lake(dir.path()))),
    );
    let rows = pipeline(&lake_only);
    // The last file read: app comes last, hour 23, and `z` after any uuid.
    let hour = dir
        .path()
        .join(format!("lake/source=app/dt={DATE}/hour=23"));
    std::fs::create_dir_all(&hour).expect("hour");
    std::fs::write(hour.join("part-zzzz.parquet"), b"not parquet at all").expect("written");

    let config = write_config(
        dir.path(),
        "backfill.toml",
        &format!(
            "{generated}{}{}",
            stores(dir.path(), &local_lake(dir.path())),
            opensearch(&base, &indices.prefix)
        ),
    );
    let out = backfill(&config, DATE, &[]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("hour=23/part-zzzz.parquet"),
        "the error names the file: {stderr}"
    );
    assert_eq!(table_value(&stdout, "total", 2), rows, "{stdout}");
    assert_eq!(indexed(&stdout), rows, "{stdout}");
    assert!(stdout.contains("incomplete"), "{stdout}");
    assert_eq!(
        count(&base, &indices.prefix),
        rows,
        "what was read before the bad file is indexed"
    );
}
