//! Newline-delimited records from files (plain or gzip), globs and stdin.
//!
//! Records are read in large blocks and split at newlines without copying:
//! a [`Batch`] holds one block and the byte ranges of its lines. Blank lines are
//! skipped but still counted, so a record's line number matches `sed -n Np`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use serde::Deserialize;

use crate::source::{
    Claim, Finished, KeyError, Outstanding, ReadStats, Source, SourceContext, SourceSpec,
};
use crate::{Ack, AckStatus, AckWaiter, Batch, Flaw, Format, Origin, Record, SourceError};

/// `[[source]] type = "file"`: NDJSON files, `.gz` ones decompressed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Format of every record: `waf`, `falco`, `app` or `guardduty`.
    pub format: Format,
    /// A file path or a glob (`logs/*.ndjson.gz`); matches are read in name order.
    pub path: String,
    /// Keep reading as the file grows instead of ending at EOF.
    #[serde(default)]
    pub follow: bool,
    /// Bytes read per batch (default 2 MiB).
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Longest record accepted (default 1 MiB); longer ones go to the
    /// dead-letter output holding their first `max_record_bytes`.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
}

/// `[[source]] type = "stdin"`: NDJSON on standard input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// Format of every record.
    pub format: Format,
    /// Bytes read per batch (default 2 MiB).
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Longest record accepted (default 1 MiB).
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
}

/// Per-batch costs (a record batch of some 60 columns, a Parquet write per
/// column) are a tenth of the CPU at 512 KiB; 2 MiB halves them against
/// 1 MiB for 16 MiB more RSS, 4 MiB gained nothing (`benches/README.md`).
pub(crate) fn default_batch_bytes() -> usize {
    2 << 20
}

pub(crate) fn default_max_record_bytes() -> usize {
    1 << 20
}

/// How often a followed file is polled for new data at EOF.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Acknowledgements a source is still waiting for, oldest first.
///
/// A file source has no offsets to commit yet, but it keeps the waiters so the
/// run can tell whether every batch was delivered.
#[derive(Debug, Default)]
pub struct Pending {
    waiters: VecDeque<AckWaiter>,
    failed: u64,
}

impl Pending {
    pub(crate) fn push(&mut self, waiter: AckWaiter) {
        self.waiters.push_back(waiter);
        // Drop what has completed, in order, so the queue stays short.
        while let Some(front) = self.waiters.front_mut() {
            match front.try_status() {
                Some(status) => {
                    self.failed += u64::from(status == AckStatus::Failed);
                    self.waiters.pop_front();
                }
                None => break,
            }
        }
    }

    /// Waits for every outstanding batch; returns how many were not delivered.
    /// Call it only after the pipeline has been told to finish.
    pub fn wait_all(self) -> u64 {
        self.waiters
            .into_iter()
            .map(|w| u64::from(w.wait_blocking() == AckStatus::Failed))
            .sum::<u64>()
            + self.failed
    }
}

impl FileConfig {
    /// The files the path or glob names, in name order.
    pub fn paths(&self) -> Result<Vec<PathBuf>, SourceError> {
        let bad_glob = |source| SourceError::BadGlob {
            pattern: self.path.clone(),
            source,
        };
        let mut paths: Vec<PathBuf> = glob::glob(&self.path)
            .map_err(bad_glob)?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(SourceError::NoMatch {
                pattern: self.path.clone(),
            });
        }
        Ok(paths)
    }

    /// Reads every matching file into batches sent on `out`, until EOF (or,
    /// with `follow`, until `shutdown` is set).
    pub fn read(
        &self,
        ctx: &SourceContext,
        pending: &mut Pending,
    ) -> Result<ReadStats, SourceError> {
        let mut stats = ReadStats::default();
        for path in self.paths()? {
            let origin: Arc<str> = path.to_string_lossy().into();
            let reader = open(&path).map_err(|source| SourceError::Io {
                origin: origin.to_string(),
                source,
            })?;
            let mut lines =
                LineReader::new(reader, origin, self.batch_bytes, self.max_record_bytes);
            lines.follow = self.follow || ctx.follow;
            let s = lines.send_all(self.format, ctx, pending)?;
            stats.records += s.records;
            stats.bytes += s.bytes;
            stats.batches += s.batches;
            if ctx.shutdown.is_set() {
                break;
            }
        }
        Ok(stats)
    }
}

impl SourceSpec for FileConfig {
    fn format(&self) -> Format {
        self.format
    }

    fn check(&self) -> Result<(), KeyError> {
        if self.path.trim().is_empty() {
            return Err(KeyError::new("path", "is empty"));
        }
        Ok(())
    }

    fn build(&self) -> Result<Box<dyn Source>, SourceError> {
        self.paths()?;
        Ok(Box::new(LineSource::Files(self.clone())))
    }
}

impl SourceSpec for StdinConfig {
    fn format(&self) -> Format {
        self.format
    }

    fn check(&self) -> Result<(), KeyError> {
        Ok(())
    }

