//! The Firehose source against a client that follows AWS's delivery
//! specification, with the test as the pipeline: it takes the batches and
//! acknowledges (or fails) them as sinks would.

#[path = "support/firehose_client.rs"]
mod firehose_client;

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use firehose_client::{FirehoseClient, body, new_request_id};
use seclake_ingest::{
    Batch, BatchSender, Finished, Shutdown, SourceConfig, SourceContext, SourceError,
};

const WAIT: Duration = Duration::from_secs(30);

/// A running Firehose source and the end of its batch queue.
struct Endpoint {
    _rt: tokio::runtime::Runtime,
    batches: Receiver<Batch>,
    shutdown: Shutdown,
    thread: Option<JoinHandle<Result<Finished, SourceError>>>,
    url: String,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn config(dir: &Path, port: u16, extra: &str) -> SourceConfig {
    let text = format!(
        "type = \"firehose\"\nformat = \"waf\"\nlisten = \"127.0.0.1:{port}\"\n\
         buffer_dir = \"{}\"\n{extra}",
        dir.display()
    );
    let config: SourceConfig = toml::from_str(&text).expect("config");
    config.spec().check().expect("valid config");
    config
}

impl Endpoint {
    /// Starts the source on `dir` with the extra config lines.
    fn start(dir: &Path, extra: &str) -> Endpoint {
        Endpoint::start_with(dir, extra, false)
    }

    fn start_with(dir: &Path, extra: &str, until_caught_up: bool) -> Endpoint {
        let port = free_port();
        let source = config(dir, port, extra).spec().build().expect("builds");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (tx, batches) = crossbeam_channel::bounded(4);
        let mut ctx = SourceContext::new(BatchSender::new(tx), rt.handle().clone());
        ctx.until_caught_up = until_caught_up;
        let shutdown = ctx.shutdown.clone();
        let thread = std::thread::spawn(move || source.run(&ctx));
        Endpoint {
            _rt: rt,
            batches,
            shutdown,
            thread: Some(thread),
            url: format!("http://127.0.0.1:{port}/"),
        }
    }

    fn client(&self) -> FirehoseClient {
        FirehoseClient::new(&self.url)
    }

    fn next_batch(&self) -> Batch {
        self.batches.recv_timeout(WAIT).expect("a batch arrives")
    }

    /// Stops the source; what `settle` reported as undelivered.
    fn stop(mut self) -> u64 {
        self.shutdown.trigger();
        let finished = self
            .thread
            .take()
            .expect("running")
            .join()
            .expect("no panic")
            .expect("the source ends cleanly");
        finished.outstanding.settle()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The delivery files in the buffer.
fn buffered(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("buffer dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "fhd"))
        .collect();
    files.sort();
    files
}

fn wait_until(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `(text, position)` of every record of a batch.
fn lines(batch: &Batch) -> Vec<(String, String)> {
    (0..batch.len())
        .map(|i| {
            (
                String::from_utf8_lossy(batch.record(i)).into_owned(),
                batch.position(i).to_string(),
            )
        })
        .collect()
}

#[test]
fn a_plain_delivery_is_stored_before_its_200_and_deleted_once_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = Endpoint::start(dir.path(), "access_key = \"s3cr3t\"");
    let client = endpoint.client().key("s3cr3t");
    let (id, answers) = client.deliver(&[b"{\"a\":1}\n", b"{\"b\":2}\n{\"c\":3}\n", b"\n"]);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].status, 200, "{answers:?}");
    // The 200 came after the delivery was on disk.
    assert_eq!(buffered(dir.path()).len(), 1);

    let batch = endpoint.next_batch();
    assert_eq!(
        lines(&batch),
        vec![
            ("{\"a\":1}".into(), format!("firehose:{id}#0")),
            ("{\"b\":2}".into(), format!("firehose:{id}#1")),
            ("{\"c\":3}".into(), format!("firehose:{id}#1")),
        ]
    );
    assert!(!buffered(dir.path()).is_empty(), "kept until the ack");
    drop(batch);
    assert!(
        wait_until(|| buffered(dir.path()).is_empty()),
        "deleted after the ack"
    );
    assert_eq!(endpoint.stop(), 0);
}

#[test]
fn a_gzip_delivery_gives_the_same_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = Endpoint::start(dir.path(), "");
    let (id, answers) = endpoint
        .client()
        .gzipped()
        .deliver(&[b"{\"x\":1}", b"{\"y\":2}"]);
    assert_eq!(answers[0].status, 200, "{answers:?}");
    let batch = endpoint.next_batch();
    assert_eq!(
        lines(&batch),
        vec![
            ("{\"x\":1}".into(), format!("firehose:{id}#0")),
            ("{\"y\":2}".into(), format!("firehose:{id}#1")),
        ]
    );
    drop(batch);
    assert_eq!(endpoint.stop(), 0);
}

#[test]
fn a_wrong_or_missing_key_is_401_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = Endpoint::start(dir.path(), "access_key = \"right-key\"");
    let wrong = endpoint.client().key("wrong-key").deliver(&[b"{}"]).1;
    let near = endpoint.client().key("right-kez").deliver(&[b"{}"]).1;
    let missing = endpoint.client().deliver(&[b"{}"]).1;
    for answers in [&wrong, &near, &missing] {
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].status, 401, "{answers:?}");
    }
    assert!(
        missing[0]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("missing"))
    );
    assert!(buffered(dir.path()).is_empty());
    assert!(endpoint.batches.is_empty());
    assert_eq!(endpoint.stop(), 0);
}

