//! What every event gets once its format's parser has read it: the event id,
//! the client address in canonical form with its GeoIP, the stateless threat
//! assessment, and its input to the per-IP window stage. [`Enricher`] runs
//! parser and enrichment over a batch, on every worker thread.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use arrow::array::RecordBatch;
use seclake_format::Format;
use seclake_ingest::{Batch, Flaw};
use smallvec::SmallVec;
use xxhash_rust::xxh3::xxh3_128_with_seed;

use crate::geoip::{GeoInfo, GeoIp, GeoLookup, classify};
use crate::parse::{ParseError, Reader, Record};
use crate::schema::{EventBuilder, EventRow, SchemaError};
use crate::threat::{Signals, ThreatEngine, ThreatLevel, UaVerdicts};
use crate::time_window::TimeWindow;

/// Per-event input of the sequential per-IP window stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowInput {
    /// The client address, if the event has a valid one.
    pub ip: Option<IpAddr>,
    /// Event time, µs since the epoch.
    pub ts_us: i64,
    /// WAF blocked the request or the app refused it (status 401/403/429).
    pub blocked: bool,
    /// Hash of the request path, for the distinct-URI count.
    pub uri_hash: u64,
    /// The stateless score the event already has.
    pub score: u8,
    /// The stateless level the event already has.
    pub level: ThreatLevel,
}

/// A record that could not be parsed, by its index in the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Index of the record in its [`Batch`].
    pub index: usize,
    /// Why it was rejected.
    pub reason: ParseError,
}

/// The outcome of parsing one batch.
#[derive(Debug)]
pub struct Parsed {
    /// The events, in input order, with their stateless threat assessment.
    pub events: RecordBatch,
    /// One entry per event row, for the window stage.
    pub windows: Vec<WindowInput>,
    /// Records that went wrong, in input order.
    pub rejects: Vec<Reject>,
}

/// Parses and enriches batches; one per worker thread (it owns a GeoIP cache).
pub struct Enricher {
    reader: Reader,
    time_window: TimeWindow,
    enrichment: Enrichment,
    builder: EventBuilder,
}

impl Enricher {
    /// An enricher using `geo` (when configured) and `threat`, keeping the
    /// events whose time is inside `time_window` around their ingest time.
    pub fn new(
        geo: Option<&Arc<GeoIp>>,
        threat: Arc<ThreatEngine>,
        time_window: TimeWindow,
    ) -> Enricher {
        Enricher {
            reader: Reader::default(),
            time_window,
            enrichment: Enrichment {
                geo: geo.map(GeoIp::handle),
                threat,
                ua: UaVerdicts::new(),
                format: Format::Waf,
                ingest_ts: 0,
                windows: Vec::new(),
                reason_text: String::new(),
            },
            builder: EventBuilder::with_capacity(4096),
        }
    }

    /// Parses every record of `batch`; `ingest_ts` (µs) stamps each event and
    /// is the time the time window is measured from.
    pub fn parse_batch(&mut self, batch: &Batch, ingest_ts: i64) -> Result<Parsed, SchemaError> {
        self.parse_records(
            batch.format,
            batch.iter().map(|(raw, r)| (raw, r.flaw)),
            ingest_ts,
        )
    }

    /// Parses raw records of one format (`(bytes, flaw)` pairs).
    pub fn parse_records<'r>(
        &mut self,
        format: Format,
        records: impl Iterator<Item = (&'r [u8], Option<Flaw>)>,
        ingest_ts: i64,
    ) -> Result<Parsed, SchemaError> {
        let Enricher {
            reader,
            time_window,
            enrichment,
            builder,
        } = self;
        enrichment.format = format;
        enrichment.ingest_ts = ingest_ts;
        enrichment.windows.clear();
        let mut rejects = Vec::new();
        for (index, (raw, flaw)) in records.enumerate() {
            let result = if let Some(flaw) = flaw {
                Err(ParseError::Flawed(flaw))
            } else {
                reader.read(format, raw, |record| {
                    time_window
                        .check(record.row.ts, ingest_ts)
                        .map_err(|window| ParseError::EventTime { format, window })?;
                    enrichment.add(builder, raw, record);
                    Ok(())
                })
            };
            if let Err(reason) = result {
                rejects.push(Reject { index, reason });
            }
        }
        Ok(Parsed {
            events: builder.finish()?,
            windows: std::mem::take(&mut enrichment.windows),
            rejects,
        })
    }
}

