//! `seclake backfill opensearch`: re-index one day of the lake into
//! OpenSearch, after an outage longer than the sink's backup covers or into a
//! new cluster.
//!
//! The day's partitions (`source=<src>/dt=<day>/hour=*/part-*.parquet`) are
//! read file by file and row group by row group on a thread of their own,
//! given back their `source` column (a Hive partition key, not stored in the
//! files), and handed to the same [`OpenSearchSink`] the pipeline runs: index
//! templates, `_bulk` sizing, retries, dead letters and the backup behave
//! exactly as they do there. Memory stays bounded whatever the day's size:
//! one row group is read at a time, at most [`QUEUED_BATCHES`] decoded batches
//! wait for the sink, and the sink holds at most `concurrency` bulk requests
//! in flight, so a slow cluster slows the reading.
//!
//! Every document is indexed with `_id = event_id`, so a backfill can be run
//! again, or over documents the pipeline already indexed, without making
//! copies; an event the lake holds twice (at-least-once delivery) is one
//! document. In `mode = "data_stream"` a re-delivered event is answered 409
//! and settled as present only while its backing index is the write index:
//! after a rollover a backfill adds a second copy.
//!
//! Each file's batches share one Ack; the backfill waits for all of them and
//! fails when one failed (its documents could not be indexed, dead-lettered
//! or backed up) or the sink returned an error. Documents dead-lettered or
//! backed up count as delivered, as in the pipeline; the summary says how
//! many.
//!
//! A day the lake has no partitions of, for every source asked for, fails
//! before anything is sent (see [`BackfillError::NothingToIndex`] for why it
//! is not a successful no-op); one source without partitions beside others
//! that have some is zero rows in the summary.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use seclake_ingest::{Ack, AckStatus, AckWaiter, Format};
use seclake_sink::store::{Location, S3Options};
use seclake_sink::{OpenSearchSink, Rejected, Sink as _, SinkBatch, SinkError, SinkStats};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::config::Config;

/// Rows per batch handed to the sink.
const BATCH_ROWS: usize = 4096;
/// Decoded batches waiting for the sink, at most.
const QUEUED_BATCHES: usize = 2;
/// How often the sink rolls what is due while the reader is busy.
const IDLE_ROLL: Duration = Duration::from_millis(500);

/// `seclake backfill …`.
#[derive(Debug, clap::Subcommand)]
pub enum BackfillCommand {
    /// Re-index one UTC day of the lake into the config's `[opensearch]`,
    /// idempotently (`_id = event_id`). A day the lake has no partitions of
    /// fails (exit 1): most likely a wrong --date or config.
    #[command(name = "opensearch")]
    OpenSearch(OpenSearchArgs),
}

/// The flags of `seclake backfill opensearch`.
#[derive(Debug, Clone, clap::Args)]
pub struct OpenSearchArgs {
    /// The day to re-index, YYYY-MM-DD: the lake's `dt` partition (UTC).
    #[arg(long)]
    pub date: NaiveDate,
    /// The seclake config: reads its `[lake]`, indexes into its
    /// `[opensearch]` (refused documents go to its `[dlq]`).
    #[arg(long, short)]
    pub config: PathBuf,
    /// The sources to re-index, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "waf,falco,app")]
    pub sources: Vec<Format>,
}

