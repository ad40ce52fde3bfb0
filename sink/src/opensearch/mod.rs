//! The OpenSearch sink: every event indexed once by its `event_id`, through
//! `_bulk` requests of bounded size, a few at a time.
//!
//! Each document is settled one by one from the bulk response: indexed;
//! retried alone with backoff and jitter when the cluster was busy or failing
//! (429, 5xx, a full write queue); sent to the dead letters with OpenSearch's
//! reason when it can never be indexed (a mapping error); or, when the
//! cluster stays unreachable for `max_retry_secs`, written to the backup
//! prefix as NDJSON. A batch's Ack is released only when each of its
//! documents is in one of those places.

mod bulk;
mod client;
pub mod encode;
pub mod template;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics::counter;
use object_store::{ObjectStoreExt as _, PutPayload};
use seclake_ingest::{Ack, Format};
use serde::Deserialize;
use tokio::task::{Id, JoinSet};

use crate::dead_letter::{DeadLetterConfig, DeadLetterWriter, Entry};
use crate::store::{Location, S3Options};
use crate::{SinkError, SinkStats};
use bulk::{Cluster, Job, Outcome};
use encode::{Encoder, Item, Target};

pub use client::Auth;

/// `[opensearch]`: index every event into OpenSearch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSearchConfig {
    /// The cluster's URL, e.g. `https://search-x.eu-west-1.es.amazonaws.com`.
    pub url: String,
    /// Indices are `<prefix>-<format>-YYYY.MM.DD` (or data streams `<prefix>-<format>`).
    #[serde(default = "default_prefix")]
    pub index_prefix: String,
    /// `index` (daily indices) or `data_stream`.
    #[serde(default)]
    pub mode: Mode,
    /// How long documents are retried before they go to the backup (default 300).
    #[serde(default = "default_max_retry_secs")]
    pub max_retry_secs: u64,
    /// Where documents go that could not be indexed in `max_retry_secs`:
    /// `s3://bucket/prefix` or `file:///path` (default: `opensearch-failed/`
    /// under the `[dlq]` URL).
    pub backup_url: Option<String>,
    /// S3 endpoint and region of the backup URL, when not the defaults.
    #[serde(default)]
    pub backup: S3Options,
    /// Delete daily indices whose day is older than this many days.
    pub retention_days: Option<u32>,
    /// `none`, `basic` (with `username` and `password`) or `sigv4`.
    #[serde(default)]
    pub auth: Auth,
    /// Basic auth user.
    pub username: Option<String>,
    /// Basic auth password.
    pub password: Option<String>,
    /// SigV4: `es` for OpenSearch Service, `aoss` for Serverless (default `es`).
    #[serde(default = "default_service")]
    pub service: String,
    /// SigV4 region (default: the AWS chain's).
    pub region: Option<String>,
    /// A PEM file of the CA that signed the cluster's certificate.
    pub ca_file: Option<std::path::PathBuf>,
    /// Replicas of each index (default 0: right for one node; 1 or more in production).
    #[serde(default)]
    pub replicas: u32,
    /// Primary shards of each index (default 1).
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// A bulk request is sent once it holds this many bytes (default 5 MiB)…
    #[serde(default = "default_bulk_bytes")]
    pub bulk_bytes: usize,
    /// …or this many documents (default 5000)…
    #[serde(default = "default_bulk_docs")]
    pub bulk_docs: usize,
    /// …or its first document waited this long (default 1000 ms).
    #[serde(default = "default_bulk_linger_ms")]
    pub bulk_linger_ms: u64,
    /// Bulk requests in flight at once (default 2).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long one request may take (default 60 s).
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// The dead-letter output for documents OpenSearch refuses; the `[dlq]`
    /// section, filled in by the config loader.
    #[serde(skip)]
    pub dead_letters: Option<DeadLetterConfig>,
}

/// How documents are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A daily index per format; a re-delivered event overwrites itself.
    #[default]
    Index,
    /// A data stream per format, timed by `ts`; a re-delivered event is
    /// refused as existing (while its backing index is the write index).
    DataStream,
}

