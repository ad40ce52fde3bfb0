//! The OpenSearch sink against the real node `scripts/services up` starts:
//! counts, replays, refused documents, busy and failing clusters, outages.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use common::opensearch::{Indices, Mode, Proxy, call, count, count_matching};
use common::{Seclake, dead_letter_lines, free_port};
use serde_json::{Value, json};

/// The outage test stops the node; every other test holds it up meanwhile.
static NODE: RwLock<()> = RwLock::new(());

fn shared_node() -> RwLockReadGuard<'static, ()> {
    NODE.read().unwrap_or_else(|e| e.into_inner())
}

fn whole_node() -> RwLockWriteGuard<'static, ()> {
    NODE.write().unwrap_or_else(|e| e.into_inner())
}

/// A pipeline config: `sources` (TOML `[[source]]` entries), the lake and
/// dead letters under `dir`, OpenSearch at `url` with `prefix` and `extra`
/// keys, metrics on `port`.
fn config(
    dir: &Path,
    sources: &str,
    url: &str,
    prefix: &str,
    extra: &str,
    port: u16,
) -> std::path::PathBuf {
    let d = dir.display();
    let text = format!(
        "{sources}\n[lake]\nurl = \"file://{d}/lake\"\nmax_file_age_secs = 1\n\
         [dlq]\nurl = \"file://{d}/dlq\"\nmax_file_age_secs = 1\n\
         [opensearch]\nurl = \"{url}\"\nindex_prefix = \"{prefix}\"\n{extra}\n{}",
        Seclake::metrics_section(port)
    );
    let path = dir.join(format!("seclake-{port}.toml"));
    std::fs::write(&path, text).expect("config written");
    path
}

fn generate(format: &str, count: u64, rate: Option<&str>) -> String {
    let rate = rate
        .map(|r| format!("rate = \"{r}\"\n"))
        .unwrap_or_default();
    format!(
        "[[source]]\ntype = \"generate\"\nformat = \"{format}\"\ncount = {count}\nseed = 11\n\
         date = \"2026-11-25\"\n{rate}"
    )
}

/// Runs the pipeline to its end; the run summary.
fn run_to_end(config: &Path, limit: Duration) -> Value {
    Seclake::start(config, metrics_port(config), &[]).wait_success(limit)
}

/// The metrics port a [`config`] serves on (free again once its run ended).
fn metrics_port(config: &Path) -> u16 {
    let text = std::fs::read_to_string(config).expect("config");
    let (_, port) = text.rsplit_once("127.0.0.1:").expect("a metrics address");
    port.trim_end()
        .trim_end_matches('"')
        .parse()
        .expect("a port")
}

fn lake_rows(summary: &Value) -> u64 {
    summary["lake_rows"].as_u64().expect("lake rows")
}

#[test]
fn a_million_events_are_indexed_once_each_and_a_replay_leaves_the_count_unchanged() {
    let Some(base) = common::opensearch::url() else {
        return;
    };
    let _node = shared_node();
    let indices = Indices::new(&base);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        &generate("app", 1_000_000, None),
        &base,
        &indices.prefix,
        "",
        free_port(),
    );
    let first = run_to_end(&cfg, Duration::from_secs(1200));
    let rows = lake_rows(&first);
    assert!(rows > 990_000, "{first}");
    assert_eq!(
        count(&base, &indices.prefix),
        rows,
        "one document per event"
    );
    assert_eq!(first["sinks"]["opensearch"]["rows"], rows);

    let again = run_to_end(&cfg, Duration::from_secs(1200));
    assert_eq!(lake_rows(&again), rows);
    assert_eq!(
        count(&base, &indices.prefix),
        rows,
        "the replay overwrote its own documents"
    );

    let (status, mapping) = call(
        "GET",
        &format!("{base}/{}-*/_mapping", indices.prefix),
        None,
    );
    assert_eq!(status, 200, "{mapping}");
    let (_, index) = mapping
        .as_object()
        .and_then(|m| m.iter().next())
        .expect("an index");
    let fields = &index["mappings"]["properties"];
    assert_eq!(fields["client_ip"]["type"], "ip");
    assert_eq!(fields["location"]["type"], "geo_point");
    assert_eq!(fields["ts"]["type"], "date");
    assert_eq!(fields["headers"]["type"], "flat_object");
    let cidr = |range: &str| {
        count_matching(
            &base,
            &indices.prefix,
            json!({"term": {"client_ip": range}}),
        )
    };
    let without = count_matching(
        &base,
        &indices.prefix,
        json!({"bool": {"must_not": {"exists": {"field": "client_ip"}}}}),
    );
    assert!(cidr("0.0.0.0/0") > 0, "IPv4 ranges match");
    assert_eq!(
        cidr("::/0") + without,
        rows,
        "client_ip answers CIDR queries as an ip field (IPv4 inside ::/0)"
    );
}