/// Why a backfill could not start or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The config names no cluster.
    #[error(
        "the config has no [opensearch] section: add one naming the cluster to index into (url, index_prefix, ...)"
    )]
    NoOpenSearch,
    /// A local lake that does not exist (opening it would create it).
    #[error("lake.url {url}: no such directory")]
    NoLake {
        /// The lake's URL.
        url: String,
    },
    /// The lake's URL or store is unusable.
    #[error("[lake]: {0}")]
    Lake(SinkError),
    /// Listing the day's partitions failed.
    #[error("listing {path}: {error}")]
    List {
        /// The prefix listed.
        path: String,
        /// What the store said.
        error: object_store::Error,
    },
    /// The lake holds nothing for the day and sources.
    ///
    /// An error rather than a successful no-op: the backfill is run to
    /// restore data the operator expects to be there, so an empty day almost
    /// always means a wrong `--date` (a local day instead of the UTC one, a
    /// typo, a day not yet written), a wrong config (another lake), or a
    /// lake that lost data; each needs a look, and exit 0 would let a script
    /// or a runbook record the day as restored. A source with no partitions
    /// beside others that have some is normal (a quiet Falco) and only shows
    /// as zero rows.
    #[error(
        "nothing to index: the lake {lake} has no partitions of {date} for {sources} \
         (looked for source=<source>/dt={date}/); check --date (a UTC day) and the config's [lake] url"
    )]
    NothingToIndex {
        /// The lake's URL.
        lake: String,
        /// The day.
        date: NaiveDate,
        /// The sources looked at, e.g. `waf, falco, app`.
        sources: String,
    },
    /// A Parquet file could not be read.
    #[error("reading {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// The reader's error.
        error: ParquetError,
    },
    /// A file's columns do not fit the event schema.
    #[error("{path}: does not fit the event schema: {error}")]
    Schema {
        /// The file.
        path: String,
        /// What did not fit.
        error: arrow::error::ArrowError,
    },
    /// The OpenSearch sink failed (opening, writing or closing).
    #[error("[opensearch]: {0}")]
    Sink(SinkError),
    /// The runtime or the reader thread could not start, or the reader died.
    #[error("{0}")]
    Internal(String),
    /// Some files' documents were not delivered anywhere.
    #[error(
        "{failed} of {files} files were not delivered (indexed, dead-lettered or backed up); \
         see the errors above, then run the backfill again"
    )]
    NotDelivered {
        /// Files whose Ack failed.
        failed: u64,
        /// Files read.
        files: u64,
    },
}

/// What was read of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceCounts {
    /// The source.
    pub format: Format,
    /// Parquet files of the day.
    pub files: u64,
    /// Rows read from them.
    pub rows: u64,
}

/// What a backfill did.
#[derive(Debug)]
pub struct BackfillSummary {
    /// The day.
    pub date: NaiveDate,
    /// The lake read.
    pub lake: String,
    /// The cluster written to.
    pub url: String,
    /// Its index prefix.
    pub index_prefix: String,
    /// Rows read, per source, in the order asked for.
    pub sources: Vec<SourceCounts>,
    /// The sink's counts: `rows` documents indexed (an event stored twice
    /// counts twice), `files` bulk requests, retries, dead letters and backups.
    pub sink: SinkStats,
    /// Files whose Ack failed.
    pub failed_files: u64,
    /// Wall time, listing and opening included.
    pub seconds: f64,
    /// Why the backfill stopped before the end, if it did.
    pub error: Option<BackfillError>,
}

impl BackfillSummary {
    /// Rows read from every source.
    pub fn rows(&self) -> u64 {
        self.sources.iter().map(|s| s.rows).sum()
    }

    /// Files read from every source.
    pub fn files(&self) -> u64 {
        self.sources.iter().map(|s| s.files).sum()
    }

    /// Documents indexed per second of wall time.
    pub fn docs_per_second(&self) -> f64 {
        self.sink.rows as f64 / self.seconds.max(1e-9)
    }

