//! A Kinesis record's payload to the user records inside it.
//!
//! - KPL aggregated records (the KPL's `aggregation-format.md`): the magic
//!   [`KPL_MAGIC`], a protobuf `AggregatedRecord`, and the MD5 digest of the
//!   protobuf bytes. Unlike the KCL, a record with the magic that fails any
//!   check (length, digest, protobuf, key index) is a [`Flaw`], never plain.
//! - CloudWatch Logs subscription payloads: gzip (or zlib) JSON envelopes.
//!   Other compressed payloads are one compressed plain record.
//! - Anything else is one plain record.

use std::collections::HashMap;
use std::io::Read;

use bytes::Bytes;
use flate2::read::{MultiGzDecoder, ZlibDecoder};
use md5::{Digest, Md5};
use prost::Message;
use serde::Deserialize;

/// The four bytes that open a KPL aggregated record.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// A compressed payload may unpack to this many times a source's
/// `max_record_bytes`.
pub(crate) const UNPACK_FACTOR: usize = 16;

const DIGEST_LEN: usize = 16;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// What one Kinesis record's payload holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Unpacked {
    /// Not aggregated, not compressed: the payload is the one user record.
    Plain,
    /// User records, in order; `sub_sequence` is `Some(i)` for the i-th user
    /// record of a KPL aggregate, `None` for the others.
    Records(Vec<UserRecord>),
    /// Nothing to deliver: a CloudWatch Logs `CONTROL_MESSAGE`, or a KPL
    /// aggregate or `DATA_MESSAGE` with no records in it.
    Empty,
    /// The payload can't be trusted: it goes to the dead letters whole.
    Flawed(Flaw),
}

/// One user record unpacked from a Kinesis record's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user record's bytes.
    pub data: Bytes,
    /// The KPL user record's own partition key; `None` outside KPL aggregates.
    pub partition_key: Option<String>,
    /// The user record's index in its KPL aggregate (the KCL's sub-sequence
    /// number); `None` outside KPL aggregates.
    pub sub_sequence: Option<u32>,
}

/// Why a payload could not be unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Flaw {
    /// Starts with the KPL magic but has no room for the MD5 digest.
    #[error("KPL aggregate: too short for the magic and the MD5 digest")]
    KplTooShort,
    /// The MD5 trailer is not the digest of the protobuf message.
    #[error("KPL aggregate: MD5 digest does not match")]
    KplDigest,
    /// The protobuf message does not decode as an `AggregatedRecord`.
    #[error("KPL aggregate: protobuf message does not decode")]
    KplProtobuf,
    /// A record's partition or explicit hash key index is outside its table.
    #[error("KPL aggregate: key index outside the key table")]
    KplKeyIndex,
    /// Broken gzip or zlib data.
    #[error("compressed payload: broken gzip or zlib data")]
    Gzip,
    /// Decompresses to more than the allowed size.
    #[error("compressed payload: decompresses beyond the size limit")]
    TooLarge,
    /// Has a `messageType` but is not a valid CloudWatch Logs envelope.
    #[error("CloudWatch Logs payload: not a valid subscription envelope")]
    CloudWatchLogs,
}

/// Unpacks one Kinesis record's payload; `max_bytes` caps what a compressed
/// payload may decompress to.
pub fn unpack(data: &[u8], max_bytes: usize) -> Unpacked {
    let unpacked = if let Some(rest) = data.strip_prefix(KPL_MAGIC.as_slice()) {
        deaggregate(rest)
    } else if data.starts_with(&GZIP_MAGIC) {
        decompress(MultiGzDecoder::new(data), max_bytes).and_then(cloudwatch_logs)
    } else if is_zlib(data) {
        decompress(ZlibDecoder::new(data), max_bytes).and_then(cloudwatch_logs)
    } else {
        return Unpacked::Plain;
    };
    unpacked.unwrap_or_else(Unpacked::Flawed)
}

