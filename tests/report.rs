//! `report run` and `seclake query` on a generated day: the report's numbers
//! against values computed here from the Parquet files directly (not through
//! SQL), for the lake on a local disk and on S3 (moto).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

use chrono::{NaiveDate, TimeZone, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int32Type, TimestampMicrosecondType};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use seclake::config::Config;
use seclake::pipeline::{RunOptions, run};
use seclake_fixtures::services::unique_name;
use seclake_fixtures::{GenConfig, generate};
use serde_json::Value;

const REPORT: &str = env!("CARGO_BIN_EXE_report");
const DATE: &str = "2026-11-29";

/// A generated day in a lake, the app log loaded twice (as a replay after a
/// crash would), shared by every test of this file.
struct Day {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Day {
    fn lake(&self) -> PathBuf {
        self.root.join("lake")
    }
}

fn day() -> &'static Day {
    static DAY: OnceLock<Day> = OnceLock::new();
    DAY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        generate(&GenConfig {
            date: NaiveDate::parse_from_str(DATE, "%Y-%m-%d").expect("date"),
            scale: 0.2,
            seed: 11,
            out: root.join("logs"),
            gzip: false,
        })
        .expect("fixtures generate");
        let options = RunOptions {
            follow: false,
            progress: false,
            until_caught_up: false,
        };
        run(&config(&root, &["waf", "falco", "app"]), &options).expect("pipeline runs");
        run(&config(&root, &["app"]), &options).expect("replay runs");
        Day { _dir: dir, root }
    })
}

fn config(root: &Path, formats: &[&str]) -> Config {
    let d = root.display();
    let geo = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/geoip");
    let mut text = String::new();
    for f in formats {
        text.push_str(&format!(
            "[[source]]\ntype = \"file\"\nformat = \"{f}\"\npath = \"{d}/logs/{f}.ndjson\"\n"
        ));
    }
    text.push_str(&format!(
        "[geoip]\ncity = \"{geo}/GeoLite2-City-Test.mmdb\"\nasn = \"{geo}/GeoLite2-ASN-Test.mmdb\"\n\
         [lake]\nurl = \"file://{d}/lake\"\n[dlq]\nurl = \"file://{d}/dlq\"\n"
    ));
    Config::parse(&text, "test.toml").expect("config parses")
}

/// Every row of one source in the lake, each event id once, read straight
/// from the Parquet files.
fn rows(lake: &Path, source: &str, columns: &[&str]) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let mut stack = vec![lake.join(format!("source={source}"))];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("lake dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let file = std::fs::File::open(&path).expect("open");
                let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet");
                let schema = builder.parquet_schema();
                let indices: Vec<usize> = columns
                    .iter()
                    .map(|c| {
                        (0..schema.num_columns())
                            .find(|&i| schema.column(i).path().parts()[0] == *c)
                            .expect("column")
                    })
                    .collect();
                let mask = datafusion::parquet::arrow::ProjectionMask::leaves(schema, indices);
                let reader = builder.with_projection(mask).build().expect("reader");
                out.extend(reader.map(|b| b.expect("batch")));
            }
        }
    }
    out
}

/// (event id, ts µs, strings…, numbers…) of each distinct event of the day.
struct Events {
    strings: Vec<Vec<Option<String>>>,
    numbers: Vec<Vec<Option<f64>>>,
}

