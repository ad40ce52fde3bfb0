//! The `seclake` binary: config errors, metrics, SIGTERM flushes and exits 0.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_seclake");

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

#[test]
fn validate_names_the_bad_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = "[[source]]\ntype = \"file\"\nformat = \"waff\"\npath = \"x\"\n";
    let config = write_config(dir.path(), source, "");
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
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
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.mmdb"), "{stderr}");
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

/// Polls `check` until it holds or `limit` passes; the pause only paces the polling.
fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A `seclake run` following a file, with its metrics endpoint.
struct Following {
    child: std::process::Child,
    port: u16,
    summary: std::path::PathBuf,
}

impl Following {
    /// Starts `seclake run` on `source` (a `[[source]]` table and extra
    /// sections) with metrics on a free port.
    fn start(dir: &Path, source: &str) -> Following {
        let port = free_port();
        let config = write_config(
            dir,
            source,
            &format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n"),
        );
        let summary = dir.join("summary.json");
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .arg("--summary-json")
            .arg(&summary)
            .stdout(Stdio::null())
            .spawn()
            .expect("starts");
        Following {
            child,
            port,
            summary,
        }
    }

    /// Waits until `/metrics` contains `text`.
    fn metric(&self, text: &str) -> bool {
        wait_for(Duration::from_secs(30), || {
            get(self.port, "/metrics").is_some_and(|m| m.contains(text))
        })
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }

    /// Sends SIGTERM, waits for a successful exit and returns the summary.
    fn terminate(mut self) -> serde_json::Value {
        self.signal("-TERM");
        let mut status = None;
        let exited = wait_for(Duration::from_secs(30), || {
            status = self.child.try_wait().expect("status");
            status.is_some()
        });
        if !exited {
            let _ = self.child.kill();
        }
        assert!(exited, "seclake did not exit after SIGTERM");
        assert!(status.expect("exited").success());
        let text = std::fs::read(&self.summary).expect("summary written");
        serde_json::from_slice(&text).expect("json")
    }
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
    let mut run = Following::start(dir.path(), &source);
    let healthy = wait_for(Duration::from_secs(30), || {
        get(run.port, "/healthz").is_some_and(|r| r.contains("ok"))
    });
    assert!(healthy, "/healthz never answered");
    assert!(
        run.metric("seclake_events_total{source=\"app\"} 500"),
        "the 500 events were never counted"
    );
    // Following: nothing has been committed yet, the process is waiting for more.
    assert!(run.child.try_wait().expect("status").is_none());
    let summary = run.terminate();
    assert_eq!(summary["lake_rows"], 500);
    assert_eq!(summary["sources"]["app"]["events"], 500);
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
    let run = Following::start(dir.path(), &source);
    assert!(
        run.metric("seclake_events_total{source=\"app\"} 200"),
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
        run.metric("seclake_events_total{source=\"app\"} 300"),
        "appended lines never counted"
    );
    let summary = run.terminate();
    assert_eq!(summary["lake_rows"], 300);
}
