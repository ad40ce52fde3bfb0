//! The Parquet data lake: Hive partitions by source and event hour.
//!
//! Layout: `<root>/source=<src>/dt=YYYY-MM-DD/hour=HH/part-<uuid v7>.parquet`,
//! by event time in UTC. The partition keys are in the path, not in the files,
//! as Athena, Spark, DuckDB and DataFusion expect. One file is open per
//! partition; it is rolled by size or age. Objects are streamed with
//! `object_store`'s multipart upload (a staging file renamed into place on a
//! local disk), which completes only when the file is closed, so readers never
//! see a half-written file.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use seclake_enrich::schema::{column_index, event_schema};
use seclake_ingest::{Ack, Format};
use serde::Deserialize;

use crate::SinkError;
use crate::store::{Location, S3Options};

/// `[lake]`: where and how events are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// `file:///absolute/path` or `s3://bucket/prefix`.
    pub url: String,
    /// S3 endpoint override (moto, MinIO); standard AWS chain otherwise.
    pub endpoint: Option<String>,
    /// S3 region override.
    pub region: Option<String>,
    /// Roll a file once it reaches this many bytes (default 128 MiB).
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Roll a file this many seconds after it was opened (default 60).
    #[serde(default = "default_max_file_age_secs")]
    pub max_file_age_secs: u64,
    /// Rows per Parquet row group (default 131072).
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// zstd level, 1–22 (default 1: measured as fast as any and no larger
    /// than level 3 on WAF events, see benches/README.md).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Most files open at once (default 16); beyond it the least recently
    /// written file is committed. Bounds memory when events arrive out of order.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// Hours of event time kept open per source, the newest included
    /// (default 2); a file of an older hour is committed once no write has
    /// touched it for a while. Raise it when events arrive that far out of
    /// order and files should stay open regardless.
    #[serde(default = "default_open_hours")]
    pub open_hours: u32,
}

fn default_max_file_bytes() -> u64 {
    128 << 20
}
fn default_max_file_age_secs() -> u64 {
    60
}
fn default_row_group_rows() -> usize {
    128 * 1024
}
fn default_zstd_level() -> i32 {
    1
}
fn default_max_open_files() -> usize {
    16
}
fn default_open_hours() -> u32 {
    2
}

impl LakeConfig {
    /// A config with defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> LakeConfig {
        LakeConfig {
            url: url.into(),
            endpoint: None,
            region: None,
            max_file_bytes: default_max_file_bytes(),
            max_file_age_secs: default_max_file_age_secs(),
            row_group_rows: default_row_group_rows(),
            zstd_level: default_zstd_level(),
            max_open_files: default_max_open_files(),
            open_hours: default_open_hours(),
        }
    }
}

/// Writes after which a file of an hour left behind counts as finished. A
/// consumer catching up on several Kafka partitions writes hours hours apart
/// in turn; a file still written every few batches stays open instead of
/// being committed and reopened for each (780 files instead of 24 for a
/// day of WAF records, `benches/README.md`). Time-ordered input leaves an
/// hour for good, and its file is committed this many writes later.
const LEFT_BEHIND_IDLE_WRITES: u64 = 64;

/// Columns whose values are (nearly) all distinct.
const UNIQUE_COLUMNS: [&str; 6] = [
    "event_id",
    "ts",
    "request_id",
    "trace_id",
    "idempotency_key",
    "order_id",
];

/// Columns that keep only row-group statistics: nested values and
/// identifiers no query prunes pages by.
const CHUNK_STATS_COLUMNS: [&str; 6] = [
    "waf_rule_groups",
    "waf_labels",
    "falco_tags",
    "mitre_ids",
    "threat_reasons",
    "waf_web_acl_id",
];

/// Long free text, the header map, ids and other high-cardinality values
/// in no particular order: min/max of such values prunes nothing (text is
/// matched with `LIKE` or by key; an address's or an id's range spans every
/// page of an hour) yet costs a string comparison per value, the largest
/// share of the encoder's time on WAF records.
const NO_STATS_COLUMNS: [&str; 21] = [
    "event_id",
    "request_id",
    "trace_id",
    "headers",
    "user_agent",
    "waf_args",
    "falco_output",
    "proc_cmdline",
    "message",
    "app_error",
    "client_ip",
    "uri",
    "ja3",
    "ja4",
    "country_name",
    "city",
    "as_org",
    "k8s_pod",
    "container_id",
    "user_id",
    "idempotency_key",
];