/// Writes user records as one KPL aggregated record, the partition key table
/// deduplicated; keeping it within the stream's record size is the caller's.
pub fn aggregate(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut partition_key_table = Vec::new();
    let mut key_index: HashMap<&str, u64> = HashMap::new();
    let mut out_records = Vec::with_capacity(records.len());
    for &(key, data) in records {
        let index = *key_index.entry(key).or_insert_with(|| {
            partition_key_table.push(key.to_owned());
            partition_key_table.len() as u64 - 1
        });
        out_records.push(KplRecord {
            partition_key_index: Some(index),
            explicit_hash_key_index: None,
            data: Some(Bytes::copy_from_slice(data)),
            tags: Vec::new(),
        });
    }
    let body = AggregatedRecord {
        partition_key_table,
        explicit_hash_key_table: Vec::new(),
        records: out_records,
    }
    .encode_to_vec();
    let mut out = Vec::with_capacity(KPL_MAGIC.len() + body.len() + DIGEST_LEN);
    out.extend_from_slice(&KPL_MAGIC);
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

// The KPL's proto2 messages. Required fields are declared optional (the same
// wire format) so that a missing one is caught: prost does not check them.
#[derive(Clone, PartialEq, Message)]
struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<KplRecord>,
}

#[derive(Clone, PartialEq, Message)]
struct Tag {
    #[prost(string, optional, tag = "1")]
    key: Option<String>,
    #[prost(string, optional, tag = "2")]
    value: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct KplRecord {
    #[prost(uint64, optional, tag = "1")]
    partition_key_index: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "bytes", optional, tag = "3")]
    data: Option<Bytes>,
    #[prost(message, repeated, tag = "4")]
    tags: Vec<Tag>,
}

/// `rest` is the aggregate after the magic.
fn deaggregate(rest: &[u8]) -> Result<Unpacked, Flaw> {
    let (body, digest) = rest
        .len()
        .checked_sub(DIGEST_LEN)
        .map(|n| rest.split_at(n))
        .ok_or(Flaw::KplTooShort)?;
    if Md5::digest(body).as_slice() != digest {
        return Err(Flaw::KplDigest);
    }
    // Decoding from one shared buffer makes every record's data a slice of it.
    let aggregate =
        AggregatedRecord::decode(Bytes::copy_from_slice(body)).map_err(|_| Flaw::KplProtobuf)?;
    let AggregatedRecord {
        partition_key_table,
        explicit_hash_key_table,
        records,
    } = aggregate;
    if records.is_empty() {
        return Ok(Unpacked::Empty);
    }
    let mut out = Vec::with_capacity(records.len());
    for (i, record) in records.into_iter().enumerate() {
        let (Some(key_index), Some(data)) = (record.partition_key_index, record.data) else {
            return Err(Flaw::KplProtobuf);
        };
        if record.tags.iter().any(|tag| tag.key.is_none()) {
            return Err(Flaw::KplProtobuf);
        }
        let partition_key =
            table_entry(&partition_key_table, key_index).ok_or(Flaw::KplKeyIndex)?;
        if let Some(ehk_index) = record.explicit_hash_key_index
            && table_entry(&explicit_hash_key_table, ehk_index).is_none()
        {
            return Err(Flaw::KplKeyIndex);
        }
        out.push(UserRecord {
            data,
            partition_key: Some(partition_key.clone()),
            sub_sequence: Some(u32::try_from(i).map_err(|_| Flaw::KplProtobuf)?),
        });
    }
    Ok(Unpacked::Records(out))
}

fn table_entry(table: &[String], index: u64) -> Option<&String> {
    usize::try_from(index).ok().and_then(|i| table.get(i))
}

/// A zlib header (RFC 1950): deflate, a valid check, no preset dictionary.
fn is_zlib(data: &[u8]) -> bool {
    match data {
        [cmf @ 0x78, flg, ..] => {
            (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0 && flg & 0x20 == 0
        }
        _ => false,
    }
}

fn decompress(reader: impl Read, max_bytes: usize) -> Result<Vec<u8>, Flaw> {
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut out = Vec::new();
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|_| Flaw::Gzip)?;
    if out.len() > max_bytes {
        return Err(Flaw::TooLarge);
    }
    Ok(out)
}

/// The fields of a CloudWatch Logs subscription envelope that matter here.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "messageType")]
    message_type: Option<String>,
    #[serde(rename = "logEvents")]
    log_events: Option<Vec<LogEvent>>,
}

