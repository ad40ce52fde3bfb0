//! Generated logs as a source: the fixture generator (`seclake gen`) fed
//! straight into the pipeline, so load tests, benches and demos need no
//! files.
//!
//! ```toml
//! [[source]]
//! type = "generate"
//! format = "waf"        # waf | falco | app | guardduty
//! count = 20000         # optional; without it, runs until stopped
//! # rate = "5k/s"       # optional; as fast as possible without it
//! # seed = 7
//! # date = "2026-11-25" # the UTC day the events fall in; default yesterday
//! ```
//!
//! With `count`, the records are byte for byte the lines `seclake gen`
//! writes for that many lines of the format, seed and day (malformed ones
//! included, about 0.1%). Without it, the generator repeats days of
//! [`seclake_fixtures::per_scale`] lines, the seed advancing by one each
//! time, until the pipeline stops. Positions are `generate:<format>:<seed>:<day>`
//! with the line number counted from the first record, so a dead letter can
//! be generated again.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::NaiveDate;
use serde::{Deserialize, Deserializer};

use crate::file::{Pending, default_batch_bytes};
use crate::source::{Finished, KeyError, ReadStats, Source, SourceContext, SourceSpec};
use crate::{Ack, Batch, Format, Origin, Record, SourceError};

/// `[[source]] type = "generate"`: realistic fixture logs made on the fly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateConfig {
    /// Format of the generated records: `waf`, `falco`, `app` or `guardduty`.
    pub format: Format,
    /// Records to generate; without it the source runs until stopped.
    pub count: Option<u64>,
    /// Records per second at most, e.g. `"5k/s"`, `"500/s"` or `500`; as
    /// fast as the pipeline takes them without it.
    #[serde(default, deserialize_with = "rate_option")]
    pub rate: Option<f64>,
    /// Seed of the generator; the same seed, day and count give the same records.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The UTC day the events fall in (`YYYY-MM-DD`); default yesterday, so
    /// that no event is in the future.
    #[serde(default, deserialize_with = "date_option")]
    pub date: Option<NaiveDate>,
    /// Bytes per batch (default 2 MiB); with a `rate`, a batch also holds
    /// at most a tenth of a second of records.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
}

fn default_seed() -> u64 {
    42
}

fn rate_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(f64),
        Text(String),
    }
    let rate = match Raw::deserialize(d)? {
        Raw::Number(n) if n.is_finite() && n > 0.0 => n,
        Raw::Number(n) => {
            return Err(serde::de::Error::custom(format!(
                "{n} is not a positive rate"
            )));
        }
        Raw::Text(text) => parse_rate(&text).map_err(serde::de::Error::custom)?,
    };
    Ok(Some(rate))
}

/// A TOML date (`date = 2026-11-25`) or the same as a string.
fn date_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Date(toml::value::Datetime),
        Text(String),
    }
    let text = match Raw::deserialize(d)? {
        Raw::Date(date) => date.to_string(),
        Raw::Text(text) => text,
    };
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a day: write YYYY-MM-DD")))
}

/// Parses a rate in records per second: `50000/s`, `50k/s`, `2M`, `750`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches("/s");
    let (digits, scale) = match number.as_bytes().last() {
        Some(b'k' | b'K') => (&number[..number.len() - 1], 1e3),
        Some(b'm' | b'M') => (&number[..number.len() - 1], 1e6),
        _ => (number, 1.0),
    };
    match digits.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n * scale),
        _ => Err(format!(
            "{text:?} is not a rate: write records per second, e.g. 50000/s or 50k/s"
        )),
    }
}

impl GenerateConfig {
    /// The day the events fall in: `date`, or yesterday (UTC).
    pub fn day(&self) -> NaiveDate {
        self.date.unwrap_or_else(|| {
            let today = chrono::Utc::now().date_naive();
            today.pred_opt().unwrap_or(today)
        })
    }
}

impl SourceSpec for GenerateConfig {
    fn format(&self) -> Format {
        self.format
    }

    fn check(&self) -> Result<(), KeyError> {
        if self.batch_bytes == 0 {
            return Err(KeyError::new("batch_bytes", "must be at least 1"));
        }
        Ok(())
    }

    fn build(&self) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(Generator {
            config: self.clone(),
            day: self.day(),
        }))
    }
}

struct Generator {
    config: GenerateConfig,
    day: NaiveDate,
}