#[test]
fn malformed_bodies_are_400_and_store_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = Endpoint::start(dir.path(), "");
    let client = endpoint.client();
    let id = new_request_id();
    let gzip_header = [("Content-Encoding", "gzip")];
    type Case<'a> = (&'a str, Vec<u8>, &'a [(&'a str, &'a str)]);
    let cases: [Case<'_>; 4] = [
        ("not JSON", b"{\"requestId\": ".to_vec(), &[]),
        (
            "no records",
            format!("{{\"requestId\":\"{id}\",\"timestamp\":1}}").into_bytes(),
            &[],
        ),
        (
            "data not base64",
            format!(
                "{{\"requestId\":\"{id}\",\"timestamp\":1,\"records\":[{{\"data\":\"@@@\"}}]}}"
            )
            .into_bytes(),
            &[],
        ),
        ("gzip header, plain body", body(&id, &[b"{}"]), &gzip_header),
    ];
    for (what, bytes, headers) in cases {
        let answer = client.send(&id, bytes, headers);
        assert_eq!(answer.status, 400, "{what}: {answer:?}");
    }
    let answer = client.send(&id, body(&id, &[b"{}"]), &[("Content-Encoding", "br")]);
    assert_eq!(answer.status, 415, "{answer:?}");
    assert!(buffered(dir.path()).is_empty());
    // An empty delivery is a success with nothing to store.
    let (_, answers) = client.deliver(&[]);
    assert_eq!(answers[0].status, 200);
    assert!(buffered(dir.path()).is_empty());
    assert!(endpoint.batches.is_empty());
    assert_eq!(endpoint.stop(), 0);
}

#[test]
fn an_oversized_body_is_413_compressed_or_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = Endpoint::start(dir.path(), "max_body_bytes = 4096");
    let big = vec![b'x'; 8192];
    let plain = endpoint.client().deliver(&[&big]).1;
    assert_eq!(plain[0].status, 413, "{plain:?}");
    // Small on the wire, beyond the limit once inflated.
    let bomb = endpoint.client().gzipped().deliver(&[&big]).1;
    assert_eq!(bomb[0].status, 413, "{bomb:?}");
    assert!(
        bomb[0]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("decompresses"))
    );
    let (_, fits) = endpoint.client().deliver(&[&big[..1000]]);
    assert_eq!(fits[0].status, 200);
    drop(endpoint.next_batch());
    assert_eq!(endpoint.stop(), 0);
}

#[test]
fn a_sink_failure_turns_new_deliveries_away_and_the_stored_one_comes_back_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = Endpoint::start(dir.path(), "");
    let (id, answers) = endpoint.client().deliver(&[b"{\"n\":1}"]);
    assert_eq!(answers[0].status, 200);
    let batch = endpoint.next_batch();
    batch.ack.fail();
    drop(batch);
    // The health check turns 503 once the source has seen the failure;
    // from then on deliveries are refused, so Firehose keeps them.
    assert!(wait_until(|| {
        reqwest::blocking::get(&endpoint.url).is_ok_and(|r| r.status() == 503)
    }));
    let (_, answers) = endpoint.client().deliver(&[b"{\"n\":2}"]);
    assert_eq!(answers[0].status, 503, "{answers:?}");
    assert!(
        answers[0]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("sink"))
    );
    assert_eq!(buffered(dir.path()).len(), 1, "the failed delivery stays");
    assert_eq!(endpoint.stop(), 1, "one batch undelivered");

    let endpoint = Endpoint::start(dir.path(), "");
    let again = endpoint.next_batch();
    assert_eq!(
        lines(&again),
        vec![("{\"n\":1}".into(), format!("firehose:{id}#0"))]
    );
    drop(again);
    assert!(wait_until(|| buffered(dir.path()).is_empty()));
    assert_eq!(endpoint.stop(), 0);
}