/// The shared columns and the window inputs of one batch's events.
struct Enrichment {
    geo: Option<GeoLookup>,
    threat: Arc<ThreatEngine>,
    ua: UaVerdicts,
    /// The batch's format and ingest time.
    format: Format,
    ingest_ts: i64,
    windows: Vec<WindowInput>,
    /// Reused buffer for the printed threat reasons of one event.
    reason_text: String,
}

impl Enrichment {
    /// Completes the row of `record` (read from `raw`) with what every event
    /// gets, appends it to `out` and records its window input.
    fn add(&mut self, out: &mut EventBuilder, raw: &[u8], record: Record<'_>) {
        let Record {
            row,
            signals,
            client_ip,
            blocked,
        } = record;
        let id = Hex32::new(event_hash(self.format, raw));
        let addr = client_ip.map(|c| c.addr);
        // std accepts only the canonical IPv4 form (no leading zeros), so a
        // parsed IPv4 string is already canonical; IPv6 is re-printed.
        let v6_text = match addr {
            Some(a @ IpAddr::V6(_)) => Some(IpText::new(a)),
            _ => None,
        };
        let client_ip = match (&v6_text, client_ip) {
            (Some(text), _) => Some(text.as_str()),
            (None, ip) => ip.map(|c| c.logged),
        };
        let geo = match (addr, self.geo.as_mut()) {
            (Some(a), Some(geo)) => geo.lookup(a),
            (Some(a), None) => GeoInfo {
                ip_class: classify(a),
                ..GeoInfo::default()
            },
            (None, _) => GeoInfo::default(),
        };
        let signals = Signals {
            client_ip: addr,
            ..signals
        };
        let assessment = self.threat.assess_cached(&signals, &mut self.ua);
        // All reasons are printed into one buffer, then sliced.
        let mut text = std::mem::take(&mut self.reason_text);
        text.clear();
        let mut ends: SmallVec<[usize; 8]> = SmallVec::new();
        for reason in &assessment.reasons {
            let _ = write!(text, "{reason}");
            ends.push(text.len());
        }
        let mut start = 0;
        let reasons: SmallVec<[&str; 8]> = ends
            .iter()
            .map(|&end| {
                let r = &text[start..end];
                start = end;
                r
            })
            .collect();

        let row = EventRow {
            event_id: id.as_str(),
            source: self.format.as_str(),
            ingest_ts: self.ingest_ts,
            client_ip,
            ip_class: addr.map(|_| geo.ip_class.as_str()),
            country_iso: geo.country_iso.as_deref(),
            country_name: geo.country_name.as_deref(),
            city: geo.city.as_deref(),
            lat: geo.lat,
            lon: geo.lon,
            asn: geo.asn.map(i64::from),
            as_org: geo.as_org.as_deref(),
            threat_score: i32::from(assessment.score),
            threat_level: assessment.level.as_str(),
            threat_reasons: &reasons,
            ..row
        };
        self.windows.push(WindowInput {
            ip: addr,
            ts_us: row.ts,
            blocked,
            uri_hash: row
                .uri
                .map_or(0, |u| xxhash_rust::xxh3::xxh3_64(u.as_bytes())),
            score: assessment.score,
            level: assessment.level,
        });
        out.append(&row);
        drop(reasons);
        self.reason_text = text;
    }
}

/// The id of the event a raw record becomes: XXH3-128 of the record's bytes
/// seeded with its format, as 32 lowercase hex digits. The same record always
/// gets the same id, so a replayed record can be de-duplicated downstream.
pub fn event_id(format: Format, raw: &[u8]) -> String {
    Hex32::new(event_hash(format, raw)).as_str().to_owned()
}

fn event_hash(format: Format, raw: &[u8]) -> u128 {
    xxh3_128_with_seed(raw, format as u64)
}

/// Lowercase hex of a 128-bit id.
struct Hex32([u8; 32]);

impl Hex32 {
    fn new(v: u128) -> Hex32 {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = DIGITS[((v >> (124 - 4 * i)) & 0xf) as usize];
        }
        Hex32(out)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Canonical text of an address, written into a stack buffer.
struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    fn new(ip: IpAddr) -> IpText {
        let mut buf = [0u8; 48];
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        // 48 bytes hold the longest IPv6 text (45), so this cannot fail.
        let _ = write!(cursor, "{ip}");
        let len = cursor.position() as usize;
        IpText { buf, len }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}