fn default_prefix() -> String {
    "seclake".into()
}
fn default_max_retry_secs() -> u64 {
    300
}
fn default_service() -> String {
    "es".into()
}
fn default_shards() -> u32 {
    1
}
fn default_bulk_bytes() -> usize {
    5 << 20
}
fn default_bulk_docs() -> usize {
    5000
}
fn default_bulk_linger_ms() -> u64 {
    1000
}
fn default_concurrency() -> usize {
    2
}
fn default_request_timeout_secs() -> u64 {
    60
}

impl OpenSearchConfig {
    /// A config with defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> OpenSearchConfig {
        serde_json::from_value(serde_json::json!({ "url": url.into() }))
            .unwrap_or_else(|e| unreachable!("the defaults deserialise: {e}"))
    }

    fn target(&self) -> Target {
        match self.mode {
            Mode::Index => Target::DailyIndex,
            Mode::DataStream => Target::DataStream,
        }
    }

    fn backup_url(&self) -> Option<String> {
        self.backup_url.clone().or_else(|| {
            self.dead_letters
                .as_ref()
                .map(|d| format!("{}/opensearch-failed", d.url.trim_end_matches('/')))
        })
    }
}

#[async_trait::async_trait]
impl crate::SinkSpec for OpenSearchConfig {
    fn name(&self) -> &'static str {
        "opensearch"
    }

    fn takes(&self) -> crate::Takes {
        crate::Takes::Events
    }

    fn check(&self) -> Result<(), SinkError> {
        let bad = |key: &'static str, why: String| SinkError::Config { key, why };
        client::check_url(&self.url)?;
        check_prefix(&self.index_prefix)?;
        if self.max_retry_secs == 0 {
            return Err(bad(
                "opensearch.max_retry_secs",
                "must be at least 1".into(),
            ));
        }
        for (key, value) in [
            ("opensearch.bulk_bytes", self.bulk_bytes),
            ("opensearch.bulk_docs", self.bulk_docs),
            ("opensearch.shards", self.shards as usize),
            (
                "opensearch.request_timeout_secs",
                self.request_timeout_secs as usize,
            ),
        ] {
            if value == 0 {
                return Err(bad(key, "must be at least 1".into()));
            }
        }
        if !(1..=64).contains(&self.concurrency) {
            return Err(bad("opensearch.concurrency", "must be 1 to 64".into()));
        }
        if self.retention_days == Some(0) {
            return Err(bad(
                "opensearch.retention_days",
                "must be at least 1 (or unset)".into(),
            ));
        }
        client::check_auth(self)?;
        if let Some(url) = &self.backup_url {
            crate::store::check_url("opensearch.backup_url", url)?;
        }
        Ok(())
    }

    async fn open(&self) -> Result<Box<dyn crate::Sink>, SinkError> {
        Ok(Box::new(OpenSearchSink::open(self).await?))
    }
}

/// Index names: lowercase, no characters OpenSearch refuses, not starting
/// with `-`, `_` or `+`.
fn check_prefix(prefix: &str) -> Result<(), SinkError> {
    let bad = |why: String| {
        Err(SinkError::Config {
            key: "opensearch.index_prefix",
            why,
        })
    };
    if prefix.is_empty() {
        return bad("is empty".into());
    }
    if prefix.starts_with(['-', '_', '+']) {
        return bad(format!("{prefix:?} starts with '-', '_' or '+'"));
    }
    match prefix
        .chars()
        .find(|c| c.is_uppercase() || " \"*\\<|,>/?#:".contains(*c))
    {
        Some(c) => bad(format!(
            "{prefix:?} contains {c:?}; index names are lowercase, without spaces or any of \\/*?\"<>|,#:"
        )),
        None => Ok(()),
    }
}

