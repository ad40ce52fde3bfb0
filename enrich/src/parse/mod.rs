//! Parsers: raw records of each format into rows of the event schema.
//!
//! Each format module parses a record with simd-json, reads the fields it
//! stores (see `json.rs` for why a simd-json tape), fills an [`EventRow`] and
//! the threat [`Signals`], and hands both to the shared emitter, which adds
//! what every event gets: the id, GeoIP, the stateless threat assessment.

mod app;
mod falco;
mod json;
mod waf;

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use arrow::array::RecordBatch;
use seclake_ingest::{Batch, Format};
use smallvec::SmallVec;
use xxhash_rust::xxh3::xxh3_128_with_seed;

use crate::geoip::{GeoInfo, GeoIp, GeoLookup, classify};
use crate::schema::{EventBuilder, EventRow, SchemaError};
use crate::threat::{Signals, ThreatEngine, ThreatLevel, UaVerdicts};

/// Why a record could not become an event. The text goes to the dead-letter output.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Not valid JSON, not UTF-8, or a field of the wrong type.
    #[error("invalid {format} record: {message}")]
    Json {
        /// The format the record was read as.
        format: Format,
        /// The JSON parser's message, with the byte offset.
        message: String,
    },
    /// A required field is absent, or a field has the wrong type.
    #[error("invalid {format} record: field `{field}` {problem}")]
    Field {
        /// The format the record was read as.
        format: Format,
        /// The field.
        field: &'static str,
        /// `is missing`, or `is not an integer`, ….
        problem: String,
    },
    /// A timestamp that is not RFC 3339 or is out of range.
    #[error("invalid {format} record: field `{field}` is not a valid timestamp: {value:?}")]
    Timestamp {
        /// The format the record was read as.
        format: Format,
        /// The timestamp field.
        field: &'static str,
        /// What it held (cut to 64 bytes).
        value: String,
    },
    /// The source cut the record at its size limit.
    #[error("record longer than the source's max_record_bytes; its first bytes are kept")]
    Truncated,
}

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
    emitter: Emitter,
    builder: EventBuilder,
    json: json::Scratch,
}

/// What every format's parser hands its rows to.
pub(crate) struct Emitter {
    geo: Option<GeoLookup>,
    threat: Arc<ThreatEngine>,
    format: Format,
    ingest_ts: i64,
    windows: Vec<WindowInput>,
    /// Reused buffer for the printed threat reasons of one event.
    reason_text: String,
    /// Reused buffer for one record's lowercased header names.
    header_names: String,
    ua: UaVerdicts,
}

impl Enricher {
    /// An enricher using `geo` (when configured) and `threat`.
    pub fn new(geo: Option<&Arc<GeoIp>>, threat: Arc<ThreatEngine>) -> Enricher {
        Enricher {
            emitter: Emitter {
                geo: geo.map(GeoIp::handle),
                threat,
                format: Format::Waf,
                ingest_ts: 0,
                windows: Vec::new(),
                reason_text: String::new(),
                header_names: String::new(),
                ua: UaVerdicts::new(),
            },
            builder: EventBuilder::with_capacity(4096),
            json: json::Scratch::default(),
        }
    }

    /// Parses every record of `batch`; `ingest_ts` (µs) stamps each event.
    pub fn parse_batch(&mut self, batch: &Batch, ingest_ts: i64) -> Result<Parsed, SchemaError> {
        self.parse_records(
            batch.format,
            batch.iter().map(|(raw, r)| (raw, r.truncated)),
            ingest_ts,
        )
    }

    /// Parses raw records of one format (`(bytes, truncated)` pairs).
    pub fn parse_records<'r>(
        &mut self,
        format: Format,
        records: impl Iterator<Item = (&'r [u8], bool)>,
        ingest_ts: i64,
    ) -> Result<Parsed, SchemaError> {
        let em = &mut self.emitter;
        em.format = format;
        em.ingest_ts = ingest_ts;
        em.windows.clear();
        let mut rejects = Vec::new();
        for (index, (raw, truncated)) in records.enumerate() {
            let result = if truncated {
                Err(ParseError::Truncated)
            } else {
                match em.parse_object(&mut self.json, raw) {
                    Ok(tape) => {
                        let (value, out) = (tape.as_value(), &mut self.builder);
                        let parsed = match format {
                            Format::Waf => waf::parse(raw, value, em, out),
                            Format::Falco => falco::parse(raw, value, em, out),
                            Format::App => app::parse(raw, value, em, out),
                        };
                        let spare = tape.reset();
                        self.json.recycle(spare);
                        parsed
                    }
                    Err(e) => Err(e),
                }
            };
            if let Err(reason) = result {
                rejects.push(Reject { index, reason });
            }
        }
        Ok(Parsed {
            events: self.builder.finish()?,
            windows: std::mem::take(&mut em.windows),
            rejects,
        })
    }
}

