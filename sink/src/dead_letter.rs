//! The dead-letter output: every record that could not become an event.
//!
//! Layout: `<root>/source=<src>/dt=YYYY-MM-DD/dlq-<uuid v7>.ndjson`, dated by
//! processing time (a record that failed to parse has no trustworthy event
//! time). Each line holds the raw bytes (as text when they are UTF-8, else
//! base64 in `raw_base64`), the reason and the source position. Files are
//! buffered in memory, small, and written whole when rolled.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use object_store::{ObjectStoreExt, PutPayload};
use seclake_ingest::{Ack, Format, Position};
use serde::{Deserialize, Serialize};

use crate::SinkError;
use crate::store::{Location, S3Options};

/// `[dlq]`: where records that could not be parsed go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// `file:///absolute/path` or `s3://bucket/prefix`.
    pub url: String,
    /// S3 endpoint override.
    pub endpoint: Option<String>,
    /// S3 region override.
    pub region: Option<String>,
    /// Roll a file at this many bytes (default 16 MiB).
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: usize,
    /// Roll a file this many seconds after its first record (default 60).
    #[serde(default = "default_max_file_age_secs")]
    pub max_file_age_secs: u64,
}

fn default_max_file_bytes() -> usize {
    16 << 20
}
fn default_max_file_age_secs() -> u64 {
    60
}

impl DeadLetterConfig {
    /// A config with defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> DeadLetterConfig {
        DeadLetterConfig {
            url: url.into(),
            endpoint: None,
            region: None,
            max_file_bytes: default_max_file_bytes(),
            max_file_age_secs: default_max_file_age_secs(),
        }
    }
}

/// One record that could not be processed.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// Where it came from.
    pub position: Position,
    /// Why it was rejected.
    pub reason: &'a str,
    /// Its bytes, exactly as read.
    pub raw: &'a [u8],
}

/// A dead letter whose position is not a source position: the position as
/// JSON, the reason and the raw bytes.
pub type Entry<'a> = (serde_json::Value, &'a str, &'a [u8]);

/// One line of a dead-letter file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterLine {
    /// The source format the record was read as.
    pub source: Format,
    /// Why it was rejected.
    pub reason: String,
    /// Where it came from (`kind`, then e.g. `origin` and `line`).
    pub position: serde_json::Value,
    /// When seclake rejected it (RFC 3339, UTC).
    pub ingest_ts: String,
    /// The raw record, when it is valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw: Option<String>,
    /// The raw record in base64, when it is not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw_base64: Option<String>,
}

impl DeadLetterLine {
    /// The raw bytes, whichever way they were stored.
    pub fn raw_bytes(&self) -> Option<Vec<u8>> {
        match (&self.raw, &self.raw_base64) {
            (Some(text), _) => Some(text.clone().into_bytes()),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD.decode(b64).ok(),
            (None, None) => None,
        }
    }
}

/// Dead letters written so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterStats {
    /// Records in committed files.
    pub records: u64,
    /// Committed files.
    pub files: u64,
    /// Bytes in committed files.
    pub bytes: u64,
}

struct OpenFile {
    buf: Vec<u8>,
    records: u64,
    opened: Instant,
    acks: Vec<Ack>,
}

/// Buffers dead letters per source and day and writes them as NDJSON files.
pub struct DeadLetterWriter {
    location: Location,
    max_file_bytes: usize,
    max_age: Duration,
    open: HashMap<(Format, chrono::NaiveDate), OpenFile>,
    stats: DeadLetterStats,
}

impl DeadLetterWriter {
    /// Opens the dead-letter store and checks it is reachable.
    pub async fn open(cfg: &DeadLetterConfig) -> Result<DeadLetterWriter, SinkError> {
        let s3 = S3Options {
            endpoint: cfg.endpoint.clone(),
            region: cfg.region.clone(),
        };
        let location = Location::open("dlq.url", &cfg.url, &s3)?;
        crate::check_reachable(&location, "dlq.url").await?;
        Ok(DeadLetterWriter {
            location,
            max_file_bytes: cfg.max_file_bytes.max(1),
            max_age: Duration::from_secs(cfg.max_file_age_secs),
            open: HashMap::new(),
            stats: DeadLetterStats::default(),
        })
    }