    /// `Ok` when everything read was delivered: the error that stopped the
    /// backfill, else [`BackfillError::NotDelivered`] when an Ack failed.
    pub fn into_result(self) -> Result<(), BackfillError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.failed_files > 0 {
            return Err(BackfillError::NotDelivered {
                failed: self.failed_files,
                files: self.files(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for BackfillSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "backfill of {} from {} into {} (indices {}-*)",
            self.date, self.lake, self.url, self.index_prefix
        )?;
        writeln!(f, "{:<8} {:>8} {:>12}", "source", "files", "rows read")?;
        for s in &self.sources {
            writeln!(f, "{:<8} {:>8} {:>12}", s.format.as_str(), s.files, s.rows)?;
        }
        writeln!(f, "{:<8} {:>8} {:>12}", "total", self.files(), self.rows())?;
        let s = &self.sink;
        writeln!(
            f,
            "opensearch: {} documents indexed in {} requests ({:.1} MB); {} retried, {} dead-lettered, {} backed up",
            s.rows,
            s.files,
            s.bytes as f64 / 1e6,
            s.retried,
            s.dead_lettered,
            s.backed_up
        )?;
        writeln!(
            f,
            "{:.1} s, {:.0} docs/s",
            self.seconds,
            self.docs_per_second()
        )?;
        if s.dead_lettered > 0 {
            writeln!(
                f,
                "note: OpenSearch refused {} documents; they are in the dead letters ([dlq]) with its reasons",
                s.dead_lettered
            )?;
        }
        if self.error.is_some() || self.failed_files > 0 {
            writeln!(
                f,
                "incomplete: the backfill stopped or lost documents (see the error); running it again is safe"
            )?;
        }
        if s.backed_up > 0 {
            writeln!(
                f,
                "warning: {} documents were not indexed within opensearch.max_retry_secs and were written to \
                 the backup (opensearch.backup_url); run the backfill again once the cluster is healthy",
                s.backed_up
            )?;
        }
        Ok(())
    }
}

/// One Parquet file of the day.
#[derive(Debug, Clone)]
struct LakeFile {
    format: Format,
    path: Path,
    size: u64,
}

/// The lake, opened for reading.
struct Lake {
    location: Location,
}

impl Lake {
    /// Opens `[lake]` without creating a local lake that is not there.
    fn open(cfg: &Config) -> Result<Lake, BackfillError> {
        let url = &cfg.lake.url;
        if let Some(dir) = url.strip_prefix("file://")
            && !std::path::Path::new(dir).is_dir()
        {
            return Err(BackfillError::NoLake { url: url.clone() });
        }
        let s3 = S3Options {
            endpoint: cfg.lake.endpoint.clone(),
            region: cfg.lake.region.clone(),
        };
        let location = Location::open("lake.url", url, &s3).map_err(BackfillError::Lake)?;
        Ok(Lake { location })
    }

    /// An object's path for messages: the lake's URL and the path under it.
    fn shown(&self, path: &Path) -> String {
        let prefix = self.location.prefix.as_ref();
        let full = path.as_ref();
        let relative = if prefix.is_empty() {
            full
        } else {
            full.strip_prefix(prefix)
                .map_or(full, |rest| rest.trim_start_matches('/'))
        };
        format!("{}/{relative}", self.location.url.trim_end_matches('/'))
    }

    async fn list(&self, prefix: &Path) -> Result<object_store::ListResult, BackfillError> {
        match self.location.store.list_with_delimiter(Some(prefix)).await {
            Ok(listing) => Ok(listing),
            Err(object_store::Error::NotFound { .. }) => Ok(object_store::ListResult {
                common_prefixes: Vec::new(),
                objects: Vec::new(),
            }),
            Err(error) => Err(BackfillError::List {
                path: self.shown(prefix),
                error,
            }),
        }
    }

    /// The day's Parquet files of `format`, in path order (hour by hour).
    async fn day_files(
        &self,
        format: Format,
        date: NaiveDate,
    ) -> Result<Vec<LakeFile>, BackfillError> {
        let day = self
            .location
            .child(&format!("source={format}/dt={}", date.format("%Y-%m-%d")));
        let listing = self.list(&day).await?;
        let mut objects = listing.objects;
        let mut hours = listing.common_prefixes;
        hours.sort();
        for hour in &hours {
            objects.extend(self.list(hour).await?.objects);
        }
        let mut files: Vec<LakeFile> = objects
            .into_iter()
            .filter(|o| o.location.extension() == Some("parquet"))
            .map(|o| LakeFile {
                format,
                path: o.location,
                size: o.size,
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }
}

/// Re-indexes `args.date` of the lake into `[opensearch]`.
///
/// Errors before anything is sent (no `[opensearch]`, an unreadable lake, an
/// empty day, a cluster that can't be reached) are returned; an error after
/// that stops the reading and is kept in the summary, which then also
/// counts what was delivered: see [`BackfillSummary::into_result`].
pub fn opensearch(
    cfg: &Config,
    args: &OpenSearchArgs,
    progress: bool,
) -> Result<BackfillSummary, BackfillError> {
    let started = Instant::now();
    let os = cfg.opensearch.as_ref().ok_or(BackfillError::NoOpenSearch)?;
    let mut formats: Vec<Format> = Vec::new();
    for format in &args.sources {
        if !formats.contains(format) {
            formats.push(*format);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("seclake-backfill")
        .enable_all()
        .build()
        .map_err(|e| BackfillError::Internal(format!("starting the runtime: {e}")))?;
    let lake = Lake::open(cfg)?;
    let mut files = Vec::new();
    let mut sources = Vec::new();
    for &format in &formats {
        let found = rt.block_on(lake.day_files(format, args.date))?;
        sources.push(SourceCounts {
            format,
            files: found.len() as u64,
            rows: 0,
        });
        files.extend(found);
    }
    if files.is_empty() {
        return Err(BackfillError::NothingToIndex {
            lake: cfg.lake.url.clone(),
            date: args.date,
            sources: formats
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if let Some(days) = os.retention_days {
        let today = chrono::Utc::now().date_naive();
        if today
            .checked_sub_days(chrono::Days::new(u64::from(days)))
            .is_some_and(|oldest| args.date < oldest)
        {
            tracing::warn!(
                "{} is more than opensearch.retention_days ({days}) ago: retention may delete what this indexes",
                args.date
            );
        }
    }
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    tracing::info!(
        "backfill of {}: {} files ({:.1} MB) in {}",
        args.date,
        files.len(),
        bytes as f64 / 1e6,
        cfg.lake.url
    );
    let mut sink = rt
        .block_on(OpenSearchSink::open(os))
        .map_err(BackfillError::Sink)?;

    let (tx, rx) = mpsc::channel(QUEUED_BATCHES);
    let reader = {
        let handle = rt.handle().clone();
        let store = Arc::clone(&lake.location.store);
        let files = files.clone();
        let shown: Vec<String> = files.iter().map(|f| lake.shown(&f.path)).collect();
        std::thread::Builder::new()
            .name("seclake-backfill-read".into())
            .spawn(move || read_files(&handle, &store, &files, &shown, &tx))
            .map_err(|e| BackfillError::Internal(format!("starting the reader thread: {e}")))?
    };
    let bar = Bar::new(progress, bytes);
    let mut run = Indexing {
        files: &files,
        sources: &mut sources,
        bar: &bar,
        waiters: Vec::new(),
        current: None,
        read_bytes: 0,
    };
    let error = rt.block_on(run.index(&mut sink, rx));
    let waiters = std::mem::take(&mut run.waiters);
    drop(run);
    let mut error = error.err();
    if reader.join().is_err() && error.is_none() {
        error = Some(BackfillError::Internal("the reader thread panicked".into()));
    }
    let closed = rt.block_on(sink.close());
    if let Err(e) = closed {
        error.get_or_insert(BackfillError::Sink(e));
    }
    let stats = sink.stats();
    // The sink's own Ack clones go with it; every waiter resolves now.
    drop(sink);
    let failed_files = rt.block_on(async {
        let mut failed = 0;
        for waiter in waiters {
            if waiter.wait().await == AckStatus::Failed {
                failed += 1;
            }
        }
        failed
    });
    bar.finish();
    Ok(BackfillSummary {
        date: args.date,
        lake: cfg.lake.url.clone(),
        url: os.url.clone(),
        index_prefix: os.index_prefix.clone(),
        sources,
        sink: stats,
        failed_files,
        seconds: started.elapsed().as_secs_f64(),
        error,
    })
}

/// What the reader thread sends.
enum Read {
    /// A file was opened; it has this many rows.
    Opened { file: usize, rows: u64 },
    /// Events of the file, in the event schema.
    Batch { file: usize, events: RecordBatch },
    /// The file was read to its end.
    Done { file: usize },
    /// Reading stopped.
    Failed(BackfillError),
}

/// Reads every file in turn, row group by row group; stops at the first
/// error (sent on) or when nobody listens any more.
fn read_files(
    handle: &Handle,
    store: &Arc<dyn ObjectStore>,
    files: &[LakeFile],
    shown: &[String],
    tx: &mpsc::Sender<Read>,
) {
    let schema = seclake_enrich::schema::event_schema();
    for (i, file) in files.iter().enumerate() {
        let path = &shown[i];
        match read_file(handle, store, &schema, i, file, path, tx) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                let _ = tx.blocking_send(Read::Failed(e));
                return;
            }
        }
    }
}

/// Sends one file's batches; `Ok(false)` when the receiver is gone.
fn read_file(
    handle: &Handle,
    store: &Arc<dyn ObjectStore>,
    schema: &SchemaRef,
    i: usize,
    file: &LakeFile,
    path: &str,
    tx: &mpsc::Sender<Read>,
) -> Result<bool, BackfillError> {
    let read_err = |error| BackfillError::Read {
        path: path.to_owned(),
        error,
    };
    let input = FileReader {
        store: Arc::clone(store),
        path: file.path.clone(),
        size: file.size,
    };
    let builder = handle
        .block_on(ParquetRecordBatchStreamBuilder::new(input))
        .map_err(read_err)?;
    let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    // Only the columns this build knows; a newer file's extra ones are skipped.
    let known: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name() != "source" && schema.column_with_name(f.name()).is_some())
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), known);
    let mut stream = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(read_err)?;
    if tx.blocking_send(Read::Opened { file: i, rows }).is_err() {
        return Ok(false);
    }
    while let Some(group) = handle.block_on(stream.next_row_group()).map_err(read_err)? {
        for batch in group {
            let batch = batch.map_err(|e| read_err(e.into()))?;
            let events =
                to_events(schema, &batch, file.format).map_err(|error| BackfillError::Schema {
                    path: path.to_owned(),
                    error,
                })?;
            if tx.blocking_send(Read::Batch { file: i, events }).is_err() {
                return Ok(false);
            }
        }
    }
    Ok(tx.blocking_send(Read::Done { file: i }).is_ok())
}

/// What [`AsyncFileReader`] returns.
type Fetch<'a, T> = Pin<Box<dyn Future<Output = Result<T, ParquetError>> + Send + 'a>>;

/// A lake file, read by byte ranges through object_store: the footer (its
/// size is known from the listing, so no `HEAD`), then one row group's column
/// chunks at a time.
struct FileReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn store_error(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for FileReader {
    fn get_bytes(&mut self, range: Range<u64>) -> Fetch<'_, Bytes> {
        Box::pin(async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(store_error)
        })
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> Fetch<'_, Vec<Bytes>> {
        Box::pin(async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(store_error)
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> Fetch<'a, Arc<ParquetMetaData>> {
        Box::pin(async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_metadata_options(options.map(|o| o.metadata_options().clone()))
                // The footer and most of the metadata in one request.
                .with_prefetch_hint(Some(64 << 10))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        })
    }
}

/// A batch of a lake file as the pipeline hands it to the sinks: every
/// column of the event schema in its order, `source` from the partition, a
/// column missing from an older file null, a column stored with another
/// type cast to this build's.
fn to_events(
    schema: &SchemaRef,
    batch: &RecordBatch,
    format: Format,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let rows = batch.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = if field.name() == "source" {
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                format.as_str(),
                rows,
            ))) as ArrayRef
        } else {
            match batch.column_by_name(field.name()) {
                Some(c) if c.data_type() == field.data_type() => Arc::clone(c),
                Some(c) => arrow::compute::cast(c, field.data_type())?,
                None => new_null_array(field.data_type(), rows),
            }
        };
        columns.push(column);
    }
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// The consumer's state: counts, the current file's Ack, the progress bar.
struct Indexing<'a> {
    files: &'a [LakeFile],
    sources: &'a mut Vec<SourceCounts>,
    bar: &'a Bar,
    waiters: Vec<AckWaiter>,
    /// The file being sent, its Ack, its rows and the rows sent of it.
    current: Option<(usize, Ack, u64, u64)>,
    /// Bytes of the files sent to their end.
    read_bytes: u64,
}

