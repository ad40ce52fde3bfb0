//! Running the `seclake` binary in tests: a process with its metrics
//! endpoint, signals, and waiting for conditions with a deadline.
#![allow(dead_code)] // each test binary uses its own share of these

pub mod kafka;
pub mod opensearch;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_seclake");

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A plain HTTP GET on 127.0.0.1; the body, or `None` if nothing answers.
pub fn get(port: u16, path: &str) -> Option<String> {
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
pub fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The value of a Prometheus sample whose line starts with `series`
/// (`name{labels}`), summed over every line that does.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    let values: Vec<f64> = metrics
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// A `seclake run` process with metrics on a free port.
pub struct Seclake {
    pub child: Child,
    pub port: u16,
    pub summary: PathBuf,
    /// Where standard error goes when not to the test's own.
    pub stderr: Option<PathBuf>,
}

impl Seclake {
    /// Starts `seclake run --config CONFIG ARGS...`; `CONFIG` must serve
    /// metrics on `port` (see [`Seclake::metrics_section`]).
    pub fn start(config: &Path, port: u16, args: &[&str]) -> Seclake {
        Seclake::spawn(config, port, args, None)
    }

    /// [`Seclake::start`] with standard error kept in a file, for a test
    /// that reads what the process said ([`Seclake::wait_failure`]).
    pub fn start_keeping_stderr(config: &Path, port: u16, args: &[&str]) -> Seclake {
        let stderr = config.with_extension(format!("{port}.stderr"));
        Seclake::spawn(config, port, args, Some(stderr))
    }

    fn spawn(config: &Path, port: u16, args: &[&str], stderr: Option<PathBuf>) -> Seclake {
        let summary = config.with_extension(format!("{port}.summary.json"));
        let mut command = Command::new(BIN);
        if std::env::var_os("RUST_LOG").is_none() {
            // Warnings and errors only: a test's output stays readable.
            command.env("RUST_LOG", "warn");
        }
        let child = command
            .args(["run", "--config"])
            .arg(config)
            .arg("--summary-json")
            .arg(&summary)
            .args(args)
            .stdout(Stdio::null())
            .stderr(match &stderr {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("stderr file")),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("seclake starts");
        Seclake {
            child,
            port,
            summary,
            stderr,
        }
    }

    /// The config section that serves metrics on `port`.
    pub fn metrics_section(port: u16) -> String {
        format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n")
    }

    /// The current `/metrics` text, if the process answers.
    pub fn metrics(&self) -> Option<String> {
        get(self.port, "/metrics")
    }

    /// Waits until `/metrics` contains `text`.
    pub fn metric(&self, text: &str) -> bool {
        wait_for(Duration::from_secs(30), || {
            self.metrics().is_some_and(|m| m.contains(text))
        })
    }

    /// Waits up to `limit` until the summed sample `series` is at least `at_least`.
    pub fn metric_reaches(&self, series: &str, at_least: f64, limit: Duration) -> bool {
        wait_for(limit, || {
            self.metrics()
                .and_then(|m| sample(&m, series))
                .is_some_and(|v| v >= at_least)
        })
    }

    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }

    /// SIGKILL: no flush, no commit, as a crashed pod.
    pub fn kill_hard(mut self) {
        self.child.kill().expect("SIGKILL sent");
        self.child.wait().expect("reaped");
    }

    /// Waits for the process to exit by itself (within `limit`); its exit
    /// must be a success, and the summary is returned.
    pub fn wait_success(mut self, limit: Duration) -> serde_json::Value {
        let status = self.wait_exit(limit);
        assert!(status.success(), "seclake failed: {status}");
        let text = std::fs::read(&self.summary).expect("summary written");
        serde_json::from_slice(&text).expect("json")
    }

    /// Waits for the process to exit by itself (within `limit`) with a
    /// failure, and returns its standard error (started with
    /// [`Seclake::start_keeping_stderr`]).
    pub fn wait_failure(mut self, limit: Duration) -> String {
        let status = self.wait_exit(limit);
        assert!(!status.success(), "seclake exited successfully");
        let path = self.stderr.as_ref().expect("started keeping stderr");
        std::fs::read_to_string(path).expect("stderr readable")
    }

    /// Waits up to `limit` for the process to exit; kills it and fails the
    /// test if it does not.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let mut status = None;
        let exited = wait_for(limit, || {
            status = self.child.try_wait().expect("status");
            status.is_some()
        });
        if !exited {
            let _ = self.child.kill();
        }
        assert!(exited, "seclake did not exit within {limit:?}");
        status.expect("exited")
    }

    /// Sends SIGTERM, waits for a successful exit and returns the summary.
    pub fn terminate(self) -> serde_json::Value {
        self.signal("-TERM");
        self.wait_success(Duration::from_secs(60))
    }
}

/// A test that fails while the process runs leaves no pipeline behind.
impl Drop for Seclake {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every dead letter under `dir/dlq`.
pub fn dead_letter_lines(dir: &Path) -> Vec<seclake_sink::DeadLetterLine> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("dlq")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "ndjson") {
                let text = std::fs::read_to_string(&p).expect("readable");
                out.extend(
                    text.lines()
                        .map(|l| serde_json::from_str(l).expect("valid line")),
                );
            }
        }
    }
    out
}

/// Rows in the lake under `dir/lake` and their distinct event ids; none
/// while there is no lake to read (no file written yet).
pub fn lake_ids(dir: &Path) -> Option<(u64, std::collections::HashSet<String>)> {
    use datafusion::arrow::array::{Array as _, AsArray as _};
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    let lake = dir.join("lake");
    if !lake.exists() {
        return None;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let ctx = SessionContext::new();
        ctx.register_parquet(
            "events",
            &format!("{}/", lake.display()),
            ParquetReadOptions::default(),
        )
        .await
        .ok()?;
        let batches = ctx
            .sql("SELECT event_id FROM events")
            .await
            .ok()?
            .collect()
            .await
            .ok()?;
        let mut rows = 0u64;
        let mut ids = std::collections::HashSet::new();
        for batch in &batches {
            let column = datafusion::arrow::compute::cast(
                batch.column(0),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .ok()?;
            let column = column.as_string::<i32>();
            rows += column.len() as u64;
            for i in 0..column.len() {
                ids.insert(column.value(i).to_owned());
            }
        }
        Some((rows, ids))
    })
}

/// `n` fixture WAF lines of seed `seed`, a day in late November 2026.
pub fn waf_lines(seed: u64, n: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 29).expect("date");
    seclake_fixtures::write_lines(seclake_ingest::Format::Waf, seed, day, n, &mut out)
        .expect("generated");
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}