    /// Buffers the rejected records of one batch; `ack` is held until the
    /// file they went into is written.
    pub async fn write<'a>(
        &mut self,
        source: Format,
        letters: impl IntoIterator<Item = DeadLetter<'a>>,
        ack: &Ack,
    ) -> Result<(), SinkError> {
        let entries: Vec<_> = letters
            .into_iter()
            .map(|letter| {
                let position = serde_json::to_value(&letter.position).unwrap_or_default();
                (position, letter.reason, letter.raw)
            })
            .collect();
        self.write_entries(source, entries, ack).await
    }

    /// Buffers entries whose position is not a source position (a document
    /// a downstream store refused: its index and id); `ack` is held until the
    /// file they went into is written.
    pub async fn write_entries<'a>(
        &mut self,
        source: Format,
        entries: impl IntoIterator<Item = Entry<'a>>,
        ack: &Ack,
    ) -> Result<(), SinkError> {
        let now = chrono::Utc::now();
        let key = (source, now.date_naive());
        let ingest_ts = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let file = self.open.entry(key).or_insert_with(|| OpenFile {
            buf: Vec::new(),
            records: 0,
            opened: Instant::now(),
            acks: Vec::new(),
        });
        let mut any = false;
        for (position, reason, raw) in entries {
            let (raw, raw_base64) = match std::str::from_utf8(raw) {
                Ok(text) => (Some(text.to_owned()), None),
                Err(_) => (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(raw)),
                ),
            };
            let line = DeadLetterLine {
                source,
                reason: reason.to_owned(),
                position,
                ingest_ts: ingest_ts.clone(),
                raw,
                raw_base64,
            };
            serde_json::to_writer(&mut file.buf, &line).map_err(SinkError::Json)?;
            file.buf.push(b'\n');
            file.records += 1;
            any = true;
        }
        if any {
            file.acks.push(ack.clone());
        }
        if file.buf.len() >= self.max_file_bytes {
            self.commit(key).await?;
        }
        Ok(())
    }

    async fn commit(&mut self, key: (Format, chrono::NaiveDate)) -> Result<(), SinkError> {
        let Some(file) = self.open.remove(&key) else {
            return Ok(());
        };
        if file.records == 0 {
            return Ok(());
        }
        let relative = format!(
            "source={}/dt={}/dlq-{}.ndjson",
            key.0,
            key.1.format("%Y-%m-%d"),
            uuid::Uuid::now_v7().simple()
        );
        let path = self.location.child(&relative);
        let size = file.buf.len() as u64;
        match self
            .location
            .store
            .put(&path, PutPayload::from(file.buf))
            .await
        {
            Ok(_) => {
                self.stats.records += file.records;
                self.stats.files += 1;
                self.stats.bytes += size;
                drop(file.acks);
                Ok(())
            }
            Err(source) => {
                for ack in &file.acks {
                    ack.fail();
                }
                Err(SinkError::Store {
                    path: path.to_string(),
                    source,
                })
            }
        }
    }

    /// Writes every file older than the configured age.
    pub async fn roll_due(&mut self) -> Result<(), SinkError> {
        let due: Vec<_> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened.elapsed() >= self.max_age)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            self.commit(key).await?;
        }
        Ok(())
    }

    /// Writes every buffered file (shutdown, end of input).
    pub async fn close_all(&mut self) -> Result<(), SinkError> {
        let keys: Vec<_> = self.open.keys().copied().collect();
        let mut first_error = None;
        for key in keys {
            if let Err(e) = self.commit(key).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Records and files written so far.
    pub fn stats(&self) -> DeadLetterStats {
        self.stats
    }
}

#[async_trait::async_trait]
impl crate::SinkSpec for DeadLetterConfig {
    fn name(&self) -> &'static str {
        "dlq"
    }

    fn takes(&self) -> crate::Takes {
        crate::Takes::DeadLetters
    }

    fn check(&self) -> Result<(), SinkError> {
        crate::store::check_url("dlq.url", &self.url)
    }

    async fn open(&self) -> Result<Box<dyn crate::Sink>, SinkError> {
        Ok(Box::new(DeadLetterWriter::open(self).await?))
    }
}

#[async_trait::async_trait]
impl crate::Sink for DeadLetterWriter {
    async fn write(&mut self, batch: &crate::SinkBatch) -> Result<(), SinkError> {
        let letters = batch.dead_letters.iter().map(|r| DeadLetter {
            position: r.position.clone(),
            reason: &r.reason,
            raw: &r.raw,
        });
        DeadLetterWriter::write(self, batch.format, letters, &batch.ack).await
    }

    async fn roll_due(&mut self) -> Result<(), SinkError> {
        DeadLetterWriter::roll_due(self).await
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.close_all().await
    }

    fn stats(&self) -> crate::SinkStats {
        crate::SinkStats {
            rows: self.stats.records,
            files: self.stats.files,
            bytes: self.stats.bytes,
            ..crate::SinkStats::default()
        }
    }

    fn open_files(&self) -> usize {
        self.open.len()
    }
}
