//! Events to `_bulk` items: one action line and one document line each.
//!
//! Arrow's JSON writer encodes every column the document keeps as it is; the
//! coordinates become one `location` object and the request headers one
//! object whose repeated names are joined (OpenSearch refuses a document with
//! a duplicate key).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType};
use bytes::{BufMut, Bytes, BytesMut};
use seclake_ingest::Format;

use crate::SinkError;

/// Where the documents go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A daily index per format: `<prefix>-<format>-YYYY.MM.DD` (UTC day of `ts`).
    DailyIndex,
    /// One data stream per format: `<prefix>-<format>`.
    DataStream,
}

/// One document on its way: its action and source lines.
#[derive(Debug, Clone)]
pub struct Item {
    /// `{action}\n{document}\n`.
    pub line: Bytes,
    /// Where the document line starts in `line`.
    pub doc_at: u32,
    /// The index or data stream.
    pub index: Arc<str>,
    /// The format of the event.
    pub format: Format,
}

impl Item {
    /// The document (its `_source`), without the newline.
    pub fn document(&self) -> &[u8] {
        let doc = &self.line[self.doc_at as usize..];
        doc.strip_suffix(b"\n").unwrap_or(doc)
    }

    /// The `_id`: the event id, read back from the action line.
    pub fn id(&self) -> &str {
        let action = &self.line[..self.doc_at as usize];
        let id = memchr::memmem::find(action, b"\"_id\":\"")
            .map(|at| &action[at + 7..])
            .and_then(|rest| rest.iter().position(|b| *b == b'"').map(|end| &rest[..end]));
        id.and_then(|id| std::str::from_utf8(id).ok()).unwrap_or("")
    }
}

/// Turns event batches into bulk items.
pub struct Encoder {
    prefix: String,
    target: Target,
    /// Index names by format and day number, made once.
    names: HashMap<(Format, i64), Arc<str>>,
    json: Vec<u8>,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

impl Encoder {
    /// An encoder for indices named `<prefix>-…`.
    pub fn new(prefix: &str, target: Target) -> Encoder {
        Encoder {
            prefix: prefix.to_owned(),
            target,
            names: HashMap::new(),
            json: Vec::new(),
        }
    }

    /// The action every item uses: `create` for data streams (the only one
    /// they take; a re-delivered id answers 409), `index` otherwise (a
    /// re-delivered id overwrites the same document).
    pub fn action(&self) -> &'static str {
        match self.target {
            Target::DailyIndex => "index",
            Target::DataStream => "create",
        }
    }

    /// Appends one item per event of `events` to `out`.
    pub fn encode(
        &mut self,
        format: Format,
        events: &RecordBatch,
        out: &mut Vec<Item>,
    ) -> Result<(), SinkError> {
        let rows = events.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let column =
            |name: &'static str| events.column_by_name(name).ok_or(SinkError::Schema(name));
        let ids = column("event_id")?
            .as_string_opt::<i32>()
            .ok_or(SinkError::Schema("event_id is not a string column"))?;
        let ts = column("ts")?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or(SinkError::Schema("ts is not a microsecond timestamp"))?;
        let lat = column("lat")?
            .as_primitive_opt::<Float64Type>()
            .ok_or(SinkError::Schema("lat is not a double"))?;
        let lon = column("lon")?
            .as_primitive_opt::<Float64Type>()
            .ok_or(SinkError::Schema("lon is not a double"))?;
        let headers = column("headers")?
            .as_map_opt()
            .ok_or(SinkError::Schema("headers is not a map"))?;
        let header_names = headers
            .keys()
            .as_string_opt::<i32>()
            .ok_or(SinkError::Schema("header names are not strings"))?;
        let header_values = headers
            .values()
            .as_string_opt::<i32>()
            .ok_or(SinkError::Schema("header values are not strings"))?;

        let kept: Vec<usize> = events
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !matches!(f.name().as_str(), "lat" | "lon" | "headers"))
            .map(|(i, _)| i)
            .collect();
        let projected = events.project(&kept).map_err(SinkError::Arrow)?;
        let mut json = std::mem::take(&mut self.json);
        json.clear();
        let mut writer = arrow_json::LineDelimitedWriter::new(&mut json);
        writer.write(&projected).map_err(SinkError::Arrow)?;
        writer.finish().map_err(SinkError::Arrow)?;