/// The running sink.
pub struct OpenSearchSink {
    cluster: Arc<Cluster>,
    encoder: Encoder,
    create: bool,
    pending: Vec<Item>,
    pending_bytes: usize,
    pending_acks: Vec<Ack>,
    pending_since: Option<Instant>,
    bulk_bytes: usize,
    bulk_docs: usize,
    linger: Duration,
    concurrency: usize,
    running: JoinSet<Outcome>,
    /// The Acks of each running job, kept here so a job that panics can't
    /// release them.
    running_acks: HashMap<Id, Vec<Ack>>,
    dead_letters: DeadLetterWriter,
    backup: Location,
    retention: Option<client::Retention>,
    /// Documents settled so far: `rows` indexed, `files` requests.
    stats: SinkStats,
}

impl OpenSearchSink {
    /// Connects, installs the index templates (and the retention), and opens
    /// the dead-letter output and the backup.
    pub async fn open(cfg: &OpenSearchConfig) -> Result<OpenSearchSink, SinkError> {
        crate::SinkSpec::check(cfg)?;
        let dlq = cfg.dead_letters.as_ref().ok_or(SinkError::Config {
            key: "dlq",
            why: "the OpenSearch sink needs the [dlq] section for documents OpenSearch refuses"
                .into(),
        })?;
        let dead_letters = DeadLetterWriter::open(dlq).await?;
        let backup_url = cfg.backup_url().ok_or(SinkError::Config {
            key: "opensearch.backup_url",
            why: "unset, and no [dlq] to put it under".into(),
        })?;
        let backup = Location::open("opensearch.backup_url", &backup_url, &cfg.backup)?;
        crate::check_reachable(&backup, "opensearch.backup_url").await?;

        let client = client::connect(cfg).await?;
        client::install_templates(&client, cfg).await?;
        let retention = match cfg.retention_days {
            Some(days) => Some(client::Retention::install(&client, cfg, days).await?),
            None => None,
        };
        let cluster = Cluster::new(
            client,
            Duration::from_secs(cfg.request_timeout_secs),
            Duration::from_secs(cfg.max_retry_secs),
        );
        Ok(OpenSearchSink {
            cluster: Arc::new(cluster),
            encoder: Encoder::new(&cfg.index_prefix, cfg.target()),
            create: cfg.mode == Mode::DataStream,
            pending: Vec::new(),
            pending_bytes: 0,
            pending_acks: Vec::new(),
            pending_since: None,
            bulk_bytes: cfg.bulk_bytes,
            bulk_docs: cfg.bulk_docs,
            linger: Duration::from_millis(cfg.bulk_linger_ms),
            concurrency: cfg.concurrency,
            running: JoinSet::new(),
            running_acks: HashMap::new(),
            dead_letters,
            backup,
            retention,
            stats: SinkStats::default(),
        })
    }