impl Source for Generator {
    fn run(self: Box<Self>, ctx: &SourceContext) -> Result<Finished, SourceError> {
        let Generator { config, day } = *self;
        let origin: Arc<str> = format!("generate:{}:{}:{day}", config.format, config.seed).into();
        let per_batch = config.rate.map(|r| ((r / 10.0) as usize).max(1));
        let mut out = Batcher {
            ctx,
            format: config.format,
            origin,
            batch_bytes: config.batch_bytes.max(4096),
            per_batch: per_batch.unwrap_or(usize::MAX),
            pacer: config.rate.map(Pacer::new),
            buf: Vec::with_capacity(config.batch_bytes.max(4096) + 64 * 1024),
            lines_in_buf: 0,
            next_line: 1,
            stats: ReadStats::default(),
            pending: Pending::default(),
            error: None,
        };
        let chunk = seclake_fixtures::per_scale(config.format);
        let mut round = 0u64;
        loop {
            let (seed, lines) = match config.count {
                Some(count) => (config.seed, count),
                None => (config.seed.wrapping_add(round), chunk),
            };
            let written = seclake_fixtures::write_lines(config.format, seed, day, lines, &mut out);
            if let Err(e) = written {
                match out.error.take() {
                    Some(stopped) => return stopped.map(|()| out.finish()),
                    None => {
                        return Err(SourceError::Io {
                            origin: out.origin.to_string(),
                            source: e,
                        });
                    }
                }
            }
            round += 1;
            if config.count.is_some() || ctx.shutdown.is_set() {
                break;
            }
        }
        out.flush_lines(true)?;
        Ok(out.finish())
    }
}

/// Collects the generator's output into batches of whole lines.
struct Batcher<'a> {
    ctx: &'a SourceContext,
    format: Format,
    origin: Arc<str>,
    batch_bytes: usize,
    per_batch: usize,
    pacer: Option<Pacer>,
    buf: Vec<u8>,
    lines_in_buf: usize,
    next_line: u64,
    stats: ReadStats,
    pending: Pending,
    /// Why writing stopped: `Ok` for a shutdown, the error otherwise.
    error: Option<Result<(), SourceError>>,
}

impl Batcher<'_> {
    /// Sends the buffered lines as one batch (all of them when `all`, else
    /// only once the buffer is full).
    fn flush_lines(&mut self, all: bool) -> Result<(), SourceError> {
        if self.lines_in_buf == 0 || !(all || self.full()) {
            return Ok(());
        }
        let data = Bytes::from(std::mem::take(&mut self.buf));
        let mut records = Vec::with_capacity(self.lines_in_buf);
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &data) {
            records.push(Record {
                start: start as u32,
                end: nl as u32,
                seq: self.next_line,
                flaw: None,
            });
            self.next_line += 1;
            start = nl + 1;
        }
        self.lines_in_buf = 0;
        self.buf.reserve(self.batch_bytes + 64 * 1024);
        if let Some(pacer) = &mut self.pacer {
            pacer.wait_for(records.len() as u64);
        }
        let (ack, waiter) = Ack::new();
        self.stats.records += records.len() as u64;
        self.stats.bytes += data.len() as u64;
        self.stats.batches += 1;
        self.ctx.out.send(Batch {
            format: self.format,
            origin: Origin::Lines(Arc::clone(&self.origin)),
            data,
            records,
            ack,
        })?;
        self.pending.push(waiter);
        Ok(())
    }

    fn full(&self) -> bool {
        self.buf.len() >= self.batch_bytes || self.lines_in_buf >= self.per_batch
    }

    fn finish(self) -> Finished {
        Finished {
            stats: self.stats,
            outstanding: Box::new(self.pending),
        }
    }
}

impl Write for Batcher<'_> {
    /// The generator writes each line whole (a record and its newline), so
    /// a buffer boundary never falls inside a record.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.ctx.shutdown.is_set() {
            self.error = Some(Ok(()));
            return Err(io::Error::other("stopped"));
        }
        self.buf.extend_from_slice(bytes);
        self.lines_in_buf += memchr::memchr_iter(b'\n', bytes).count();
        if bytes.last() == Some(&b'\n')
            && let Err(e) = self.flush_lines(false)
        {
            self.error = Some(Err(e));
            return Err(io::Error::other("pipeline closed"));
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Spaces batches so that records go out at `rate` per second at most.
struct Pacer {
    rate: f64,
    started: Instant,
    sent: u64,
}

impl Pacer {
    fn new(rate: f64) -> Pacer {
        Pacer {
            rate,
            started: Instant::now(),
            sent: 0,
        }
    }

    /// When the first `sent` records may have gone out, counted from the start.
    fn not_before(&self, sent: u64) -> Duration {
        Duration::from_secs_f64(sent as f64 / self.rate)
    }

    /// Waits until the `n` records about to be sent are within the rate:
    /// the records before them must have had their time.
    fn wait_for(&mut self, n: u64) {
        let due = self.started + self.not_before(self.sent);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            // Pacing a load generator, not synchronisation.
            std::thread::sleep(wait);
        }
        self.sent += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_every_documented_form() {
        assert_eq!(parse_rate("50000/s"), Ok(50_000.0));
        assert_eq!(parse_rate("5k/s"), Ok(5_000.0));
        assert_eq!(parse_rate("2M"), Ok(2_000_000.0));
        assert_eq!(parse_rate("750"), Ok(750.0));
        for bad in ["", "fast", "0/s", "-5/s", "1/min"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pacer_spaces_records_at_the_rate() {
        let pacer = Pacer::new(1000.0);
        assert_eq!(pacer.not_before(0), Duration::ZERO);
        assert_eq!(pacer.not_before(500), Duration::from_millis(500));
        assert_eq!(pacer.not_before(5000), Duration::from_secs(5));
    }
}