        let mut buf = BytesMut::with_capacity(self.json.len() + rows * 160);
        let mut spans = Vec::with_capacity(rows);
        let mut lines = json.split(|b| *b == b'\n');
        let mut action = String::with_capacity(128);
        let mut merged: Vec<(&str, String)> = Vec::new();
        for row in 0..rows {
            let line = lines
                .next()
                .ok_or(SinkError::Schema("the JSON writer lost a row"))?;
            let body = line.strip_suffix(b"}").ok_or(SinkError::Schema(
                "the JSON writer wrote a row that is not an object",
            ))?;
            let index = self.index_name(format, ts.value(row));
            let start = buf.len();
            action.clear();
            let _ = writeln!(
                action,
                r#"{{"{}":{{"_index":"{}","_id":"{}"}}}}"#,
                self.action(),
                index,
                ids.value(row)
            );
            buf.put_slice(action.as_bytes());
            let doc_at = buf.len() - start;
            buf.put_slice(body);
            if lat.is_valid(row) && lon.is_valid(row) {
                let (la, lo) = (lat.value(row), lon.value(row));
                if la.is_finite() && lo.is_finite() {
                    action.clear();
                    let _ = write!(action, r#","location":{{"lat":{la},"lon":{lo}}}"#);
                    buf.put_slice(action.as_bytes());
                }
            }
            if headers.is_valid(row) {
                let offsets = headers.value_offsets();
                let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
                if from < to {
                    merged.clear();
                    for at in from..to {
                        let name = header_names.value(at);
                        let value = if header_values.is_valid(at) {
                            header_values.value(at)
                        } else {
                            ""
                        };
                        match merged.iter_mut().find(|(n, _)| *n == name) {
                            Some((_, joined)) => {
                                joined.push_str(", ");
                                joined.push_str(value);
                            }
                            None => merged.push((name, value.to_owned())),
                        }
                    }
                    buf.put_slice(br#","headers":{"#);
                    let mut writer = (&mut buf).writer();
                    for (i, (name, value)) in merged.iter().enumerate() {
                        if i > 0 {
                            writer.get_mut().put_u8(b',');
                        }
                        serde_json::to_writer(&mut writer, name).map_err(SinkError::Json)?;
                        writer.get_mut().put_u8(b':');
                        serde_json::to_writer(&mut writer, value).map_err(SinkError::Json)?;
                    }
                    buf.put_u8(b'}');
                }
            }
            buf.put_slice(b"}\n");
            spans.push((start, buf.len(), doc_at, index));
        }
        self.json = json;
        let buf = buf.freeze();
        out.extend(spans.into_iter().map(|(start, end, doc_at, index)| Item {
            line: buf.slice(start..end),
            doc_at: doc_at as u32,
            index,
            format,
        }));
        Ok(())
    }

    fn index_name(&mut self, format: Format, ts_micros: i64) -> Arc<str> {
        let day = match self.target {
            Target::DailyIndex => ts_micros.div_euclid(MICROS_PER_DAY),
            Target::DataStream => 0,
        };
        let (prefix, target) = (&self.prefix, self.target);
        Arc::clone(self.names.entry((format, day)).or_insert_with(|| {
            match target {
                Target::DataStream => format!("{prefix}-{format}"),
                Target::DailyIndex => {
                    let date = chrono::DateTime::from_timestamp_micros(ts_micros)
                        .unwrap_or_default()
                        .format("%Y.%m.%d");
                    format!("{prefix}-{format}-{date}")
                }
            }
            .into()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seclake_enrich::schema::{Event, events_to_batch};
    use serde_json::Value;

    fn event(id: &str, ts: i64) -> Event {
        Event {
            event_id: id.into(),
            source: "waf".into(),
            ts,
            ingest_ts: ts,
            client_ip: Some("203.0.113.7".into()),
            lat: Some(37.5),
            lon: Some(127.25),
            action: Some("BLOCK".into()),
            headers: Some(vec![
                ("host".into(), "shop.example".into()),
                ("accept".into(), "text/html".into()),
                ("accept".into(), "*/*".into()),
                ("x-note".into(), "quote \" and \\ back".into()),
            ]),
            waf_labels: vec!["awswaf:managed:aws:sql-database".into()],
            threat_score: 80,
            threat_level: "high".into(),
            ..Event::default()
        }
    }

    fn documents(items: &[Item]) -> Vec<Value> {
        items
            .iter()
            .map(|i| serde_json::from_slice(i.document()).expect("a JSON document"))
            .collect()
    }

    #[test]
    fn each_event_is_an_action_and_a_document_with_location_and_merged_headers() {
        let batch = events_to_batch(&[
            event("a1", 1_764_000_000_123_456),
            Event {
                lat: None,
                headers: None,
                ..event("b2", 1_764_086_400_000_000)
            },
        ])
        .expect("batch");
        let mut items = Vec::new();
        Encoder::new("seclake", Target::DailyIndex)
            .encode(Format::Waf, &batch, &mut items)
            .expect("encoded");
        assert_eq!(items.len(), 2);
        let action: Value =
            serde_json::from_slice(&items[0].line[..items[0].doc_at as usize]).expect("action");
        assert_eq!(
            action,
            serde_json::json!({"index": {"_index": "seclake-waf-2025.11.24", "_id": "a1"}})
        );
        assert_eq!(items[0].id(), "a1");
        assert_eq!(&*items[1].index, "seclake-waf-2025.11.25");
        assert!(items.iter().all(|i| i.line.ends_with(b"}\n")));

        let docs = documents(&items);
        assert_eq!(
            docs[0]["location"],
            serde_json::json!({"lat": 37.5, "lon": 127.25})
        );
        assert_eq!(docs[0]["headers"]["accept"], "text/html, */*");
        assert_eq!(docs[0]["headers"]["x-note"], "quote \" and \\ back");
        assert_eq!(docs[0]["client_ip"], "203.0.113.7");
        assert_eq!(
            docs[0]["waf_labels"],
            serde_json::json!(["awswaf:managed:aws:sql-database"])
        );
        assert!(
            docs[0]["ts"]
                .as_str()
                .is_some_and(|t| t.starts_with("2025-11-24T16:00:00.123456"))
        );
        assert_eq!(docs[0].get("lat"), None);
        assert_eq!(
            docs[1].get("location"),
            None,
            "no location without both coordinates"
        );
        assert_eq!(docs[1].get("headers"), None);
        assert_eq!(docs[1].get("rule"), None, "nulls are left out");
    }

    #[test]
    fn data_streams_take_create_actions_on_one_stream_per_format() {
        let batch = events_to_batch(&[event("c3", 1_764_000_000_000_000)]).expect("batch");
        let mut items = Vec::new();
        Encoder::new("sec", Target::DataStream)
            .encode(Format::Falco, &batch, &mut items)
            .expect("encoded");
        assert!(
            items[0]
                .line
                .starts_with(br#"{"create":{"_index":"sec-falco","_id":"c3"}}"#)
        );
    }
}