    fn build(&self) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(LineSource::Stdin(self.clone())))
    }

    fn exclusive(&self) -> Option<Claim> {
        Some(Claim {
            key: "type",
            resource: "stdin".into(),
        })
    }
}

/// A running file or stdin source.
enum LineSource {
    Files(FileConfig),
    Stdin(StdinConfig),
}

impl Source for LineSource {
    fn run(self: Box<Self>, ctx: &SourceContext) -> Result<Finished, SourceError> {
        let mut pending = Pending::default();
        let stats = match *self {
            LineSource::Files(config) => config.read(ctx, &mut pending),
            LineSource::Stdin(config) => config.read(ctx, &mut pending),
        }?;
        Ok(Finished {
            stats,
            outstanding: Box::new(pending),
        })
    }
}

impl Outstanding for Pending {
    fn settle(self: Box<Self>) -> u64 {
        self.wait_all()
    }
}

impl StdinConfig {
    /// Reads standard input into batches sent on `out` until EOF or `shutdown`.
    pub fn read(
        &self,
        ctx: &SourceContext,
        pending: &mut Pending,
    ) -> Result<ReadStats, SourceError> {
        let stdin = io::stdin().lock();
        LineReader::new(
            stdin,
            "stdin".into(),
            self.batch_bytes,
            self.max_record_bytes,
        )
        .send_all(self.format, ctx, pending)
    }
}

/// Opens a file for reading, decompressing it when its name ends in `.gz`.
pub fn open(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    let file = File::open(path)?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(MultiGzDecoder::new(BufReader::with_capacity(
            256 << 10,
            file,
        ))))
    } else {
        Ok(Box::new(file))
    }
}

/// Splits a byte stream into batches of newline-terminated records.
pub struct LineReader<R> {
    inner: R,
    origin: Arc<str>,
    buf: Vec<u8>,
    batch_bytes: usize,
    max_record: usize,
    /// Line number of the first line in `buf`.
    next_line: u64,
    /// Inside an over-long record whose head was already emitted.
    skipping: bool,
    eof: bool,
    follow: bool,
}

impl<R: Read> LineReader<R> {
    /// A reader of `inner`, named `origin` in positions.
    pub fn new(inner: R, origin: Arc<str>, batch_bytes: usize, max_record: usize) -> Self {
        LineReader {
            inner,
            origin,
            buf: Vec::new(),
            batch_bytes: batch_bytes.max(4096),
            max_record: max_record.max(1),
            next_line: 1,
            skipping: false,
            eof: false,
            follow: false,
        }
    }