/// The lake's Parquet settings for files of `file_schema` (see
/// [`file_schema`]): zstd at `zstd_level`, page statistics and the page index
/// (so engines skip pages on `ts`, `client_ip`, `threat_score`, …), no
/// dictionary for near-unique columns.
pub fn writer_properties(
    file_schema: &arrow::datatypes::Schema,
    zstd_level: i32,
    row_group_rows: usize,
) -> Result<WriterProperties, SinkError> {
    let level = ZstdLevel::try_new(zstd_level).map_err(|e| SinkError::Config {
        key: "lake.zstd_level",
        why: e.to_string(),
    })?;
    if row_group_rows == 0 {
        return Err(SinkError::Config {
            key: "lake.row_group_rows",
            why: "must be at least 1".into(),
        });
    }
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_created_by(format!("seclake {}", env!("CARGO_PKG_VERSION")));
    let leaves = parquet::arrow::ArrowSchemaConverter::new()
        .convert(file_schema)
        .map_err(|source| SinkError::Parquet {
            path: "(schema)".into(),
            source,
        })?;
    for leaf in leaves.columns() {
        let top = leaf
            .path()
            .parts()
            .first()
            .map(String::as_str)
            .unwrap_or_default();
        if CHUNK_STATS_COLUMNS.contains(&top) {
            props =
                props.set_column_statistics_enabled(leaf.path().clone(), EnabledStatistics::Chunk);
        }
        if NO_STATS_COLUMNS.contains(&top) {
            props =
                props.set_column_statistics_enabled(leaf.path().clone(), EnabledStatistics::None);
        }
        // Near-unique columns gain nothing from a dictionary but pay for
        // building one before the writer falls back to plain encoding.
        if UNIQUE_COLUMNS.contains(&top) {
            props = props.set_column_dictionary_enabled(leaf.path().clone(), false);
        }
    }
    Ok(props.build())
}

/// The schema of lake files, the event schema without the partition column
/// `source`, and the event-schema indices of its columns.
pub fn file_schema() -> Result<(SchemaRef, Vec<usize>), SinkError> {
    let schema = event_schema();
    let source = column_index("source").ok_or(SinkError::Schema("no source column"))?;
    let columns: Vec<usize> = (0..schema.fields().len())
        .filter(|i| *i != source)
        .collect();
    let file_schema = schema.project(&columns).map_err(SinkError::Arrow)?;
    Ok((Arc::new(file_schema), columns))
}

/// What the lake has written so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LakeStats {
    /// Rows in committed files.
    pub rows: u64,
    /// Committed files.
    pub files: u64,
    /// Bytes in committed files.
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PartitionKey {
    /// The `source=` partition: a format's name, or `response`.
    source: &'static str,
    /// Hours since the Unix epoch.
    hour: i64,
}

struct OpenFile {
    path: Path,
    writer: AsyncArrowWriter<BufWriter>,
    rows: u64,
    opened: Instant,
    /// Value of the writer's write counter at the last append, for LRU closing.
    last_write: u64,
    /// Held until the file is committed; dropping them acknowledges the batches.
    acks: Vec<Ack>,
}

/// Writes event batches into the partitioned lake.
pub struct LakeWriter {
    location: Location,
    props: WriterProperties,
    file_schema: SchemaRef,
    /// Columns written to files: all but the partition column `source`.
    file_columns: Vec<usize>,
    /// Position of `ts` in the file schema.
    ts_column: usize,
    max_file_bytes: u64,
    max_age: Duration,
    max_open_files: usize,
    open_hours: i64,
    open: HashMap<PartitionKey, OpenFile>,
    /// Newest event hour seen per source: files `open_hours` older are done.
    newest_hour: HashMap<&'static str, i64>,
    writes: u64,
    stats: LakeStats,
}

impl LakeWriter {
    /// Opens the lake's store and checks it is reachable.
    pub async fn open(cfg: &LakeConfig) -> Result<LakeWriter, SinkError> {
        let s3 = S3Options {
            endpoint: cfg.endpoint.clone(),
            region: cfg.region.clone(),
        };
        let location = Location::open("lake.url", &cfg.url, &s3)?;
        crate::check_reachable(&location, "lake.url").await?;
        let (file_schema, file_columns) = file_schema()?;
        let props = writer_properties(&file_schema, cfg.zstd_level, cfg.row_group_rows)?;
        Ok(LakeWriter {
            location,
            props,
            file_columns,
            ts_column: file_schema
                .index_of("ts")
                .map_err(|_| SinkError::Schema("no ts column"))?,
            file_schema,
            max_file_bytes: cfg.max_file_bytes,
            max_age: Duration::from_secs(cfg.max_file_age_secs),
            max_open_files: cfg.max_open_files.max(1),
            open_hours: i64::from(cfg.open_hours.max(1)),
            open: HashMap::new(),
            newest_hour: HashMap::new(),
            writes: 0,
            stats: LakeStats::default(),
        })
    }