#[test]
fn a_document_that_cannot_be_mapped_is_a_dead_letter_and_its_batch_is_indexed() {
    let Some(base) = common::opensearch::url() else {
        return;
    };
    let _node = shared_node();
    let indices = Indices::new(&base);
    // Higher priority than seclake's own template: order ids are forced to numbers.
    let (status, body) = call(
        "PUT",
        &format!("{base}/_index_template/{}-test", indices.prefix),
        Some(json!({
            "index_patterns": [format!("{}-*", indices.prefix)],
            "priority": 500,
            "template": {"mappings": {"properties": {"order_id": {"type": "long"}}}}
        })),
    );
    assert_eq!(status, 200, "{body}");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        &generate("app", 3000, None),
        &base,
        &indices.prefix,
        "",
        free_port(),
    );
    let summary = run_to_end(&cfg, Duration::from_secs(300));
    let rows = lake_rows(&summary);

    let refused: Vec<_> = dead_letter_lines(dir.path())
        .into_iter()
        .filter(|l| l.position["kind"] == "opensearch")
        .collect();
    let indexed = count(&base, &indices.prefix);
    assert!(!refused.is_empty() && indexed > 0, "{summary}");
    assert_eq!(
        indexed + refused.len() as u64,
        rows,
        "every event is in one place"
    );
    assert_eq!(
        summary["sinks"]["opensearch"]["dead_lettered"],
        refused.len()
    );
    for letter in &refused {
        assert!(
            letter.reason.contains("mapper_parsing_exception")
                && letter.reason.contains("order_id"),
            "{}",
            letter.reason
        );
        let document: Value =
            serde_json::from_str(letter.raw.as_deref().expect("the document")).expect("json");
        assert_eq!(document["event_id"], letter.position["id"]);
        assert!(document["order_id"].is_string());
        let index = letter.position["index"].as_str().expect("index");
        assert!(
            index.starts_with(&format!("{}-app-", indices.prefix)),
            "{index}"
        );
        assert_eq!(letter.position["status"], 400);
    }
    assert_eq!(
        count_matching(
            &base,
            &indices.prefix,
            json!({"exists": {"field": "order_id"}})
        ),
        0,
        "no document with an order id was indexed"
    );
}

#[test]
fn items_refused_with_429_are_retried_alone_and_reach_the_node_once_each() {
    let Some(base) = common::opensearch::url() else {
        return;
    };
    let _node = shared_node();
    let indices = Indices::new(&base);
    let proxy = Proxy::start(&base);
    proxy.set(Mode::Busy);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        &generate("waf", 6000, None),
        &proxy.url,
        &indices.prefix,
        "bulk_docs = 1000",
        free_port(),
    );
    let summary = run_to_end(&cfg, Duration::from_secs(300));
    let rows = lake_rows(&summary);
    assert_eq!(count(&base, &indices.prefix), rows);

    let refused = proxy.refused();
    let forwarded = proxy.forwarded();
    assert!(
        refused.len() as u64 >= rows / 3,
        "{} refused",
        refused.len()
    );
    assert_eq!(
        forwarded.len() as u64,
        rows,
        "every document reached the node"
    );
    assert!(
        forwarded.values().all(|n| *n == 1),
        "no document was sent to the node twice: only refused items were retried"
    );
    assert!(summary["sinks"]["opensearch"]["retried"].as_u64() >= Some(refused.len() as u64));
    assert_eq!(summary["sinks"]["opensearch"].get("backed_up"), None);
}