    /// Sends what is pending as one job, after waiting for a free slot.
    async fn dispatch(&mut self) -> Result<(), SinkError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        while self.running.len() >= self.concurrency {
            self.reap_one().await?;
        }
        let job = Job {
            items: std::mem::take(&mut self.pending),
        };
        let acks = std::mem::take(&mut self.pending_acks);
        self.pending_bytes = 0;
        self.pending_since = None;
        let handle = self
            .running
            .spawn(bulk::run(Arc::clone(&self.cluster), job, self.create));
        self.running_acks.insert(handle.id(), acks);
        Ok(())
    }

    /// Waits for one job and settles it.
    async fn reap_one(&mut self) -> Result<(), SinkError> {
        if let Some(joined) = self.running.join_next_with_id().await {
            self.settle(joined).await?;
        }
        Ok(())
    }

    /// Settles every job that has finished, without waiting.
    async fn reap_finished(&mut self) -> Result<(), SinkError> {
        while let Some(joined) = self.running.try_join_next_with_id() {
            self.settle(joined).await?;
        }
        Ok(())
    }

    /// Stores a finished job's refused and unsent documents, counts it, and
    /// releases its Acks; fails them when that storing failed.
    async fn settle(
        &mut self,
        joined: Result<(Id, Outcome), tokio::task::JoinError>,
    ) -> Result<(), SinkError> {
        let (id, outcome) = match joined {
            Ok(done) => done,
            Err(e) => {
                for ack in self.running_acks.remove(&e.id()).unwrap_or_default() {
                    ack.fail();
                }
                return Err(SinkError::Task(e.to_string()));
            }
        };
        let acks = self.running_acks.remove(&id).unwrap_or_default();
        let stored = self.store_leftovers(&outcome).await;
        if stored.is_err() {
            for ack in &acks {
                ack.fail();
            }
        }
        self.stats += SinkStats {
            rows: outcome.indexed,
            files: outcome.requests,
            bytes: outcome.bytes,
            retried: outcome.retried,
            ..SinkStats::default()
        };
        counter!("seclake_opensearch_documents_total", "outcome" => "indexed")
            .increment(outcome.indexed);
        counter!("seclake_opensearch_documents_total", "outcome" => "retried")
            .increment(outcome.retried);
        counter!("seclake_opensearch_requests_total").increment(outcome.requests);
        stored
    }

    async fn store_leftovers(&mut self, outcome: &Outcome) -> Result<(), SinkError> {
        if !outcome.rejected.is_empty() {
            let mut by_format: HashMap<Format, Vec<Entry<'_>>> = HashMap::new();
            for (item, status, reason) in &outcome.rejected {
                tracing::warn!(
                    "opensearch refused document {} for {}: {reason}",
                    item.id(),
                    item.index
                );
                let position = serde_json::json!({
                    "kind": "opensearch",
                    "index": &*item.index,
                    "id": item.id(),
                    "status": status,
                });
                by_format.entry(item.format).or_default().push((
                    position,
                    reason.as_str(),
                    item.document(),
                ));
            }
            // Written at once, so the job's Acks need not wait for the file.
            let written = Ack::detached();
            for (format, letters) in by_format {
                self.dead_letters
                    .write_entries(format, letters, &written)
                    .await?;
            }
            self.dead_letters.close_all().await?;
            let n = outcome.rejected.len() as u64;
            self.stats.dead_lettered += n;
            counter!("seclake_opensearch_documents_total", "outcome" => "dead_lettered")
                .increment(n);
        }
        if !outcome.unsent.is_empty() {
            let (path, body) = backup_object(&self.backup, &outcome.unsent);
            self.backup
                .store
                .put(&path, PutPayload::from(body))
                .await
                .map_err(|source| SinkError::Store {
                    path: path.to_string(),
                    source,
                })?;
            let n = outcome.unsent.len() as u64;
            tracing::warn!(
                "opensearch: {n} documents not indexed within max_retry_secs ({}); written to {}",
                outcome.unsent[0].1,
                self.backup.url
            );
            self.stats.backed_up += n;
            counter!("seclake_opensearch_documents_total", "outcome" => "backed_up").increment(n);
        }
        Ok(())
    }
}