/// Canonical text of an address, written into a stack buffer.
pub(crate) struct IpText {
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

/// Lowercase hex of a 128-bit id.
/// The id of the event a raw record becomes: XXH3-128 of the record's bytes
/// seeded with its format, as 32 lowercase hex digits. The same record always
/// gets the same id, so a replayed record can be de-duplicated downstream.
pub fn event_id(format: Format, raw: &[u8]) -> String {
    Hex32::new(event_hash(format, raw)).as_str().to_owned()
}

fn event_hash(format: Format, raw: &[u8]) -> u128 {
    xxh3_128_with_seed(raw, format as u64)
}

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

impl Emitter {
    /// Completes `row` with what every event gets and appends it.
    ///
    /// `ip` is the client address as logged; `blocked` and `uri` feed the
    /// per-IP windows.
    pub(crate) fn emit(
        &mut self,
        out: &mut EventBuilder,
        raw: &[u8],
        row: EventRow<'_>,
        signals: Signals<'_>,
        ip: Option<&str>,
        blocked: bool,
    ) {
        let id = Hex32::new(event_hash(self.format, raw));
        let ip = ip.map(str::trim);
        let addr: Option<IpAddr> = ip.and_then(|s| s.parse().ok());
        // std accepts only the canonical IPv4 form (no leading zeros), so a
        // parsed IPv4 string is already canonical; IPv6 is re-printed.
        let text = match addr {
            Some(a @ IpAddr::V6(_)) => Some(IpText::new(a)),
            _ => None,
        };
        let client_ip = match addr {
            Some(IpAddr::V4(_)) => ip,
            Some(IpAddr::V6(_)) => text.as_ref().map(IpText::as_str),
            None => None,
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

    /// Parses a record that must be a JSON object.
    pub(crate) fn parse_object<'s>(
        &self,
        json: &'s mut json::Scratch,
        raw: &[u8],
    ) -> Result<simd_json::tape::Tape<'s>, ParseError> {
        let tape = json.parse(raw).map_err(|e| self.json_error(raw, &e))?;
        if tape.as_value().is_object() {
            Ok(tape)
        } else {
            Err(ParseError::Json {
                format: self.format,
                message: "not a JSON object".into(),
            })
        }
    }

    pub(crate) fn field_error(&self, e: json::FieldError) -> ParseError {
        let (field, problem) = match e {
            json::FieldError::Missing(field) => (field, "is missing".to_owned()),
            json::FieldError::Type(field, expected) => (field, format!("is not {expected}")),
        };
        ParseError::Field {
            format: self.format,
            field,
            problem,
        }
    }

    /// Describes invalid JSON. simd-json's errors name a bare error kind, so
    /// the record is checked again to say what and where: UTF-8 first, then
    /// serde_json for the syntax (line and column). Bad records are rare, so
    /// the second look costs nothing.
    pub(crate) fn json_error(&self, raw: &[u8], e: &simd_json::Error) -> ParseError {
        let message = if let Err(bad) = std::str::from_utf8(raw) {
            format!("invalid UTF-8 at byte {}", bad.valid_up_to())
        } else {
            match serde_json::from_slice::<serde::de::IgnoredAny>(raw) {
                Err(described) => described.to_string(),
                Ok(_) => e.to_string(),
            }
        };
        ParseError::Json {
            format: self.format,
            message,
        }
    }

    pub(crate) fn timestamp_error(&self, field: &'static str, value: &str) -> ParseError {
        let mut end = value.len().min(64);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        ParseError::Timestamp {
            format: self.format,
            field,
            value: value[..end].to_owned(),
        }
    }
}

/// Parses an RFC 3339 timestamp (any fraction length, any offset) to µs since the epoch.
pub(crate) fn rfc3339_micros(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}