    /// Appends `batch` (events of one source, in the event schema) to the
    /// files of the partitions its rows fall in. `ack` is held by every file
    /// that takes a row until that file is committed.
    pub async fn write(
        &mut self,
        source: Format,
        batch: &RecordBatch,
        ack: &Ack,
    ) -> Result<(), SinkError> {
        self.write_source(source.as_str(), batch, ack).await
    }

    /// [`LakeWriter::write`] into the `source=<source>` partitions of a
    /// source that is not a log format (the response's audit events).
    pub async fn write_source(
        &mut self,
        source: &'static str,
        batch: &RecordBatch,
        ack: &Ack,
    ) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = batch
            .project(&self.file_columns)
            .map_err(SinkError::Arrow)?;
        for (hour, part) in split_by_hour(&batch, self.ts_column)? {
            let key = PartitionKey { source, hour };
            self.append(key, &part, ack).await?;
            let newest = self.newest_hour.entry(source).or_insert(hour);
            *newest = (*newest).max(hour);
        }
        self.close_finished(source).await
    }

    /// Commits files of hours the source has left behind (`open_hours` or more
    /// older than its newest event's hour) that no recent write touched, then
    /// the least recently written files while more than `max_open_files` are
    /// open. Late events reopen a new file in their partition.
    async fn close_finished(&mut self, source: &'static str) -> Result<(), SinkError> {
        let newest = self.newest_hour.get(&source).copied().unwrap_or(i64::MIN);
        let writes = self.writes;
        let mut done: Vec<PartitionKey> = self
            .open
            .iter()
            .filter(|(k, f)| {
                k.source == source
                    && k.hour <= newest - self.open_hours
                    && writes - f.last_write >= LEFT_BEHIND_IDLE_WRITES
            })
            .map(|(k, _)| *k)
            .collect();
        let excess = (self.open.len() - done.len()).saturating_sub(self.max_open_files);
        if excess > 0 {
            let mut by_age: Vec<(u64, PartitionKey)> = self
                .open
                .iter()
                .filter(|(k, _)| !done.contains(k))
                .map(|(k, f)| (f.last_write, *k))
                .collect();
            by_age.sort_unstable_by_key(|(w, _)| *w);
            done.extend(by_age.into_iter().take(excess).map(|(_, k)| k));
        }
        for key in done {
            self.commit(key).await?;
        }
        Ok(())
    }

    async fn append(
        &mut self,
        key: PartitionKey,
        part: &RecordBatch,
        ack: &Ack,
    ) -> Result<(), SinkError> {
        if !self.open.contains_key(&key) {
            let file = self.create(key)?;
            self.open.insert(key, file);
        }
        let Some(file) = self.open.get_mut(&key) else {
            return Ok(());
        };
        file.acks.push(ack.clone());
        if let Err(e) = file.writer.write(part).await {
            let path = file.path.to_string();
            if let Some(file) = self.open.remove(&key) {
                fail(file.acks);
            }
            return Err(SinkError::Parquet { path, source: e });
        }
        file.rows += part.num_rows() as u64;
        self.writes += 1;
        file.last_write = self.writes;
        let size = (file.writer.bytes_written() + file.writer.in_progress_size()) as u64;
        if size >= self.max_file_bytes {
            self.commit(key).await?;
        }
        Ok(())
    }

    fn create(&self, key: PartitionKey) -> Result<OpenFile, SinkError> {
        let start = chrono::DateTime::from_timestamp(key.hour * 3600, 0)
            .ok_or(SinkError::Schema("event time out of range"))?;
        let relative = format!(
            "source={}/dt={}/hour={}/part-{}.parquet",
            key.source,
            start.format("%Y-%m-%d"),
            start.format("%H"),
            uuid::Uuid::now_v7().simple()
        );
        let path = self.location.child(&relative);
        let upload = BufWriter::new(Arc::clone(&self.location.store), path.clone());
        let writer = AsyncArrowWriter::try_new(
            upload,
            Arc::clone(&self.file_schema),
            Some(self.props.clone()),
        )
        .map_err(|source| SinkError::Parquet {
            path: path.to_string(),
            source,
        })?;
        Ok(OpenFile {
            path,
            writer,
            rows: 0,
            opened: Instant::now(),
            last_write: 0,
            acks: Vec::new(),
        })
    }

    async fn commit(&mut self, key: PartitionKey) -> Result<(), SinkError> {
        let Some(file) = self.open.remove(&key) else {
            return Ok(());
        };
        let OpenFile {
            path,
            mut writer,
            rows,
            acks,
            ..
        } = file;
        match writer.finish().await {
            Ok(_) => {
                let size = writer.bytes_written() as u64;
                self.stats.rows += rows;
                self.stats.files += 1;
                self.stats.bytes += size;
                tracing::debug!(%path, rows, size, "lake file committed");
                drop(acks);
                Ok(())
            }
            Err(source) => {
                fail(acks);
                Err(SinkError::Parquet {
                    path: path.to_string(),
                    source,
                })
            }
        }
    }

    /// Commits every file older than the configured age; returns how many.
    pub async fn roll_due(&mut self) -> Result<usize, SinkError> {
        let due: Vec<PartitionKey> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened.elapsed() >= self.max_age)
            .map(|(k, _)| *k)
            .collect();
        for key in &due {
            self.commit(*key).await?;
        }
        Ok(due.len())
    }

    /// Commits every open file (shutdown, end of input).
    pub async fn close_all(&mut self) -> Result<(), SinkError> {
        let mut keys: Vec<PartitionKey> = self.open.keys().copied().collect();
        keys.sort_by_key(|k| (k.source, k.hour));
        let mut first_error = None;
        for key in keys {
            if let Err(e) = self.commit(key).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Rows, files and bytes committed so far.
    pub fn stats(&self) -> LakeStats {
        self.stats
    }

    /// Number of files currently open.
    pub fn open_files(&self) -> usize {
        self.open.len()
    }

    /// The schema of the Parquet files (the event schema without `source`).
    pub fn file_schema(&self) -> SchemaRef {
        Arc::clone(&self.file_schema)
    }
}

fn fail(acks: Vec<Ack>) {
    for ack in acks {
        ack.fail();
    }
}

/// Splits a batch into one part per event hour, in order of first appearance.
/// Batches from one source usually cover one hour, which costs one scan.
fn split_by_hour(
    batch: &RecordBatch,
    ts_column: usize,
) -> Result<Vec<(i64, RecordBatch)>, SinkError> {
    const HOUR_US: i64 = 3_600_000_000;
    let ts = batch
        .column(ts_column)
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or(SinkError::Schema("ts is not a microsecond timestamp"))?;
    let hours = ts.values().iter().map(|t| t.div_euclid(HOUR_US));
    let first = ts.value(0).div_euclid(HOUR_US);
    if ts.null_count() == 0 && hours.clone().all(|h| h == first) {
        return Ok(vec![(first, batch.clone())]);
    }
    let mut groups: Vec<(i64, Vec<u32>)> = Vec::new();
    for (i, h) in hours.enumerate() {
        match groups.iter_mut().find(|(g, _)| *g == h) {
            Some((_, rows)) => rows.push(i as u32),
            None => groups.push((h, vec![i as u32])),
        }
    }
    groups
        .into_iter()
        .map(|(h, rows)| {
            let part =
                take_record_batch(batch, &UInt32Array::from(rows)).map_err(SinkError::Arrow)?;
            Ok((h, part))
        })
        .collect()
}

#[async_trait::async_trait]
impl crate::SinkSpec for LakeConfig {
    fn name(&self) -> &'static str {
        "lake"
    }

    fn takes(&self) -> crate::Takes {
        crate::Takes::Events
    }

    /// One writer per format: the formats encode in parallel.
    fn lanes(&self) -> crate::Lanes {
        crate::Lanes::PerFormat
    }

    fn check(&self) -> Result<(), SinkError> {
        crate::store::check_url("lake.url", &self.url)
    }

    async fn open(&self) -> Result<Box<dyn crate::Sink>, SinkError> {
        Ok(Box::new(LakeWriter::open(self).await?))
    }
}

#[async_trait::async_trait]
impl crate::Sink for LakeWriter {
    async fn write(&mut self, batch: &crate::SinkBatch) -> Result<(), SinkError> {
        LakeWriter::write(self, batch.format, &batch.events, &batch.ack).await
    }

    async fn roll_due(&mut self) -> Result<(), SinkError> {
        LakeWriter::roll_due(self).await.map(drop)
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.close_all().await
    }

    fn stats(&self) -> crate::SinkStats {
        let LakeStats { rows, files, bytes } = LakeWriter::stats(self);
        crate::SinkStats {
            rows,
            files,
            bytes,
            ..crate::SinkStats::default()
        }
    }

    fn open_files(&self) -> usize {
        LakeWriter::open_files(self)
    }
}