#[test]
fn an_outage_longer_than_max_retry_secs_puts_the_missing_documents_in_the_s3_backup() {
    let Some(base) = common::opensearch::url() else {
        return;
    };
    let Some(s3) = seclake_fixtures::services::moto_with_credentials() else {
        return;
    };
    let _node = shared_node();
    let indices = Indices::new(&base);
    let bucket = seclake_fixtures::services::unique_name("seclake-os-backup");
    seclake_fixtures::services::create_bucket(&s3, &bucket);
    let proxy = Proxy::start(&base);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg = config(
        dir.path(),
        &generate("waf", 20_000, Some("4k/s")),
        &proxy.url,
        &indices.prefix,
        &format!(
            "max_retry_secs = 3\nbulk_docs = 500\nbulk_linger_ms = 200\n\
             backup_url = \"s3://{bucket}/opensearch-failed\"\n\
             [opensearch.backup]\nendpoint = \"{s3}\"\nregion = \"us-east-1\""
        ),
        port,
    );
    let run = Seclake::start(&cfg, port, &[]);
    assert!(
        run.metric_reaches(
            "seclake_opensearch_documents_total{outcome=\"indexed\"}",
            1000.0,
            Duration::from_secs(120)
        ),
        "documents were indexed before the outage"
    );
    proxy.set(Mode::Down);
    let summary = run.wait_success(Duration::from_secs(300));
    let rows = lake_rows(&summary);
    let indexed = count(&base, &indices.prefix);

    let backed_up = backup_ids(&s3, &bucket);
    assert!(!backed_up.is_empty(), "the outage outlasted max_retry_secs");
    assert_eq!(
        indexed + backed_up.len() as u64,
        rows,
        "indexed and backed-up documents add up to the input"
    );
    assert_eq!(summary["sinks"]["opensearch"]["backed_up"], backed_up.len());
    let sample: Vec<&String> = backed_up.iter().take(500).collect();
    assert_eq!(
        count_matching(
            &base,
            &indices.prefix,
            json!({"terms": {"event_id": sample}})
        ),
        0,
        "a backed-up document is not also indexed"
    );
}

/// The event ids in every backup object under `opensearch-failed/`; each line
/// names its index, id and error and carries the document.
fn backup_ids(endpoint: &str, bucket: &str) -> Vec<String> {
    use futures::TryStreamExt as _;
    use object_store::aws::AmazonS3Builder;
    use object_store::{ObjectStore as _, ObjectStoreExt as _};
    let store = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .expect("store");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let prefix = object_store::path::Path::from("opensearch-failed");
        let objects: Vec<_> = store
            .list(Some(&prefix))
            .try_collect()
            .await
            .expect("listed");
        let mut ids = Vec::new();
        for object in objects {
            assert!(
                object.location.as_ref().ends_with(".ndjson"),
                "{}",
                object.location
            );
            let bytes = store
                .get(&object.location)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("body");
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let entry: Value = serde_json::from_slice(line).expect("json line");
                let id = entry["id"].as_str().expect("id").to_owned();
                assert_eq!(entry["document"]["event_id"], id.as_str());
                assert!(
                    entry["error"].as_str().is_some_and(|e| e.contains("503")),
                    "{entry}"
                );
                assert!(entry["index"].as_str().is_some_and(|i| i.contains("-waf-")));
                ids.push(id);
            }
        }
        ids
    })
}

/// Stops the shared node on drop if it is down, so a failing test leaves it up.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = services("up");
    }
}