#[test]
fn a_full_buffer_is_503_until_the_sinks_catch_up_then_the_retry_lands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = Endpoint::start(dir.path(), "max_body_bytes = 4096\nbuffer_max_bytes = 4096");
    let record = vec![b'r'; 2000];
    let (_, first) = endpoint.client().deliver(&[&record]);
    assert_eq!(first[0].status, 200);
    let held = endpoint.next_batch();
    let id = new_request_id();
    let full = endpoint.client().deliver_as(&id, &[&record]);
    assert_eq!(full[0].status, 503, "{full:?}");
    assert!(
        full[0]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("full"))
    );
    drop(held);
    assert!(wait_until(|| buffered(dir.path()).is_empty()));
    let retried = endpoint.client().deliver_as(&id, &[&record]);
    assert_eq!(retried[0].status, 200);
    assert_eq!(
        endpoint.next_batch().position(0).to_string(),
        format!("firehose:{id}#0")
    );
    assert_eq!(endpoint.stop(), 0);
}

#[test]
fn a_retry_of_a_delivery_still_buffered_is_not_stored_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = Endpoint::start(dir.path(), "");
    let client = endpoint.client();
    let (id, first) = client.deliver(&[b"{\"once\":1}"]);
    assert_eq!(first[0].status, 200);
    let batch = endpoint.next_batch();
    let again = client.deliver_as(&id, &[b"{\"once\":1}"]);
    assert_eq!(again[0].status, 200);
    assert_eq!(buffered(dir.path()).len(), 1);
    drop(batch);
    assert!(wait_until(|| buffered(dir.path()).is_empty()));
    assert!(endpoint.batches.is_empty(), "no second batch");
    assert_eq!(endpoint.stop(), 0);
}

#[test]
fn until_caught_up_drains_what_an_earlier_run_left_without_listening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = Endpoint::start(dir.path(), "");
    let (id, answers) = endpoint
        .client()
        .deliver(&[b"{\"left\":1}", b"{\"left\":2}"]);
    assert_eq!(answers[0].status, 200);
    let batch = endpoint.next_batch();
    batch.ack.fail();
    drop(batch);
    assert_eq!(endpoint.stop(), 1, "one batch undelivered");

    let drain = Endpoint::start_with(dir.path(), "", true);
    let batch = drain.next_batch();
    assert_eq!(batch.position(1).to_string(), format!("firehose:{id}#1"));
    drop(batch);
    let finished = {
        let mut drain = drain;
        drain
            .thread
            .take()
            .expect("running")
            .join()
            .expect("no panic")
    }
    .expect("ends by itself once drained");
    assert_eq!(finished.stats.records, 2);
    assert_eq!(finished.outstanding.settle(), 0);
    assert!(buffered(dir.path()).is_empty());
}

#[test]
fn https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.pem()).expect("cert written");
    std::fs::write(&key_path, key.serialize_pem()).expect("key written");
    let buffer = dir.path().join("buffer");
    let endpoint = Endpoint::start(
        &buffer,
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"",
            cert_path.display(),
            key_path.display()
        ),
    );
    let http = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).expect("pem"))
        .build()
        .expect("client");
    let url = endpoint
        .url
        .replace("http://127.0.0.1", "https://localhost");
    let (_, answers) = FirehoseClient::with_http(&url, http).deliver(&[b"{\"tls\":1}"]);
    assert_eq!(answers[0].status, 200);
    drop(endpoint.next_batch());
    // Plain HTTP to the TLS port gets no delivery through.
    let plain = reqwest::blocking::Client::new()
        .post(&endpoint.url)
        .body(body(&new_request_id(), &[b"{}"]))
        .send();
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != 200));
    assert_eq!(endpoint.stop(), 0);
}

#[test]
fn an_unreadable_certificate_is_a_build_error_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = dir.path().join("empty.pem");
    std::fs::write(&pem, "").expect("written");
    let port = free_port();
    let config = config(
        &dir.path().join("buffer"),
        port,
        &format!("tls_cert = \"{0}\"\ntls_key = \"{0}\"", pem.display()),
    );
    let err = config.spec().build().err().expect("refused").to_string();
    assert!(err.contains("tls_cert"), "{err}");
    // And a busy port names the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let err = self::config(&dir.path().join("b2"), port, "")
        .spec()
        .build()
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}
