//! Shared pieces of seclake's benchmarks: fixture data, the JSON parse floor
//! every throughput is compared with, and the lake's Parquet encoding.
//!
//! The criterion benches live in `benches/benches/`, the end-to-end command in
//! `src/bin/seclake-bench.rs`; `README.md` says how to run and read them.
//!
//! **The floor.** Absolute times on a shared 2-core machine drift from run to
//! run, so every figure is read against a floor measured in the same run: one
//! thread parsing each line of the same input into a generic
//! `sonic_rs::Value` ([`floor_parse_line`]). A ratio `x / floor` of 0.5 means
//! "half as fast as merely parsing the JSON on one core".

// Every bench binary links this crate, so they all run on `seclake`'s
// allocator: floors and figures are then measured as the product runs.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use arrow::array::RecordBatch;
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use seclake_enrich::parse::{Enricher, Parsed};
use seclake_enrich::scoring::WindowScorer;
use seclake_enrich::threat::ThreatEngine;
use seclake_enrich::time_window::TimeWindow;

pub use seclake_fixtures::Format;

/// Seed of every bench's fixture data, so runs compare like with like.
pub const SEED: u64 = 42;

/// Records per parsed batch in the benches: about what one 2 MiB read of WAF
/// logs holds (the pipeline's default `batch_bytes`).
pub const BATCH_RECORDS: usize = 1024;

/// The UTC day every bench's fixture logs fall in.
pub fn bench_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 25).expect("a valid date")
}

/// The pipeline's name for a fixture format.
pub fn ingest_format(format: Format) -> seclake_ingest::Format {
    match format {
        Format::Waf => seclake_ingest::Format::Waf,
        Format::Falco => seclake_ingest::Format::Falco,
        Format::App => seclake_ingest::Format::App,
        Format::GuardDuty => seclake_ingest::Format::GuardDuty,
    }
}

/// A fixture format by name (`waf`, `falco`, `app`, `guardduty`).
pub fn format_by_name(name: &str) -> Option<Format> {
    Format::ALL.into_iter().find(|f| f.as_str() == name)
}

/// `n` deterministic fixture lines of `format` as NDJSON (malformed ones
/// included, ~0.1%, as in the generated files).
pub fn fixture_ndjson(format: Format, n: usize) -> Vec<u8> {
    match format {
        Format::Waf => seclake_fixtures::waf_lines(SEED, bench_date(), n),
        Format::Falco => seclake_fixtures::falco_lines(SEED, bench_date(), n),
        Format::App => seclake_fixtures::app_lines(SEED, bench_date(), n),
        Format::GuardDuty => seclake_fixtures::guardduty_lines(SEED, bench_date(), n),
    }
}

/// The non-blank lines of an NDJSON buffer, without their newline; blank
/// lines are skipped, as the file source does.
pub fn split_lines(ndjson: &[u8]) -> Vec<&[u8]> {
    ndjson
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .collect()
}

/// The floor's unit of work: parses one line into a generic
/// `sonic_rs::Value` and drops it; `false` when it is not valid JSON.
#[inline]
pub fn floor_parse_line(line: &[u8]) -> bool {
    sonic_rs::from_slice::<sonic_rs::Value>(line).is_ok()
}

/// What one floor pass over an input saw.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct FloorStats {
    /// Non-blank lines.
    pub lines: u64,
    /// Lines that did not parse as JSON.
    pub invalid: u64,
    /// Bytes read, newlines included.
    pub bytes: u64,
    /// Wall time of the pass (reading included).
    pub elapsed: Duration,
}

impl FloorStats {
    /// Adds another pass (e.g. another format's file).
    pub fn add(&mut self, other: &FloorStats) {
        self.lines += other.lines;
        self.invalid += other.invalid;
        self.bytes += other.bytes;
        self.elapsed += other.elapsed;
    }
}

/// Read size of the floor's streaming reader (the file source's default too).
const FLOOR_BLOCK: usize = 1 << 20;

/// The floor over a stream: reads `input` in 1 MiB blocks on this thread and
/// parses every non-blank line with [`floor_parse_line`]. Memory stays at one
/// block (more only for a line longer than that).
pub fn floor_parse_reader<R: Read>(mut input: R) -> io::Result<FloorStats> {
    let started = Instant::now();
    let mut stats = FloorStats::default();
    let mut buf = vec![0u8; FLOOR_BLOCK];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            // One line fills the whole buffer: grow it rather than split the line.
            buf.resize(buf.len() * 2, 0);
        }
        let n = match input.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stats.bytes += n as u64;
        // Only the new bytes can hold a newline the last scan did not see.
        let scan_from = filled;
        filled += n;
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &buf[scan_from..filled]) {
            floor_line(&buf[start..scan_from + nl], &mut stats);
            start = scan_from + nl + 1;
        }
        if n == 0 {
            floor_line(&buf[start..filled], &mut stats);
            break;
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
    stats.elapsed = started.elapsed();
    Ok(stats)
}

