//! The `seclake` binary: config errors, metrics, SIGTERM flushes and exits 0.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{BIN, Seclake, dead_letter_lines, free_port, get, wait_for};

fn write_config(dir: &Path, source: &str, extra: &str) -> std::path::PathBuf {
    let d = dir.display();
    let path = dir.join("seclake.toml");
    let text = format!(
        "{source}\n[lake]\nurl = \"file://{d}/lake\"\n\n[dlq]\nurl = \"file://{d}/dlq\"\n{extra}\n"
    );
    std::fs::write(&path, text).expect("config written");
    path
}

fn app_line(i: usize) -> String {
    format!(
        r#"{{"ts":"2026-11-24T10:00:{:02}.{:06}Z","method":"GET","path":"/p/{i}","status":200,"client_ip":"198.51.100.{}"}}"#,
        i % 60,
        i,
        i % 200
    )
}

/// Runs `seclake validate` on `config`, which must fail; its stderr.
fn validate_fails(config: &Path) -> String {
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(config)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn validate_names_the_bad_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = "[[source]]\ntype = \"file\"\nformat = \"waff\"\npath = \"x\"\n";
    let config = write_config(dir.path(), source, "");
    let stderr = validate_fails(&config);
    assert!(
        stderr.contains("source[0].format") || stderr.contains("waff"),
        "{stderr}"
    );
}

#[test]
fn validate_names_a_corrupt_geoip_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("waf.ndjson"), "{}\n").expect("written");
    let bad = dir.path().join("broken.mmdb");
    std::fs::write(&bad, b"this is not a MaxMind database").expect("written");
    let source = format!(
        "[[source]]\ntype = \"file\"\nformat = \"waf\"\npath = \"{}/waf.ndjson\"\n\n[geoip]\ncity = \"{}\"\n",
        dir.path().display(),
        bad.display()
    );
    let config = write_config(dir.path(), &source, "");
    let stderr = validate_fails(&config);
    assert!(stderr.contains("broken.mmdb"), "{stderr}");
}

#[test]
fn validate_names_a_bad_max_future_skew() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = "[[source]]\ntype = \"file\"\nformat = \"waf\"\npath = \"x\"\n";
    let pipeline = "[pipeline]\nmax_future_skew = \"soon\"\n";
    let config = write_config(dir.path(), source, pipeline);
    let stderr = validate_fails(&config);
    assert!(
        stderr.contains("pipeline.max_future_skew") && stderr.contains("\"soon\""),
        "{stderr}"
    );
}

#[test]
fn a_far_future_waf_record_is_a_dead_letter_and_not_in_the_lake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let waf = |ts_ms: i64| {
        format!(
            r#"{{"timestamp":{ts_ms},"action":"ALLOW","httpRequest":{{"clientIp":"198.51.100.7","uri":"/"}}}}"#
        )
    };
    // 3000-01-01T00:00:00Z, in ms.
    let future = waf(32_503_680_000_000);
    let now = waf(chrono::Utc::now().timestamp_millis());
    let log = dir.path().join("waf.ndjson");
    std::fs::write(&log, format!("{now}\n{future}\n")).expect("written");
    let source = format!(
        "[[source]]\ntype = \"file\"\nformat = \"waf\"\npath = \"{}\"\n",
        log.display()
    );
    let port = free_port();
    let config = write_config(dir.path(), &source, &Seclake::metrics_section(port));
    let summary = Seclake::start(&config, port, &[]).wait_success(Duration::from_secs(60));

    assert_eq!(summary["lake_rows"], 1, "{summary}");
    let letters = dead_letter_lines(dir.path());
    assert_eq!(letters.len(), 1, "{letters:?}");
    let reason = &letters[0].reason;
    assert!(
        reason.starts_with("invalid waf record: event time 3000-01-01T00:00:00Z is ")
            && reason.ends_with("; the limit is pipeline.max_future_skew = 1h"),
        "{reason}"
    );
    assert_eq!(letters[0].raw_bytes(), Some(future.into_bytes()));
    assert!(!dir.path().join("lake/source=waf/dt=3000-01-01").exists());
}

/// Starts `seclake run` on `source` (a `[[source]]` table and extra
/// sections) with metrics on a free port.
fn following(dir: &Path, source: &str) -> Seclake {
    let port = free_port();
    let config = write_config(dir, source, &Seclake::metrics_section(port));
    Seclake::start(&config, port, &[])
}

#[test]
fn sigterm_while_following_commits_everything_read_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines: Vec<String> = (0..500).map(app_line).collect();
    std::fs::write(dir.path().join("app.ndjson"), lines.join("\n") + "\n").expect("written");
    let source = format!(
        "[[source]]\ntype = \"file\"\nformat = \"app\"\nfollow = true\npath = \"{}/app.ndjson\"\n",
        dir.path().display()
    );
    let mut run = following(dir.path(), &source);
    let healthy = wait_for(Duration::from_secs(30), || {
        get(run.port, "/healthz").is_some_and(|r| r.contains("ok"))
    });
    assert!(healthy, "/healthz never answered");
    assert!(
        run.metric("seclake_events_total{format=\"app\"} 500"),
        "the 500 events were never counted"
    );
    // Following: nothing has been committed yet, the process is waiting for more.
    assert!(run.child.try_wait().expect("status").is_none());
    let summary = run.terminate();
    assert_eq!(summary["lake_rows"], 500);
    assert_eq!(summary["formats"]["app"]["events"], 500);
}

#[test]
fn sighup_reloads_geoip_without_losing_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let geo = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/geoip");
    let city = dir.path().join("city.mmdb");
    std::fs::copy(format!("{geo}/GeoLite2-City-Test.mmdb"), &city).expect("copied");
    let log = dir.path().join("app.ndjson");
    let first: Vec<String> = (0..200).map(app_line).collect();
    std::fs::write(&log, first.join("\n") + "\n").expect("written");
    let source = format!(
        "[[source]]\ntype = \"file\"\nformat = \"app\"\nfollow = true\npath = \"{}\"\n\n[geoip]\ncity = \"{}\"\n",
        log.display(),
        city.display()
    );
    let run = following(dir.path(), &source);
    assert!(
        run.metric("seclake_events_total{format=\"app\"} 200"),
        "first 200 never counted"
    );

    // Replace the database the way geoipupdate does (new file, then rename), then SIGHUP.
    let staged = dir.path().join("city.mmdb.new");
    std::fs::copy(format!("{geo}/GeoLite2-City-Test.mmdb"), &staged).expect("copied");
    std::fs::rename(&staged, &city).expect("renamed");
    run.signal("-HUP");
    assert!(
        run.metric("seclake_geoip_reloads_total{result=\"ok\"} 1"),
        "reload never counted"
    );

    let more: Vec<String> = (200..300).map(app_line).collect();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open");
    file.write_all((more.join("\n") + "\n").as_bytes())
        .expect("appended");
    drop(file);
    assert!(
        run.metric("seclake_events_total{format=\"app\"} 300"),
        "appended lines never counted"
    );
    let summary = run.terminate();
    assert_eq!(summary["lake_rows"], 300);
}