fn services(verb: &str) -> bool {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services"))
        .args([verb, "opensearch"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn opensearch_stopped_for_30_seconds_mid_run_loses_nothing() {
    let Some(base) = common::opensearch::url() else {
        return;
    };
    let _node = whole_node();
    let indices = Indices::new(&base);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg = config(
        dir.path(),
        &generate("waf", 60_000, Some("2k/s")),
        &base,
        &indices.prefix,
        "bulk_docs = 1000\nbulk_linger_ms = 200",
        port,
    );
    let run = Seclake::start(&cfg, port, &[]);
    assert!(
        run.metric_reaches(
            "seclake_opensearch_documents_total{outcome=\"indexed\"}",
            5000.0,
            Duration::from_secs(120)
        ),
        "documents were indexed before the outage"
    );
    let restart = Restart;
    assert!(services("down"), "scripts/services down opensearch");
    // The outage itself: the pipeline keeps reading and retrying meanwhile.
    std::thread::sleep(Duration::from_secs(30));
    assert!(services("up"), "scripts/services up opensearch");
    drop(restart);
    let summary = run.wait_success(Duration::from_secs(600));
    let rows = lake_rows(&summary);
    assert_eq!(
        count(&base, &indices.prefix),
        rows,
        "every event is indexed"
    );
    let opensearch = &summary["sinks"]["opensearch"];
    assert_eq!(opensearch.get("backed_up"), None, "{opensearch}");
    assert!(opensearch["retried"].as_u64() > Some(0), "{opensearch}");
}

#[test]
fn a_data_stream_takes_each_event_once_however_often_it_is_delivered() {
    let Some(base) = common::opensearch::url() else {
        return;
    };
    let _node = shared_node();
    let indices = Indices::new(&base);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        &generate("falco", 3000, None),
        &base,
        &indices.prefix,
        "mode = \"data_stream\"",
        free_port(),
    );
    let first = run_to_end(&cfg, Duration::from_secs(300));
    let rows = lake_rows(&first);
    assert_eq!(count(&base, &indices.prefix), rows);
    let again = run_to_end(&cfg, Duration::from_secs(300));
    assert_eq!(
        count(&base, &indices.prefix),
        rows,
        "re-deliveries answered 409 and were settled"
    );
    assert_eq!(
        again["sinks"]["opensearch"].get("dead_lettered"),
        None,
        "{again}"
    );
    let (status, streams) = call(
        "GET",
        &format!("{base}/_data_stream/{}-falco", indices.prefix),
        None,
    );
    assert_eq!(status, 200, "{streams}");
    assert_eq!(streams["data_streams"][0]["timestamp_field"]["name"], "ts");
}

#[test]
fn retention_deletes_only_seclakes_daily_indices_older_than_retention_days() {
    let Some(base) = common::opensearch::url() else {
        return;
    };
    let _node = shared_node();
    let indices = Indices::new(&base);
    let p = &indices.prefix;
    let old = format!("{p}-waf-2020.01.01");
    let not_ours = format!("{p}-notes-2020.01.01");
    for index in [&old, &not_ours] {
        let (status, body) = call("PUT", &format!("{base}/{index}"), None);
        assert_eq!(status, 200, "{body}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        &generate("waf", 500, None),
        &base,
        p,
        "retention_days = 30",
        free_port(),
    );
    let summary = run_to_end(&cfg, Duration::from_secs(300));
    let exists = |index: &str| call("HEAD", &format!("{base}/{index}"), None).0 == 200;
    assert!(!exists(&old), "an index 30+ days old is deleted");
    assert!(exists(&not_ours), "an index seclake did not name is kept");
    assert!(
        exists(&format!("{p}-waf-2026.11.25")),
        "the day just indexed is kept"
    );
    assert_eq!(count(&base, p), lake_rows(&summary));
}

/// The path and the `authorization|x-amz-content-sha256` headers of each request.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A server in front of nothing that answers like OpenSearch and keeps the
/// `authorization` header and path of every request.
fn signature_recorder() -> (String, Seen, tokio::runtime::Runtime) {
    use axum::extract::Request;
    use std::sync::Arc;
    let seen: Seen = Arc::default();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let recorded = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |request: Request| {
        let recorded = Arc::clone(&recorded);
        async move {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let signed = format!(
                "{}|{}",
                header("authorization"),
                header("x-amz-content-sha256")
            );
            let path = request.uri().path().to_owned();
            recorded.lock().expect("lock").push((path.clone(), signed));
            if path == "/_bulk" {
                r#"{"errors":false,"items":[]}"#.to_owned()
            } else {
                r#"{"acknowledged":true}"#.to_owned()
            }
        }
    });
    runtime.spawn(async move { axum::serve(listener, app).await });
    (url, seen, runtime)
}

#[test]
fn sigv4_signs_every_request_for_the_configured_service_and_region() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, seen, _server) = signature_recorder();
    let cfg = config(
        dir.path(),
        &generate("app", 200, None),
        &url,
        "signed",
        "auth = \"sigv4\"\nservice = \"aoss\"\nregion = \"eu-west-1\"",
        free_port(),
    );
    let child = Command::new(common::BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .env("AWS_ACCESS_KEY_ID", "AKIDSIGNTEST")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .output()
        .expect("seclake runs");
    assert!(
        child.status.success(),
        "{}",
        String::from_utf8_lossy(&child.stderr)
    );
    let seen = seen.lock().expect("lock").clone();
    let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    assert!(
        paths.contains(&"/_index_template/signed-events"),
        "{paths:?}"
    );
    assert!(paths.contains(&"/_bulk"), "{paths:?}");
    for (path, signed) in &seen {
        let (authorization, payload_hash) = signed.split_once('|').expect("two parts");
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDSIGNTEST/")
                && authorization.contains("/eu-west-1/aoss/aws4_request")
                && authorization.contains("SignedHeaders=")
                && authorization.contains("x-amz-content-sha256"),
            "{path}: {authorization}"
        );
        assert_eq!(
            payload_hash.len(),
            64,
            "{path}: the payload hash Serverless requires"
        );
    }
}