fn floor_line(line: &[u8], stats: &mut FloorStats) {
    if line.is_empty() {
        return;
    }
    stats.lines += 1;
    if !floor_parse_line(line) {
        stats.invalid += 1;
    }
}

/// An enricher as a pipeline worker has it, without GeoIP and with no time
/// window: the benches parse fixture records with ingest time 0.
pub fn enricher() -> Enricher {
    Enricher::new(
        None,
        Arc::new(ThreatEngine::defaults()),
        TimeWindow::UNBOUNDED,
    )
}

/// Parses `lines` of `format` with the real typed parser (no GeoIP), in
/// batches of `batch_records`, as the pipeline's workers do.
pub fn parse_batches(format: Format, lines: &[&[u8]], batch_records: usize) -> Result<Vec<Parsed>> {
    let mut enricher = enricher();
    lines
        .chunks(batch_records.max(1))
        .map(|chunk| {
            enricher
                .parse_records(ingest_format(format), chunk.iter().map(|l| (*l, None)), 0)
                .context("building a record batch")
        })
        .collect()
}

/// Parsed batches after the sequential window stage: the batches the lake
/// is given, in order.
pub fn scored_batches(parsed: &[Parsed]) -> Result<Vec<RecordBatch>> {
    let mut scorer = WindowScorer::new(Arc::new(ThreatEngine::defaults()));
    parsed
        .iter()
        .map(|p| scorer.apply(p).context("window scoring"))
        .collect()
}

/// The lake's Parquet writer settings (`seclake_sink::lake::writer_properties`).
pub fn lake_writer_properties(zstd_level: i32, row_group_rows: usize) -> Result<WriterProperties> {
    let (schema, _) = seclake_sink::lake::file_schema()?;
    Ok(seclake_sink::lake::writer_properties(
        &schema,
        zstd_level,
        row_group_rows,
    )?)
}

/// An event batch as the lake writes it to a file: every column but the
/// partition column `source`, which lives in the path.
pub fn lake_file_batch(batch: &RecordBatch) -> Result<RecordBatch> {
    let (_, columns) = seclake_sink::lake::file_schema()?;
    Ok(batch.project(&columns)?)
}

/// Encodes `batch` into one in-memory Parquet file with `props`; returns the file.
pub fn encode_parquet(batch: &RecordBatch, props: &WriterProperties) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 4);
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props.clone()))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(out)
}

/// The workspace root (`benches/..`), as built.
pub fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The project's shared directory: `$SECLAKE_SHARED`, else `shared/` beside
/// the workspace (`<workspace>/../shared`).
pub fn shared_dir() -> PathBuf {
    std::env::var_os("SECLAKE_SHARED")
        .filter(|v| !v.is_empty())
        .map_or_else(|| workspace_dir().join("..").join("shared"), PathBuf::from)
}

/// Paths listed in environment variable `var`, separated by commas (e.g. the
/// IPv4 and IPv6 files of ip-location-db); empty when unset.
pub fn env_paths(var: &str) -> Vec<PathBuf> {
    std::env::var(var)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// A small, fast, deterministic generator (SplitMix64) for bench inputs.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_reader_counts_every_line_across_block_boundaries() {
        let line = br#"{"a":1,"b":"xyz"}"#;
        let mut input = Vec::new();
        for i in 0..200_000 {
            input.extend_from_slice(line);
            input.push(b'\n');
            if i % 1000 == 0 {
                input.extend_from_slice(b"not json\n\n");
            }
        }
        input.extend_from_slice(line); // no final newline
        let stats = floor_parse_reader(&input[..]).unwrap();
        assert_eq!(stats.lines, 200_001 + 200);
        assert_eq!(stats.invalid, 200);
        assert_eq!(stats.bytes, input.len() as u64);
    }

    #[test]
    fn floor_reader_grows_for_a_line_longer_than_a_block() {
        let mut line = b"[".to_vec();
        line.extend(std::iter::repeat_n(b"1,".as_slice(), FLOOR_BLOCK).flatten());
        line.extend_from_slice(b"1]\n{}\n");
        let stats = floor_parse_reader(&line[..]).unwrap();
        assert_eq!((stats.lines, stats.invalid), (2, 0));
    }

    #[test]
    fn parquet_encoding_of_parsed_waf_reads_back_every_row() {
        let data = fixture_ndjson(Format::Waf, 500);
        let lines = split_lines(&data);
        let parsed = parse_batches(Format::Waf, &lines, 128).unwrap();
        let rows: usize = parsed.iter().map(|p| p.events.num_rows()).sum();
        let rejects: usize = parsed.iter().map(|p| p.rejects.len()).sum();
        assert_eq!(rows + rejects, 500);
        let batch = lake_file_batch(&scored_batches(&parsed).unwrap()[0]).unwrap();
        let file = encode_parquet(&batch, &lake_writer_properties(3, 1 << 17).unwrap()).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(file),
        )
        .unwrap()
        .build()
        .unwrap();
        let read: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(read, batch.num_rows());
    }
}