    /// Reads until at least `want` bytes are buffered or the input ends.
    /// `read_to_end` reads into the spare capacity without zeroing it first.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        while self.buf.len() < want && !self.eof {
            let need = want - self.buf.len();
            self.buf.reserve(need);
            let n = (&mut self.inner)
                .take(need as u64)
                .read_to_end(&mut self.buf)?;
            if n < need {
                self.eof = true;
            }
        }
        Ok(())
    }

    /// The next block of whole records, or `None` at the end of input.
    pub fn next_batch(&mut self) -> io::Result<Option<(Bytes, Vec<Record>)>> {
        let mut want = self.batch_bytes;
        loop {
            self.fill(want)?;
            let cut = match memchr::memrchr(b'\n', &self.buf) {
                Some(i) => i + 1,
                // A followed file may still be writing its last line.
                None if self.eof && self.follow => return Ok(None),
                None if self.eof => self.buf.len(),
                None if self.buf.len() > self.max_record => self.buf.len(),
                None => {
                    want = self.buf.len() + 64 * 1024;
                    continue;
                }
            };
            if cut == 0 {
                return Ok(None);
            }
            let rest = self.buf.split_off(cut);
            let chunk = Bytes::from(std::mem::replace(&mut self.buf, rest));
            let records = self.split(&chunk);
            if records.is_empty() && !(self.eof && self.buf.is_empty()) {
                continue;
            }
            if records.is_empty() {
                return Ok(None);
            }
            return Ok(Some((chunk, records)));
        }
    }

    /// Records of a block ending at a newline (or at the end of input, or
    /// in the middle of an over-long line).
    fn split(&mut self, chunk: &[u8]) -> Vec<Record> {
        let mut records = Vec::with_capacity(chunk.len() / 256 + 1);
        let mut start = 0;
        let ends_in_line = chunk.last() != Some(&b'\n');
        let mut push = |start: usize, end: usize, line: u64, skipping: &mut bool| {
            let was_skipping = std::mem::replace(skipping, false);
            if was_skipping {
                return;
            }
            let mut end = end;
            if end > start && chunk[end - 1] == b'\r' {
                end -= 1;
            }
            if chunk[start..end].iter().all(u8::is_ascii_whitespace) {
                return;
            }
            let truncated = end - start > self.max_record;
            if truncated {
                end = start + self.max_record;
            }
            records.push(Record {
                start: start as u32,
                end: end as u32,
                seq: line,
                flaw: truncated.then_some(Flaw::Truncated),
            });
        };
        for nl in memchr::memchr_iter(b'\n', chunk) {
            push(start, nl, self.next_line, &mut self.skipping);
            self.next_line += 1;
            start = nl + 1;
        }
        if ends_in_line && start < chunk.len() {
            let skipping_before = self.skipping;
            push(start, chunk.len(), self.next_line, &mut self.skipping);
            if self.eof && self.buf.is_empty() {
                self.next_line += 1;
            } else {
                // The rest of this over-long line is still to come: drop it.
                self.skipping = true;
                if let (false, Some(last)) = (skipping_before, records.last_mut()) {
                    last.flaw = Some(Flaw::Truncated);
                }
            }
        }
        records
    }

    /// Sends every batch on `tx`; at EOF waits for more when following.
    fn send_all(
        mut self,
        format: Format,
        ctx: &SourceContext,
        pending: &mut Pending,
    ) -> Result<ReadStats, SourceError> {
        let mut stats = ReadStats::default();
        let io_err = |origin: &str, source| SourceError::Io {
            origin: origin.to_owned(),
            source,
        };
        while !ctx.shutdown.is_set() {
            match self.next_batch().map_err(|e| io_err(&self.origin, e))? {
                Some((data, records)) => {
                    let (ack, waiter) = Ack::new();
                    stats.records += records.len() as u64;
                    stats.bytes += data.len() as u64;
                    stats.batches += 1;
                    let batch = Batch {
                        format,
                        origin: Origin::Lines(Arc::clone(&self.origin)),
                        data,
                        records,
                        ack,
                    };
                    ctx.out.send(batch)?;
                    pending.push(waiter);
                }
                None if self.follow => {
                    std::thread::sleep(FOLLOW_POLL);
                    self.eof = false;
                }
                None => break,
            }
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], batch: usize, max: usize) -> Vec<(String, u64, bool)> {
        let mut reader = LineReader::new(input, "t".into(), batch, max);
        let mut out = Vec::new();
        while let Some((data, records)) = reader.next_batch().unwrap() {
            for r in records {
                let text = String::from_utf8_lossy(&data[r.start as usize..r.end as usize]);
                out.push((text.into_owned(), r.seq, r.flaw.is_some()));
            }
        }
        out
    }

    #[test]
    fn numbers_lines_and_skips_blank_ones() {
        let got = read_all(b"a\n\n  \r\nb\r\nc", 4096, 100);
        let want = vec![
            ("a".to_owned(), 1, false),
            ("b".to_owned(), 4, false),
            ("c".to_owned(), 5, false),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn records_survive_batch_boundaries() {
        let input: Vec<u8> = (0..10_000)
            .flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes())
            .collect();
        let got = read_all(&input, 4096, 1 << 20);
        assert_eq!(got.len(), 10_000);
        for (i, (text, line, _)) in got.iter().enumerate() {
            assert_eq!(text, &format!("{{\"n\":{i}}}"));
            assert_eq!(*line, i as u64 + 1);
        }
    }

    #[test]
    fn over_long_lines_are_cut_and_flagged_and_the_rest_skipped() {
        let long = "x".repeat(20_000);
        let input = format!("short\n{long}\nafter\n");
        let got = read_all(input.as_bytes(), 4096, 5000);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], ("short".to_owned(), 1, false));
        assert_eq!(got[1].0.len(), 5000);
        assert_eq!((got[1].1, got[1].2), (2, true));
        assert_eq!(got[2], ("after".to_owned(), 3, false));
    }

    #[test]
    fn gzip_files_and_globs_are_read_in_name_order() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(b"{\"b\":1}\n{\"b\":2}\n").unwrap();
        std::fs::write(dir.path().join("b.ndjson.gz"), gz.finish().unwrap()).unwrap();
        std::fs::write(dir.path().join("a.ndjson"), b"{\"a\":1}\n").unwrap();
        let cfg = FileConfig {
            format: Format::App,
            path: format!("{}/*.ndjson*", dir.path().display()),
            follow: false,
            batch_bytes: default_batch_bytes(),
            max_record_bytes: default_max_record_bytes(),
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ctx = SourceContext::new(crate::BatchSender::new(tx), runtime.handle().clone());
        let finished = cfg.build().unwrap().run(&ctx).unwrap();
        drop(ctx);
        let stats = finished.stats;
        assert_eq!(stats.records, 3);
        let batches: Vec<Batch> = rx.iter().collect();
        assert!(batches[0].origin.to_string().ends_with("a.ndjson"));
        assert_eq!(batches[1].record(1), b"{\"b\":2}");
        assert_eq!(
            batches[1].position(1).to_string(),
            format!("{}:2", batches[1].origin)
        );
        drop(batches);
        assert_eq!(finished.outstanding.settle(), 0);
    }

    #[test]
    fn a_path_that_matches_nothing_is_an_error_naming_it() {
        let cfg = FileConfig {
            format: Format::Waf,
            path: "/nonexistent/*.ndjson".into(),
            follow: false,
            batch_bytes: default_batch_bytes(),
            max_record_bytes: default_max_record_bytes(),
        };
        let err = cfg.paths().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/*.ndjson"), "{err}");
    }
}
