//! Parsers: raw records of each format into rows of the event schema and the
//! threat signals.
//!
//! Each format module parses a record with simd-json, reads the fields it
//! stores (see `json.rs` for why a simd-json tape), fills an [`EventRow`] and
//! the threat [`Signals`], and hands both, as a [`Record`], to the caller.
//! What every event gets after that, whatever its format (the id, GeoIP, the
//! threat assessment), is [`crate::enrichment`].

mod app;
mod falco;
mod guardduty;
mod json;
mod waf;

use std::net::IpAddr;

use seclake_format::Format;
use seclake_ingest::Flaw;

use crate::schema::EventRow;
use crate::threat::Signals;
use crate::time_window::OutOfWindow;

// The enricher drives the parsers; callers have always found it here.
pub use crate::enrichment::{Enricher, Parsed, Reject, WindowInput, event_id};

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
        /// `is missing`, `is not an integer`, or what else is wrong with it.
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
    /// A client address the format always logs is not an IP address.
    #[error("invalid {format} record: field `{field}` is not an IP address: {value:?}")]
    Address {
        /// The format the record was read as.
        format: Format,
        /// The address field.
        field: &'static str,
        /// What it held (cut to 64 bytes).
        value: String,
    },
    /// The event time is outside the enricher's [`crate::time_window::TimeWindow`].
    #[error("invalid {format} record: {window}")]
    EventTime {
        /// The format the record was read as.
        format: Format,
        /// The event and ingest times and the limit broken.
        window: OutOfWindow,
    },
    /// The source knew the record was bad: cut at its size limit, or a
    /// payload that could not be unpacked.
    #[error("{0}")]
    Flawed(Flaw),
}

/// One record as its format's parser read it, handed on to be enriched.
pub(crate) struct Record<'a> {
    /// The format's own columns; the shared ones are filled by enrichment.
    pub(crate) row: EventRow<'a>,
    /// What the stateless threat rules look at (`client_ip` aside).
    pub(crate) signals: Signals<'a>,
    /// The client address, when the record has a valid one.
    pub(crate) client_ip: Option<ClientIp<'a>>,
    /// WAF blocked the request or the app refused it (per-IP windows).
    pub(crate) blocked: bool,
}

/// A client address and its text as logged, trimmed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp<'a> {
    pub(crate) addr: IpAddr,
    pub(crate) logged: &'a str,
}

impl<'a> ClientIp<'a> {
    /// `text` as an address, if it is one (surrounding whitespace allowed).
    fn parse(text: &'a str) -> Option<ClientIp<'a>> {
        let logged = text.trim();
        logged.parse().ok().map(|addr| ClientIp { addr, logged })
    }
}

/// Reused buffers for parsing records, one set per worker.
#[derive(Default)]
pub(crate) struct Reader {
    json: json::Scratch,
    /// One WAF record's lowercased header names.
    header_names: String,
}

impl Reader {
    /// Parses `raw` as a record of `format` and hands it to `emit`; the
    /// error is `emit`'s when the record parsed.
    pub(crate) fn read(
        &mut self,
        format: Format,
        raw: &[u8],
        emit: impl FnOnce(Record<'_>) -> Result<(), ParseError>,
    ) -> Result<(), ParseError> {
        let tape = self
            .json
            .parse(raw)
            .map_err(|e| json_error(format, raw, &e))?;
        let value = tape.as_value();
        let result = if !value.is_object() {
            Err(ParseError::Json {
                format,
                message: "not a JSON object".into(),
            })
        } else {
            match format {
                Format::Waf => waf::parse(value, &mut self.header_names, emit),
                Format::Falco => falco::parse(value, emit),
                Format::App => app::parse(raw, value, emit),
                Format::GuardDuty => guardduty::parse(value, emit),
            }
        };
        let spare = tape.reset();
        self.json.recycle(spare);
        result
    }
}

fn field_error(format: Format, e: json::FieldError) -> ParseError {
    let (field, problem) = match e {
        json::FieldError::Missing(field) => (field, "is missing".to_owned()),
        json::FieldError::Type(field, expected) => (field, format!("is not {expected}")),
    };
    ParseError::Field {
        format,
        field,
        problem,
    }
}

/// Describes invalid JSON. simd-json's errors name a bare error kind, so
/// the record is checked again to say what and where: UTF-8 first, then
/// serde_json for the syntax (line and column). Bad records are rare, so
/// the second look costs nothing.
fn json_error(format: Format, raw: &[u8], e: &simd_json::Error) -> ParseError {
    let message = if let Err(bad) = std::str::from_utf8(raw) {
        format!("invalid UTF-8 at byte {}", bad.valid_up_to())
    } else {
        match serde_json::from_slice::<serde::de::IgnoredAny>(raw) {
            Err(described) => described.to_string(),
            Ok(_) => e.to_string(),
        }
    };
    ParseError::Json { format, message }
}

fn timestamp_error(format: Format, field: &'static str, value: &str) -> ParseError {
    ParseError::Timestamp {
        format,
        field,
        value: cut(value).to_owned(),
    }
}

fn address_error(format: Format, field: &'static str, value: &str) -> ParseError {
    ParseError::Address {
        format,
        field,
        value: cut(value).to_owned(),
    }
}

/// At most the first 64 bytes of a field value, for an error message.
fn cut(value: &str) -> &str {
    let mut end = value.len().min(64);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// Parses an RFC 3339 timestamp (any fraction length, any offset) to µs since the epoch.
fn rfc3339_micros(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}