fn events(source: &str, strings: &[&str], numbers: &[&str]) -> Events {
    let start = Utc
        .from_utc_datetime(
            &NaiveDate::parse_from_str(DATE, "%Y-%m-%d")
                .expect("date")
                .and_hms_opt(0, 0, 0)
                .expect("midnight"),
        )
        .timestamp_micros();
    let end = start + 86_400_000_000;
    let mut columns = vec!["event_id", "ts"];
    columns.extend(strings);
    columns.extend(numbers);
    let mut seen = HashSet::new();
    let mut out = Events {
        strings: Vec::new(),
        numbers: Vec::new(),
    };
    for batch in rows(&day().lake(), source, &columns) {
        let col = |name: &str| {
            batch
                .column(batch.schema().index_of(name).expect("column"))
                .clone()
        };
        let ids = col("event_id");
        let ids = ids.as_string::<i32>();
        let ts = col("ts");
        let ts = ts.as_primitive::<TimestampMicrosecondType>();
        for i in 0..batch.num_rows() {
            if ts.value(i) < start || ts.value(i) >= end || !seen.insert(ids.value(i).to_owned()) {
                continue;
            }
            out.strings.push(
                strings
                    .iter()
                    .map(|s| {
                        let a = col(s);
                        let a = a.as_string::<i32>();
                        a.is_valid(i).then(|| a.value(i).to_owned())
                    })
                    .collect(),
            );
            out.numbers.push(
                numbers
                    .iter()
                    .map(|n| {
                        let a = col(n);
                        if !a.is_valid(i) {
                            return None;
                        }
                        match a.data_type() {
                            datafusion::arrow::datatypes::DataType::Int32 => {
                                Some(f64::from(a.as_primitive::<Int32Type>().value(i)))
                            }
                            _ => Some(a.as_primitive::<Float64Type>().value(i)),
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

/// `percentile_cont`: linear interpolation between the closest ranks.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

fn report(args: &[&str]) -> Output {
    Command::new(REPORT)
        .args(["run", "--date", DATE, "--quiet"])
        .args(args)
        .env_remove("SECLAKE_S3_ENDPOINT")
        .output()
        .expect("report runs")
}

fn report_json(out_dir: &Path, extra: &[&str]) -> Value {
    let lake = day().lake();
    let mut args = vec![
        "--lake",
        lake.to_str().expect("utf-8"),
        "--out",
        out_dir.to_str().expect("utf-8"),
    ];
    args.extend(extra);
    let out = report(&args);
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = out_dir.join(format!("security-report-{DATE}.json"));
    serde_json::from_slice(&std::fs::read(&path).expect("json written")).expect("json parses")
}

fn local_report() -> &'static Value {
    static REPORT_JSON: OnceLock<(tempfile::TempDir, Value)> = OnceLock::new();
    &REPORT_JSON
        .get_or_init(|| {
            let out = tempfile::tempdir().expect("tempdir");
            let json = report_json(out.path(), &[]);
            (out, json)
        })
        .1
}

fn check_numbers(report: &Value) {
    let waf = events("waf", &["action", "client_ip"], &["threat_score"]);
    let mut by_action: BTreeMap<String, u64> = BTreeMap::new();
    let mut attackers: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for (s, n) in waf.strings.iter().zip(&waf.numbers) {
        let action = s[0].clone().unwrap_or_default();
        *by_action.entry(action.clone()).or_default() += 1;
        if let Some(ip) = &s[1] {
            let e = attackers.entry(ip.clone()).or_default();
            if action == "BLOCK" {
                e.0 += 1;
            }
            e.1 = e.1.max(n[0].unwrap_or(0.0));
        }
    }
    let traffic = &report["traffic"];
    assert_eq!(traffic["requests"], waf.strings.len() as u64);
    for (key, action) in [
        ("allowed", "ALLOW"),
        ("blocked", "BLOCK"),
        ("counted", "COUNT"),
        ("captcha", "CAPTCHA"),
        ("challenge", "CHALLENGE"),
    ] {
        assert_eq!(
            traffic[key],
            by_action.get(action).copied().unwrap_or(0),
            "{key}"
        );
    }
    assert!(
        by_action["BLOCK"] > 100,
        "a day with attacks: {by_action:?}"
    );

    let mut top: Vec<(&String, &(u64, f64))> =
        attackers.iter().filter(|(_, (b, _))| *b > 0).collect();
    top.sort_by(|a, b| {
        b.1.0
            .cmp(&a.1.0)
            .then(b.1.1.total_cmp(&a.1.1))
            .then(a.0.cmp(b.0))
    });
    let expected: Vec<(String, u64)> = top
        .iter()
        .take(10)
        .map(|(ip, (b, _))| ((*ip).clone(), *b))
        .collect();
    let got: Vec<(String, u64)> = report["top_attackers"]
        .as_array()
        .expect("attackers")
        .iter()
        .map(|a| {
            (
                a["client_ip"].as_str().expect("ip").to_owned(),
                a["blocked"].as_u64().expect("blocked"),
            )
        })
        .collect();
    assert_eq!(got, expected, "top 10 attackers by blocked requests");

    let app = events("app", &["app_route"], &["latency_ms"]);
    assert_eq!(
        report["app"]["requests"],
        app.strings.len() as u64,
        "app rows once each"
    );
    let mut latencies: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (s, n) in app.strings.iter().zip(&app.numbers) {
        if let (Some(route), Some(ms)) = (&s[0], n[0]) {
            latencies.entry(route.clone()).or_default().push(ms);
        }
    }
    let routes = report["app"]["routes"].as_array().expect("routes");
    assert!(routes.len() >= 5);
    for route in routes {
        let name = route["route"].as_str().expect("route");
        let mut values = latencies[name].clone();
        values.sort_by(f64::total_cmp);
        assert_eq!(route["requests"], values.len() as u64, "{name}");
        let p95 = route["p95_ms"].as_f64().expect("p95");
        let expected = percentile(&values, 0.95);
        // Equal but for float rounding in the interpolation (~1e-9 relative).
        assert!(
            (p95 - expected).abs() <= 1e-6 * expected.max(1.0),
            "{name}: p95 {p95} vs {expected}"
        );
    }

    let falco = events("falco", &["falco_priority"], &[]);
    assert_eq!(report["falco"]["alerts"], falco.strings.len() as u64);
}

#[test]
fn the_report_of_a_local_lake_matches_the_parquet_files() {
    let report = local_report();
    check_numbers(report);
    assert_eq!(report["date"], DATE);
    assert_eq!(report["empty"], false);
    assert_eq!(report["timeline"].as_array().expect("timeline").len(), 24);
    let leaked = report["leaked_credentials"].as_array().expect("leaks");
    assert!(!leaked.is_empty(), "the generator leaks keys");
    for key in leaked {
        let k = key["key_redacted"].as_str().expect("key");
        assert!(
            k.len() == 20 && k.contains("************") && k.starts_with("AKIA"),
            "{k}"
        );
    }
}

#[test]
fn every_format_is_written_and_the_summary_printed() {
    let out = tempfile::tempdir().expect("tempdir");
    let lake = day().lake();
    let run = report(&[
        "--lake",
        lake.to_str().expect("utf-8"),
        "--out",
        out.path().to_str().expect("utf-8"),
        "--format",
        "html,md",
        "--tz",
        "Asia/Seoul",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    for ext in ["html", "md"] {
        let path = out.path().join(format!("security-report-{DATE}.{ext}"));
        assert!(path.is_file(), "{ext} written");
        assert!(stdout.contains(&path.display().to_string()), "{stdout}");
    }
    assert!(
        !out.path()
            .join(format!("security-report-{DATE}.json"))
            .exists()
    );
    assert!(
        std::fs::read_to_string(out.path().join(format!("security-report-{DATE}.html")))
            .expect("html")
            .contains("Asia/Seoul")
    );
}

#[test]
fn a_day_without_data_and_a_missing_lake() {
    let out = tempfile::tempdir().expect("tempdir");
    let lake = day().lake();
    let run = Command::new(REPORT)
        .args(["run", "--date", "2026-12-25", "--quiet", "--lake"])
        .arg(&lake)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("report runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: Value = serde_json::from_slice(
        &std::fs::read(out.path().join("security-report-2026-12-25.json")).expect("json"),
    )
    .expect("parses");
    assert_eq!(json["empty"], true);
    assert_eq!(json["traffic"]["requests"], 0);

    let run = report(&["--lake", "/nonexistent/lake", "--out", "/tmp"]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("/nonexistent/lake") && err.contains("no such directory"),
        "{err}"
    );

    let run = report(&[
        "--lake",
        lake.to_str().expect("utf-8"),
        "--tz",
        "Mars/Olympus",
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("tz: "));
}

#[test]
fn seclake_query_prints_tables_csv_and_json() {
    let lake = day().lake();
    let query = |sql: &str, format: &str| {
        let out = Command::new(common::BIN)
            .args(["query", sql, "--format", format, "--lake"])
            .arg(&lake)
            .env_remove("SECLAKE_S3_ENDPOINT")
            .output()
            .expect("seclake query runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let waf = events("waf", &["action"], &[]);
    let blocked = waf
        .strings
        .iter()
        .filter(|s| s[0].as_deref() == Some("BLOCK"))
        .count();
    let csv = query(
        &format!(
            "SELECT count(DISTINCT event_id) AS n FROM waf WHERE dt = '{DATE}' AND action = 'BLOCK'"
        ),
        "csv",
    );
    assert_eq!(csv, format!("n\n{blocked}\n"));

    let json = query(
        "SELECT source, count(DISTINCT event_id) AS n FROM events GROUP BY source ORDER BY source",
        "json",
    );
    let lines: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson"))
        .collect();
    let sources: Vec<&str> = lines
        .iter()
        .map(|l| l["source"].as_str().expect("source"))
        .collect();
    assert_eq!(sources, ["app", "falco", "waf"]);

    let table = query("SELECT 1 + 1 AS two", "table");
    assert!(
        table.contains("| two |") && table.contains("| 2   |"),
        "{table}"
    );

    let bad = Command::new(common::BIN)
        .args(["query", "SELECT nope FROM waf", "--lake"])
        .arg(&lake)
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"));
}

/// The same lake copied to a moto bucket gives the same report.
#[test]
fn the_report_of_a_lake_on_s3_matches_the_local_one() {
    let Some(endpoint) = seclake_fixtures::services::moto() else {
        return;
    };
    let bucket = unique_name("report");
    let lake = day().lake();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(upload(&endpoint, &bucket, &lake));
    let out = format!("s3://{bucket}/reports");
    let run = Command::new(REPORT)
        .args(["run", "--date", DATE, "--quiet", "--lake"])
        .arg(format!("s3://{bucket}/lake"))
        .args(["--out", &out, "--s3-endpoint", &endpoint])
        .envs(moto_env())
        .output()
        .expect("report runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains(&format!("{out}/security-report-{DATE}.json")),
        "{stdout}"
    );
    let json = runtime.block_on(async {
        let store = store(&endpoint, &bucket);
        let path = object_store::path::Path::from(format!("reports/security-report-{DATE}.json"));
        use object_store::ObjectStoreExt as _;
        store
            .get(&path)
            .await
            .expect("report on s3")
            .bytes()
            .await
            .expect("bytes")
    });
    let mut s3: Value = serde_json::from_slice(&json).expect("json");
    let mut local = local_report().clone();
    for v in [&mut s3, &mut local] {
        v["lake"] = Value::Null;
        v["generated_at"] = Value::Null;
    }
    assert_eq!(s3, local);
}

fn moto_env() -> [(&'static str, &'static str); 3] {
    [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ]
}

fn store(endpoint: &str, bucket: &str) -> Arc<dyn object_store::ObjectStore> {
    Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .expect("s3 store"),
    )
}

/// Creates `bucket` on moto and copies the lake into `lake/` in it.
async fn upload(endpoint: &str, bucket: &str, lake: &Path) {
    let host = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).expect("moto answers");
    use std::io::{Read as _, Write as _};
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "create bucket: {answer}"
    );
    let store = store(endpoint, bucket);
    let mut stack = vec![lake.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let key = format!(
                    "lake/{}",
                    path.strip_prefix(lake).expect("under lake").display()
                );
                use object_store::ObjectStoreExt as _;
                store
                    .put(
                        &object_store::path::Path::from(key),
                        std::fs::read(&path).expect("read").into(),
                    )
                    .await
                    .expect("upload");
            }
        }
    }
}

/// Answers one HTTP request with `status`, and hands its body over.
fn one_shot_receiver(status: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let _ = write!(
            reader.get_mut(),
            "HTTP/1.1 {status}\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops"
        );
        let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
    });
    (port, rx)
}

/// `[report.deliver]` from a config: the S3 upload goes through, the Slack
/// webhook fails; the files are written, the failure named, the exit 3.
#[test]
fn a_failed_delivery_exits_non_zero_after_the_files_are_written() {
    let Some(endpoint) = seclake_fixtures::services::moto() else {
        return;
    };
    let bucket = unique_name("deliver");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let empty = tempfile::tempdir().expect("tempdir");
    runtime.block_on(upload(&endpoint, &bucket, empty.path()));
    let (port, bodies) = one_shot_receiver("500 Internal Server Error");
    let out = tempfile::tempdir().expect("tempdir");
    let config = out.path().join("seclake.toml");
    std::fs::write(
        &config,
        format!(
            "[lake]\nurl = \"file://{lake}\"\n\n[report]\nout = \"{out}\"\nformats = [\"html\", \"md\"]\n\n\
             [report.deliver.s3]\nurl = \"s3://{bucket}/daily\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\n\
             [report.deliver.slack]\nwebhook_url = \"http://127.0.0.1:{port}/hook\"\n",
            lake = day().lake().display(),
            out = out.path().display(),
        ),
    )
    .expect("config");
    let run = Command::new(REPORT)
        .args(["run", "--date", DATE, "--quiet", "--config"])
        .arg(&config)
        .env_remove("SECLAKE_S3_ENDPOINT")
        .envs(moto_env())
        .output()
        .expect("report runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert_eq!(run.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        out.path()
            .join(format!("security-report-{DATE}.html"))
            .is_file()
    );
    assert!(stdout.contains("delivered: "), "{stdout}");
    assert!(stderr.contains("delivery by Slack failed"), "{stderr}");
    let posted = bodies
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("Slack was called");
    assert!(
        posted.contains(&format!("s3://{bucket}/daily/reports/dt={DATE}/")),
        "{posted}"
    );
    let html = runtime.block_on(async {
        use object_store::ObjectStoreExt as _;
        store(&endpoint, &bucket)
            .get(&object_store::path::Path::from(format!(
                "daily/reports/dt={DATE}/security-report-{DATE}.html"
            )))
            .await
            .expect("uploaded")
            .bytes()
            .await
            .expect("bytes")
    });
    assert_eq!(
        html.as_ref(),
        std::fs::read(out.path().join(format!("security-report-{DATE}.html"))).expect("local")
    );
}

/// The README's first command: logs → lake → report, paths printed.
#[test]
fn the_demo_ends_with_the_report_written() {
    let out = tempfile::tempdir().expect("tempdir");
    let run = Command::new(common::BIN)
        .args(["demo", "--scale", "0.05", "--date", DATE, "--out"])
        .arg(out.path())
        .output()
        .expect("demo runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains(&format!("Security report {DATE}")),
        "{stdout}"
    );
    for ext in ["html", "md", "json"] {
        let path = out
            .path()
            .canonicalize()
            .expect("out")
            .join(format!("reports/security-report-{DATE}.{ext}"));
        assert!(path.is_file(), "{} written", path.display());
        assert!(
            stdout.contains(&format!("report: {}", path.display())),
            "{stdout}"
        );
    }
    // The config the demo leaves serves `report run --config` as it is.
    let again = Command::new(REPORT)
        .args([
            "run", "--date", DATE, "--quiet", "--format", "json", "--config",
        ])
        .arg(out.path().join("seclake.toml"))
        .env_remove("SECLAKE_S3_ENDPOINT")
        .output()
        .expect("report runs");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