/// An HTTPS server with a certificate for `localhost` signed by a CA of its
/// own, answering like OpenSearch and keeping each request's
/// `authorization` header; the CA's PEM is written to `ca_file`.
fn https_recorder(ca_file: &Path) -> (String, Seen, tokio::runtime::Runtime) {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "seclake test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    std::fs::write(ca_file, ca.pem()).expect("CA written");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("certificate");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    let seen: Seen = Arc::default();
    let recorded = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let recorded = Arc::clone(&recorded);
        async move {
            let authorization = request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let path = request.uri().path().to_owned();
            recorded
                .lock()
                .expect("lock")
                .push((path.clone(), authorization));
            if path == "/_bulk" {
                r#"{"errors":false,"items":[]}"#
            } else {
                r#"{"acknowledged":true}"#
            }
        }
    });
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    runtime.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake here.
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    (format!("https://localhost:{port}"), seen, runtime)
}

#[test]
fn basic_auth_over_https_trusts_the_configured_ca_and_only_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    let (url, seen, _server) = https_recorder(&ca_file);
    let auth = "auth = \"basic\"\nusername = \"seclake\"\npassword = \"s3cret\"";
    let untrusted = config(
        dir.path(),
        &generate("app", 100, None),
        &url,
        "tls",
        auth,
        free_port(),
    );
    let refused = Command::new(common::BIN)
        .args(["run", "--config"])
        .arg(&untrusted)
        .env("RUST_LOG", "warn")
        .output()
        .expect("seclake runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "a certificate from an unknown CA is refused"
    );
    assert!(stderr.contains("opensearch.url"), "{stderr}");
    assert!(seen.lock().expect("lock").is_empty(), "nothing was sent");

    let trusted = config(
        dir.path(),
        &generate("app", 100, None),
        &url,
        "tls",
        &format!("{auth}\nca_file = \"{}\"", ca_file.display()),
        free_port(),
    );
    let summary = run_to_end(&trusted, Duration::from_secs(120));
    assert_eq!(summary["sinks"]["opensearch"]["rows"], lake_rows(&summary));
    let seen = seen.lock().expect("lock").clone();
    assert!(seen.iter().any(|(path, _)| path == "/_bulk"), "{seen:?}");
    // base64("seclake:s3cret")
    assert!(
        seen.iter().all(|(_, a)| a == "Basic c2VjbGFrZTpzM2NyZXQ="),
        "{seen:?}"
    );
}