#[derive(Deserialize)]
struct LogEvent {
    message: String,
}

/// A decompressed payload: a CloudWatch Logs envelope if it says it is one
/// (has a `messageType`), else one compressed plain record.
fn cloudwatch_logs(decompressed: Vec<u8>) -> Result<Unpacked, Flaw> {
    let opens_object = decompressed
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{');
    if !opens_object {
        return Ok(plain(decompressed));
    }
    let envelope = match serde_json::from_slice::<Envelope>(&decompressed) {
        Ok(envelope) => envelope,
        Err(_) if memchr::memmem::find(&decompressed, b"\"messageType\"").is_some() => {
            return Err(Flaw::CloudWatchLogs);
        }
        Err(_) => return Ok(plain(decompressed)),
    };
    match (envelope.message_type.as_deref(), envelope.log_events) {
        (None, _) => Ok(plain(decompressed)),
        (Some("CONTROL_MESSAGE"), _) => Ok(Unpacked::Empty),
        (Some("DATA_MESSAGE"), Some(events)) if events.is_empty() => Ok(Unpacked::Empty),
        (Some("DATA_MESSAGE"), Some(events)) => Ok(Unpacked::Records(
            events
                .into_iter()
                .map(|event| UserRecord {
                    data: Bytes::from(event.message.into_bytes()),
                    partition_key: None,
                    sub_sequence: None,
                })
                .collect(),
        )),
        (Some(_), _) => Err(Flaw::CloudWatchLogs),
    }
}

fn plain(data: Vec<u8>) -> Unpacked {
    Unpacked::Records(vec![UserRecord {
        data: Bytes::from(data),
        partition_key: None,
        sub_sequence: None,
    }])
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};

    use super::*;

    const MAX: usize = 1 << 20;

    /// Magic, `body`, and the MD5 of `body`: a KPL aggregate around any bytes.
    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = KPL_MAGIC.to_vec();
        out.extend_from_slice(body);
        out.extend_from_slice(&Md5::digest(body));
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn records(unpacked: Unpacked) -> Vec<UserRecord> {
        match unpacked {
            Unpacked::Records(records) => records,
            other => panic!("expected records, got {other:?}"),
        }
    }

    fn datas(unpacked: Unpacked) -> Vec<Vec<u8>> {
        records(unpacked)
            .into_iter()
            .map(|r| r.data.to_vec())
            .collect()
    }

    #[test]
    fn encoder_writes_the_published_format() {
        let long = [0x5a; 200];
        let input: [(&str, &[u8]); 4] = [
            ("pk-a", b"hello"),
            ("pk-b", b""),
            ("pk-a", &[0x00, 0xff, 0x80]),
            ("pk-b", &long),
        ];
        let mut body = Vec::new();
        // partition_key_table (field 1, length-delimited: tag 0x0a), each key once.
        body.extend_from_slice(&[0x0a, 4, b'p', b'k', b'-', b'a']);
        body.extend_from_slice(&[0x0a, 4, b'p', b'k', b'-', b'b']);
        // records (field 3, length-delimited: tag 0x1a); inside each,
        // partition_key_index (field 1, varint: tag 0x08) and data (field 3: 0x1a).
        body.extend_from_slice(&[0x1a, 9, 0x08, 0, 0x1a, 5]);
        body.extend_from_slice(b"hello");
        body.extend_from_slice(&[0x1a, 4, 0x08, 1, 0x1a, 0]);
        body.extend_from_slice(&[0x1a, 7, 0x08, 0, 0x1a, 3, 0x00, 0xff, 0x80]);
        // 205 = 0xcd 0x01 and 200 = 0xc8 0x01 as varints.
        body.extend_from_slice(&[0x1a, 0xcd, 0x01, 0x08, 1, 0x1a, 0xc8, 0x01]);
        body.extend_from_slice(&long);
        let mut expected = vec![0xf3, 0x89, 0x9a, 0xc2];
        expected.extend_from_slice(&body);
        expected.extend_from_slice(&Md5::digest(&body));

        let encoded = aggregate(&input);
        assert_eq!(encoded, expected);

        let unpacked = records(unpack(&encoded, MAX));
        let got: Vec<(&str, &[u8], u32)> = unpacked
            .iter()
            .map(|r| {
                (
                    r.partition_key.as_deref().unwrap(),
                    r.data.as_ref(),
                    r.sub_sequence.unwrap(),
                )
            })
            .collect();
        let want: Vec<(&str, &[u8], u32)> = input
            .iter()
            .zip(0..)
            .map(|(&(key, data), i)| (key, data, i))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn decodes_explicit_hash_keys_and_tags() {
        let mut body = Vec::new();
        body.extend_from_slice(&[0x0a, 1, b'k']);
        // explicit_hash_key_table (field 2: tag 0x12).
        body.extend_from_slice(&[0x12, 2, b'4', b'2']);
        // A record with explicit_hash_key_index (field 2, varint: 0x10) and a
        // tag (field 4: 0x22) holding key (0x0a) and value (0x12).
        body.extend_from_slice(&[0x1a, 16, 0x08, 0, 0x10, 0, 0x1a, 2, b'h', b'i']);
        body.extend_from_slice(&[0x22, 6, 0x0a, 1, b't', 0x12, 1, b'v']);
        let got = records(unpack(&framed(&body), MAX));
        assert_eq!(
            got,
            vec![UserRecord {
                data: Bytes::from_static(b"hi"),
                partition_key: Some("k".into()),
                sub_sequence: Some(0),
            }]
        );
    }

    #[test]
    fn round_trips_many_records() {
        let keys = ["alpha", "beta", "", "gamma/δ", "beta"];
        let mut state = 0x2545_f491_u32;
        let datas: Vec<Vec<u8>> = (0..500_usize)
            .map(|i| {
                let len = match i % 7 {
                    0 => 0,
                    3 => 70_000,
                    _ => i % 300,
                };
                (0..len)
                    .map(|_| {
                        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        (state >> 24) as u8
                    })
                    .collect()
            })
            .collect();
        let input: Vec<(&str, &[u8])> = datas
            .iter()
            .enumerate()
            .map(|(i, data)| (keys[i % keys.len()], data.as_slice()))
            .collect();

        let encoded = aggregate(&input);
        let body = &encoded[KPL_MAGIC.len()..encoded.len() - DIGEST_LEN];
        let decoded = AggregatedRecord::decode(body).unwrap();
        assert_eq!(
            decoded.partition_key_table,
            ["alpha", "beta", "", "gamma/δ"]
        );

        let got = records(unpack(&encoded, MAX));
        assert_eq!(got.len(), input.len());
        for (i, (record, (key, data))) in got.iter().zip(&input).enumerate() {
            assert_eq!(record.partition_key.as_deref(), Some(*key));
            assert_eq!(record.data.as_ref(), *data);
            assert_eq!(record.sub_sequence, Some(u32::try_from(i).unwrap()));
        }
    }

    #[test]
    fn an_aggregate_of_nothing_is_empty() {
        assert_eq!(unpack(&aggregate(&[]), MAX), Unpacked::Empty);
        assert_eq!(unpack(&framed(&[]), MAX), Unpacked::Empty);
    }

    #[test]
    fn a_wrong_digest_is_a_flaw() {
        let mut encoded = aggregate(&[("k", b"data")]);
        *encoded.last_mut().unwrap() ^= 0x01;
        assert_eq!(unpack(&encoded, MAX), Unpacked::Flawed(Flaw::KplDigest));

        let mut encoded = aggregate(&[("k", b"data")]);
        encoded[KPL_MAGIC.len() + 2] ^= 0x40;
        assert_eq!(unpack(&encoded, MAX), Unpacked::Flawed(Flaw::KplDigest));
    }

    #[test]
    fn too_short_after_the_magic_is_a_flaw() {
        let encoded = aggregate(&[("k", b"data")]);
        for len in [4, 5, 19] {
            assert_eq!(
                unpack(&encoded[..len], MAX),
                Unpacked::Flawed(Flaw::KplTooShort),
                "{len} bytes"
            );
        }
        // Cut short but still longer than a digest: the digest can't match.
        assert_eq!(
            unpack(&encoded[..encoded.len() - 3], MAX),
            Unpacked::Flawed(Flaw::KplDigest)
        );
    }

    #[test]
    fn a_broken_protobuf_is_a_flaw_even_with_a_good_digest() {
        let bodies: [&[u8]; 5] = [
            // A record whose length runs past the end.
            &[0x0a, 1, b'k', 0x1a, 9, 0x08, 0, 0x1a, 1, b'x'],
            // Wire type 7 does not exist.
            &[0x0f, 0x00],
            // A partition key that is not UTF-8.
            &[0x0a, 2, 0xc3, 0x28, 0x1a, 4, 0x08, 0, 0x1a, 0],
            // A record without its required data.
            &[0x0a, 1, b'k', 0x1a, 2, 0x08, 0],
            // A record without its required partition_key_index.
            &[0x0a, 1, b'k', 0x1a, 3, 0x1a, 1, b'x'],
        ];
        for body in bodies {
            assert_eq!(
                unpack(&framed(body), MAX),
                Unpacked::Flawed(Flaw::KplProtobuf),
                "{body:02x?}"
            );
        }
        let mut encoded = aggregate(&[("k", b"data")]);
        let end = encoded.len() - DIGEST_LEN;
        encoded[KPL_MAGIC.len()] = 0xff;
        let corrupted = framed(&encoded[KPL_MAGIC.len()..end]);
        assert_eq!(unpack(&corrupted, MAX), Unpacked::Flawed(Flaw::KplProtobuf));
    }

    #[test]
    fn a_key_index_outside_its_table_is_a_flaw() {
        // partition_key_index 1 in a table of one.
        let body = [0x0a, 1, b'k', 0x1a, 4, 0x08, 1, 0x1a, 0];
        assert_eq!(
            unpack(&framed(&body), MAX),
            Unpacked::Flawed(Flaw::KplKeyIndex)
        );
        // A huge index (u64::MAX as a ten-byte varint).
        let mut body = vec![0x0a, 1, b'k', 0x1a, 13, 0x08];
        body.extend_from_slice(&[0xff; 9]);
        body.extend_from_slice(&[0x01, 0x1a, 0]);
        assert_eq!(
            unpack(&framed(&body), MAX),
            Unpacked::Flawed(Flaw::KplKeyIndex)
        );
        // explicit_hash_key_index 0 in an empty table.
        let body = [0x0a, 1, b'k', 0x1a, 6, 0x08, 0, 0x10, 0, 0x1a, 0];
        assert_eq!(
            unpack(&framed(&body), MAX),
            Unpacked::Flawed(Flaw::KplKeyIndex)
        );
    }

    #[test]
    fn without_the_magic_a_payload_is_plain() {
        let payloads: [&[u8]; 5] = [
            b"{\"action\":\"BLOCK\"}",
            b"",
            &[0xf3, 0x89, 0x9a],
            &[
                0xf3, 0x89, 0x9a, 0xc3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            b"x marks the spot",
        ];
        for payload in payloads {
            assert_eq!(unpack(payload, MAX), Unpacked::Plain, "{payload:02x?}");
        }
    }

    const DATA_MESSAGE: &str = r#"{
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": "/aws/waf",
        "logStream": "stream-1",
        "subscriptionFilters": ["to-kinesis"],
        "logEvents": [
            {"id": "31953106606966983378809025079804211143289615424298221568", "timestamp": 1432826855000, "message": "{\"action\":\"ALLOW\"}"},
            {"id": "31953106606966983378809025079804211143289615424298221569", "timestamp": 1432826855000, "message": "line with \"quotes\", a tab\t and é"},
            {"id": "31953106606966983378809025079804211143289615424298221570", "timestamp": 1432826855001, "message": ""}
        ]
    }"#;

    fn data_messages() -> Vec<Vec<u8>> {
        vec![
            b"{\"action\":\"ALLOW\"}".to_vec(),
            "line with \"quotes\", a tab\t and é".as_bytes().to_vec(),
            Vec::new(),
        ]
    }

    #[test]
    fn a_cloudwatch_logs_data_message_yields_its_events() {
        let got = records(unpack(&gzip(DATA_MESSAGE.as_bytes()), MAX));
        assert!(
            got.iter()
                .all(|r| r.partition_key.is_none() && r.sub_sequence.is_none())
        );
        assert_eq!(
            got.into_iter().map(|r| r.data.to_vec()).collect::<Vec<_>>(),
            data_messages()
        );
    }

    #[test]
    fn a_zlib_data_message_yields_its_events() {
        let compressed = zlib(DATA_MESSAGE.as_bytes());
        assert_eq!(compressed[0], 0x78);
        assert_eq!(datas(unpack(&compressed, MAX)), data_messages());
    }

    #[test]
    fn a_control_message_is_empty() {
        let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1432826855000,"message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}"#;
        assert_eq!(unpack(&gzip(control.as_bytes()), MAX), Unpacked::Empty);
        let no_events = r#"{"messageType":"DATA_MESSAGE","logEvents":[]}"#;
        assert_eq!(unpack(&gzip(no_events.as_bytes()), MAX), Unpacked::Empty);
    }

    #[test]
    fn broken_compressed_data_is_a_flaw() {
        let compressed = gzip(DATA_MESSAGE.as_bytes());
        for len in [2, 10, compressed.len() / 2, compressed.len() - 4] {
            assert_eq!(
                unpack(&compressed[..len], MAX),
                Unpacked::Flawed(Flaw::Gzip),
                "gzip cut to {len} bytes"
            );
        }
        let mut bad_crc = compressed.clone();
        let crc_at = bad_crc.len() - 8;
        bad_crc[crc_at] ^= 0x01;
        assert_eq!(unpack(&bad_crc, MAX), Unpacked::Flawed(Flaw::Gzip));

        let compressed = zlib(DATA_MESSAGE.as_bytes());
        assert_eq!(
            unpack(&compressed[..compressed.len() / 2], MAX),
            Unpacked::Flawed(Flaw::Gzip)
        );
    }

    #[test]
    fn decompressing_past_max_bytes_is_a_flaw() {
        let bomb = gzip(&vec![b'a'; 4 << 20]);
        assert!(bomb.len() < 8 << 10);
        assert_eq!(unpack(&bomb, MAX), Unpacked::Flawed(Flaw::TooLarge));
        assert_eq!(
            unpack(&zlib(&vec![0; 4 << 20]), MAX),
            Unpacked::Flawed(Flaw::TooLarge)
        );

        let line = b"exactly as long as allowed";
        assert_eq!(
            unpack(&gzip(line), line.len() - 1),
            Unpacked::Flawed(Flaw::TooLarge)
        );
        assert_eq!(datas(unpack(&gzip(line), line.len())), vec![line.to_vec()]);
    }

    #[test]
    fn a_compressed_plain_line_is_one_record() {
        let line = b"Apr 14 12:00:01 host sshd[42]: Failed password for root\n";
        let got = records(unpack(&gzip(line), MAX));
        assert_eq!(
            got,
            vec![UserRecord {
                data: Bytes::from_static(line),
                partition_key: None,
                sub_sequence: None,
            }]
        );
        let json_line = br#"{"action":"BLOCK","logEvents":"not an envelope's"}"#;
        assert_eq!(
            datas(unpack(&gzip(json_line), MAX)),
            vec![json_line.to_vec()]
        );
        let two_members = [gzip(b"first "), gzip(b"second")].concat();
        assert_eq!(
            datas(unpack(&two_members, MAX)),
            vec![b"first second".to_vec()]
        );
    }

    #[test]
    fn an_envelope_that_is_not_valid_is_a_flaw() {
        let envelopes = [
            r#"{"messageType":"DATA_MESSAGE","owner":"1"}"#,
            r#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","timestamp":1,"message":7}]}"#,
            r#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","timestamp":1}]}"#,
            r#"{"messageType":"SOMETHING_ELSE","logEvents":[]}"#,
            r#"{"messageType":42,"logEvents":[]}"#,
            r#"{"messageType":"DATA_MESSAGE","logEvents":[{"message":"cut"#,
        ];
        for envelope in envelopes {
            assert_eq!(
                unpack(&gzip(envelope.as_bytes()), MAX),
                Unpacked::Flawed(Flaw::CloudWatchLogs),
                "{envelope}"
            );
        }
    }
}