impl Indexing<'_> {
    /// Hands every batch to the sink until the reader is done; the first
    /// error stops it (dropping `rx` stops the reader).
    async fn index(
        &mut self,
        sink: &mut OpenSearchSink,
        mut rx: mpsc::Receiver<Read>,
    ) -> Result<(), BackfillError> {
        let no_dead_letters: Arc<[Rejected]> = Arc::from(Vec::new());
        loop {
            let read = match tokio::time::timeout(IDLE_ROLL, rx.recv()).await {
                Ok(Some(read)) => read,
                Ok(None) => return Ok(()),
                Err(_) => {
                    sink.roll_due().await.map_err(BackfillError::Sink)?;
                    continue;
                }
            };
            match read {
                Read::Opened { file, rows } => {
                    let (ack, waiter) = Ack::new();
                    self.waiters.push(waiter);
                    self.current = Some((file, ack, rows, 0));
                }
                Read::Batch { file, events } => {
                    let Some((_, ack, rows, sent)) =
                        self.current.as_mut().filter(|(f, ..)| *f == file)
                    else {
                        return Err(BackfillError::Internal(format!(
                            "a batch of file {file} came before the file was opened"
                        )));
                    };
                    let format = self.files[file].format;
                    *sent += events.num_rows() as u64;
                    let done = (*sent, *rows);
                    let batch = SinkBatch {
                        format,
                        events,
                        dead_letters: Arc::clone(&no_dead_letters),
                        ack: ack.clone(),
                    };
                    if let Some(s) = self.sources.iter_mut().find(|s| s.format == format) {
                        s.rows += batch.events.num_rows() as u64;
                    }
                    sink.write(&batch).await.map_err(BackfillError::Sink)?;
                    drop(batch);
                    sink.roll_due().await.map_err(BackfillError::Sink)?;
                    self.show(file, done, &sink.stats());
                }
                Read::Done { file } => {
                    // The sink holds clones of the file's Ack until its
                    // documents are settled.
                    self.current = None;
                    self.read_bytes += self.files[file].size;
                }
                Read::Failed(e) => return Err(e),
            }
        }
    }

    fn show(&self, file: usize, (sent, rows): (u64, u64), stats: &SinkStats) {
        if !self.bar.shown() {
            return;
        }
        let size = self.files[file].size;
        let part = if rows == 0 {
            0
        } else {
            (size as f64 * (sent as f64 / rows as f64)) as u64
        };
        let read: u64 = self.sources.iter().map(|s| s.rows).sum();
        self.bar.update(
            self.read_bytes + part.min(size),
            format!(
                "{read} rows read, {} indexed; {} file {}/{}",
                stats.rows,
                self.files[file].format,
                file + 1,
                self.files.len()
            ),
        );
    }
}