/// The backup object for documents that were never indexed: one NDJSON line
/// each, `{"index", "id", "error", "failed_at", "document"}`, under
/// `dt=YYYY-MM-DD/hour=HH/` of the time they were given up on.
fn backup_object(
    backup: &Location,
    unsent: &[(Item, String)],
) -> (object_store::path::Path, Bytes) {
    let now = chrono::Utc::now();
    let failed_at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut body = Vec::with_capacity(unsent.iter().map(|(i, _)| i.line.len() + 160).sum());
    for (item, error) in unsent {
        let head = serde_json::json!({
            "index": &*item.index,
            "id": item.id(),
            "error": error,
            "failed_at": failed_at,
        })
        .to_string();
        body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
        body.extend_from_slice(br#","document":"#);
        body.extend_from_slice(item.document());
        body.extend_from_slice(b"}\n");
    }
    let relative = format!(
        "dt={}/hour={}/opensearch-failed-{}.ndjson",
        now.format("%Y-%m-%d"),
        now.format("%H"),
        uuid::Uuid::now_v7().simple()
    );
    (backup.child(&relative), Bytes::from(body))
}

#[async_trait::async_trait]
impl crate::Sink for OpenSearchSink {
    async fn write(&mut self, batch: &crate::SinkBatch) -> Result<(), SinkError> {
        let mut items = Vec::with_capacity(batch.events.num_rows());
        self.encoder
            .encode(batch.format, &batch.events, &mut items)?;
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            self.pending_since.get_or_insert_with(Instant::now);
            self.pending_acks.push(batch.ack.clone());
            while self.pending.len() < self.bulk_docs && self.pending_bytes < self.bulk_bytes {
                let Some(item) = items.next() else { break };
                self.pending_bytes += item.line.len();
                self.pending.push(item);
            }
            if self.pending.len() >= self.bulk_docs || self.pending_bytes >= self.bulk_bytes {
                self.dispatch().await?;
            }
        }
        self.reap_finished().await
    }

    async fn roll_due(&mut self) -> Result<(), SinkError> {
        self.reap_finished().await?;
        if self
            .pending_since
            .is_some_and(|since| since.elapsed() >= self.linger)
        {
            self.dispatch().await?;
        }
        if let Some(retention) = &mut self.retention {
            retention.run_due(&self.cluster.client).await;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        let mut first_error = self.dispatch().await.err();
        while !self.running.is_empty() {
            if let Err(e) = self.reap_one().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn stats(&self) -> SinkStats {
        self.stats
    }

    fn open_files(&self) -> usize {
        self.running.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SinkSpec as _;

    fn parsed(extra: serde_json::Value) -> OpenSearchConfig {
        let mut value = serde_json::json!({"url": "http://127.0.0.1:9200"});
        if let (Some(base), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(value).expect("config")
    }

    fn refused_key(extra: serde_json::Value) -> &'static str {
        match parsed(extra).check() {
            Err(SinkError::Config { key, .. }) => key,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_daily_indices_five_mib_bulks_and_five_minutes_of_retries() {
        let cfg = OpenSearchConfig::new("http://127.0.0.1:9200");
        assert_eq!(cfg.index_prefix, "seclake");
        assert_eq!(cfg.mode, Mode::Index);
        assert_eq!(cfg.max_retry_secs, 300);
        assert_eq!(
            (cfg.bulk_bytes, cfg.bulk_docs, cfg.concurrency),
            (5 << 20, 5000, 2)
        );
        assert_eq!(cfg.auth, Auth::None);
        assert!(cfg.check().is_ok());
    }

    #[test]
    fn bad_values_are_refused_naming_their_key() {
        use serde_json::json;
        assert_eq!(refused_key(json!({"url": "ftp://x"})), "opensearch.url");
        assert_eq!(
            refused_key(json!({"index_prefix": "Seclake"})),
            "opensearch.index_prefix"
        );
        assert_eq!(
            refused_key(json!({"index_prefix": "_x"})),
            "opensearch.index_prefix"
        );
        assert_eq!(
            refused_key(json!({"index_prefix": "a,b"})),
            "opensearch.index_prefix"
        );
        assert_eq!(
            refused_key(json!({"max_retry_secs": 0})),
            "opensearch.max_retry_secs"
        );
        assert_eq!(
            refused_key(json!({"concurrency": 0})),
            "opensearch.concurrency"
        );
        assert_eq!(
            refused_key(json!({"retention_days": 0})),
            "opensearch.retention_days"
        );
        assert_eq!(
            refused_key(json!({"auth": "basic", "username": "u"})),
            "opensearch.password"
        );
        assert_eq!(refused_key(json!({"password": "p"})), "opensearch.auth");
        assert_eq!(
            refused_key(json!({"auth": "sigv4", "service": "s3"})),
            "opensearch.service"
        );
        assert_eq!(
            refused_key(json!({"ca_file": "/surely/missing.pem"})),
            "opensearch.ca_file"
        );
        assert_eq!(
            refused_key(json!({"backup_url": "http://x"})),
            "opensearch.backup_url"
        );
    }

    #[test]
    fn the_backup_defaults_to_a_prefix_under_the_dead_letters() {
        let mut cfg = OpenSearchConfig::new("http://127.0.0.1:9200");
        assert_eq!(cfg.backup_url(), None);
        cfg.dead_letters = Some(DeadLetterConfig::new("s3://bucket/dlq/"));
        assert_eq!(
            cfg.backup_url().as_deref(),
            Some("s3://bucket/dlq/opensearch-failed")
        );
    }
}