/// The progress bar: the day's Parquet bytes read, on a terminal only.
struct Bar(ProgressBar);

impl Bar {
    fn new(shown: bool, bytes: u64) -> Bar {
        if !shown {
            return Bar(ProgressBar::hidden());
        }
        let bar = ProgressBar::new(bytes);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:30}] {percent:>3}% {msg} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(bar)
    }

    fn shown(&self) -> bool {
        !self.0.is_hidden()
    }

    fn update(&self, position: u64, message: String) {
        self.0.set_position(position);
        self.0.set_message(message);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array as _;
    use seclake_enrich::schema::{Event, event_schema, events_to_batch};

    /// Events as the pipeline hands them to the sinks, and the same rows as
    /// a lake file stores them (without `source`).
    fn events_and_file_rows() -> (RecordBatch, RecordBatch) {
        let events: Vec<Event> = ["a", "b", "c"]
            .into_iter()
            .map(|id| Event {
                event_id: id.into(),
                source: "falco".into(),
                rule: Some("Terminal shell in container".into()),
                ..Event::default()
            })
            .collect();
        let batch = events_to_batch(&events).expect("batch");
        let (_, columns) = seclake_sink::lake::file_schema().expect("file schema");
        let stored = batch.project(&columns).expect("projected");
        (batch, stored)
    }

    #[test]
    fn a_lake_batch_becomes_the_pipeline_s_batch_with_its_source_from_the_partition() {
        let (events, stored) = events_and_file_rows();
        let back = to_events(&event_schema(), &stored, Format::Falco).expect("events");
        assert_eq!(back, events);
    }

    #[test]
    fn a_column_an_older_file_lacks_reads_as_null() {
        let (events, stored) = events_and_file_rows();
        let rule = stored.schema().index_of("rule").expect("rule");
        let kept: Vec<usize> = (0..stored.num_columns()).filter(|i| *i != rule).collect();
        let older = stored.project(&kept).expect("projected");
        let back = to_events(&event_schema(), &older, Format::Falco).expect("events");
        assert_eq!(back.schema(), events.schema());
        let rule = back.column_by_name("rule").expect("rule");
        assert_eq!(rule.null_count(), 3);
    }

    #[test]
    fn a_file_without_a_required_column_is_refused_naming_it() {
        let (_, stored) = events_and_file_rows();
        let ts = stored.schema().index_of("ts").expect("ts");
        let kept: Vec<usize> = (0..stored.num_columns()).filter(|i| *i != ts).collect();
        let broken = stored.project(&kept).expect("projected");
        let error = to_events(&event_schema(), &broken, Format::Falco).expect_err("no ts");
        assert!(error.to_string().contains("ts"), "{error}");
    }
}
