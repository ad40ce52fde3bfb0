//! The lake: Hive layout, files only visible once committed, readable by
//! DataFusion, acknowledgements only after commit, lossless round trip.

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use proptest::prelude::*;
use seclake_enrich::schema::{Event, events_to_batch};
use seclake_ingest::{Ack, AckStatus, Format};
use seclake_sink::{
    DeadLetter, DeadLetterConfig, DeadLetterLine, DeadLetterWriter, LakeConfig, LakeWriter,
};

const HOUR_US: i64 = 3_600_000_000;
/// 2026-11-25T00:00:00Z in µs.
const DAY_US: i64 = 1_795_564_800_000_000;

fn event(i: i64, source: &str, ts: i64) -> Event {
    Event {
        event_id: format!("{i:032x}"),
        source: source.into(),
        ts,
        ingest_ts: 1_000_000_000_000_000 - ts,
        client_ip: Some(format!("198.51.100.{}", i % 250)),
        uri: Some(format!("/p/{i}")),
        threat_level: "low".into(),
        waf_labels: vec!["a".into(), "b".into()],
        headers: Some(vec![("host".into(), "x".into())]),
        ..Event::default()
    }
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn rows_land_in_hive_partitions_by_event_hour_and_datafusion_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let mut lake = LakeWriter::open(&LakeConfig::new(&url)).await.unwrap();
    let waf: Vec<Event> = (0..100)
        .map(|i| event(i, "waf", DAY_US + i * HOUR_US / 50))
        .collect();
    let app: Vec<Event> = (0..10)
        .map(|i| event(1000 + i, "app", DAY_US + 23 * HOUR_US + i))
        .collect();
    let (ack, mut waiter) = Ack::new();
    lake.write(Format::Waf, &events_to_batch(&waf).unwrap(), &ack)
        .await
        .unwrap();
    lake.write(Format::App, &events_to_batch(&app).unwrap(), &ack)
        .await
        .unwrap();
    drop(ack);

    assert!(
        files_under(dir.path())
            .iter()
            .all(|f| !f.ends_with(".parquet"))
    );
    assert_eq!(
        waiter.try_status(),
        None,
        "acknowledged before any file was committed"
    );
    lake.close_all().await.unwrap();
    assert_eq!(waiter.try_status(), Some(AckStatus::Delivered));

    let files = files_under(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[0].starts_with("source=app/dt=2026-11-25/hour=23/part-"));
    assert!(files[1].starts_with("source=waf/dt=2026-11-25/hour=00/part-"));
    assert!(files[2].starts_with("source=waf/dt=2026-11-25/hour=01/part-"));
    assert_eq!(lake.stats().rows, 110);

    let ctx = SessionContext::new();
    let options = ParquetReadOptions::default().table_partition_cols(vec![
        ("source".into(), arrow::datatypes::DataType::Utf8),
        ("dt".into(), arrow::datatypes::DataType::Utf8),
        ("hour".into(), arrow::datatypes::DataType::Utf8),
    ]);
    ctx.register_parquet("events", &format!("{}/", dir.path().display()), options)
        .await
        .unwrap();
    let batches = ctx
        .sql("SELECT source, hour, count(*) AS n FROM events GROUP BY source, hour ORDER BY source, hour")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(text.contains("| app    | 23   | 10 |"), "{text}");
    assert!(text.contains("| waf    | 00   | 50 |"), "{text}");
    assert!(text.contains("| waf    | 01   | 50 |"), "{text}");

    let batches = ctx
        .sql("SELECT * FROM events WHERE source = 'waf' ORDER BY ts")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let back: Vec<Event> = batches
        .iter()
        .flat_map(|b| Event::from_batch(b).unwrap())
        .collect();
    assert_eq!(back, waf);
}

#[tokio::test]
async fn files_roll_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LakeConfig::new(format!("file://{}", dir.path().display()));
    cfg.max_file_bytes = 1;
    cfg.row_group_rows = 10;
    let mut lake = LakeWriter::open(&cfg).await.unwrap();
    let (ack, waiter) = Ack::new();
    for chunk in 0..3 {
        let events: Vec<Event> = (0..20)
            .map(|i| event(chunk * 20 + i, "waf", DAY_US + i))
            .collect();
        lake.write(Format::Waf, &events_to_batch(&events).unwrap(), &ack)
            .await
            .unwrap();
    }
    drop(ack);
    // Every write crossed the 1-byte limit, so each batch is in its own committed file.
    assert_eq!(lake.stats().files, 3);
    assert_eq!(lake.open_files(), 0);
    assert_eq!(waiter.wait().await, AckStatus::Delivered);
}

#[tokio::test]
async fn a_missing_local_root_is_created_and_a_bad_scheme_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/lake");
    LakeWriter::open(&LakeConfig::new(format!("file://{}", nested.display())))
        .await
        .unwrap();
    assert!(nested.is_dir());
    let err = LakeWriter::open(&LakeConfig::new("gs://bucket/x"))
        .await
        .err()
        .expect("gs is not supported")
        .to_string();
    assert!(err.contains("lake.url") && err.contains("gs"), "{err}");
}

#[tokio::test]
async fn dead_letters_keep_raw_bytes_reason_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut dlq = DeadLetterWriter::open(&DeadLetterConfig::new(format!(
        "file://{}",
        dir.path().display()
    )))
    .await
    .unwrap();
    let (ack, mut waiter) = Ack::new();
    let letters = vec![
        DeadLetter {
            position: seclake_ingest::Position::Line {
                origin: "logs/waf.ndjson".into(),
                line: 7,
            },
            reason: "invalid waf record: EOF",
            raw: b"{\"timestamp\":",
        },
        DeadLetter {
            position: seclake_ingest::Position::Line {
                origin: "logs/waf.ndjson".into(),
                line: 9,
            },
            reason: "invalid waf record: not UTF-8",
            raw: b"\xff\xfe{",
        },
    ];
    dlq.write(Format::Waf, letters, &ack).await.unwrap();
    drop(ack);
    assert_eq!(waiter.try_status(), None);
    dlq.close_all().await.unwrap();
    assert_eq!(waiter.try_status(), Some(AckStatus::Delivered));

    let files = files_under(dir.path());
    assert_eq!(files.len(), 1);
    assert!(files[0].starts_with("source=waf/dt="), "{files:?}");
    let text = std::fs::read_to_string(dir.path().join(&files[0])).unwrap();
    let lines: Vec<DeadLetterLine> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0].raw_bytes().unwrap(), b"{\"timestamp\":");
    assert_eq!(lines[0].position["line"], 7);
    assert_eq!(lines[0].position["origin"], "logs/waf.ndjson");
    assert_eq!(lines[1].raw, None);
    assert_eq!(lines[1].raw_bytes().unwrap(), b"\xff\xfe{");
    assert_eq!(lines[1].reason, "invalid waf record: not UTF-8");
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(".{0,12}")
}

prop_compose! {
    fn arb_event()(
        id in "[0-9a-f]{32}",
        ts in -2_000_000_000_000_000i64..4_000_000_000_000_000,
        ip in opt_text(),
        lat in proptest::option::of(-90.0f64..90.0),
        asn in proptest::option::of(any::<i64>()),
        status in proptest::option::of(any::<i32>()),
        labels in proptest::collection::vec(".{0,8}", 0..4),
        headers in proptest::option::of(proptest::collection::vec((".{0,6}", ".{0,6}"), 0..4)),
        message in opt_text(),
        score in 0i32..=100,
        reasons in proptest::collection::vec(".{0,10}", 0..3),
    ) -> Event {
        Event {
            event_id: id,
            source: "waf".into(),
            ts,
            ingest_ts: ts,
            client_ip: ip,
            lat,
            asn,
            status,
            waf_labels: labels,
            headers,
            message,
            threat_score: score,
            threat_level: "high".into(),
            threat_reasons: reasons,
            ..Event::default()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn event_to_arrow_to_parquet_and_back_is_lossless(events in proptest::collection::vec(arb_event(), 1..40)) {
        let batch = events_to_batch(&events).unwrap();
        let mut buf = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(buf))
            .unwrap()
            .build()
            .unwrap();
        let back: Vec<Event> = reader.flat_map(|b| Event::from_batch(&b.unwrap()).unwrap()).collect();
        prop_assert_eq!(back, events);
    }
}

#[test]
fn the_file_schema_is_the_event_schema_without_the_partition_column() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = rt
        .block_on(LakeWriter::open(&LakeConfig::new(format!(
            "file://{}",
            dir.path().display()
        ))))
        .unwrap();
    let schema = lake.file_schema();
    assert!(schema.field_with_name("source").is_err());
    assert!(schema.field_with_name("event_id").is_ok());
    assert_eq!(
        schema.fields().len(),
        seclake_enrich::schema::COLUMNS.len() - 1
    );
}

#[tokio::test]
async fn files_of_hours_left_behind_are_committed_and_open_files_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LakeConfig::new(format!("file://{}", dir.path().display()));
    cfg.max_open_files = 2;
    let mut lake = LakeWriter::open(&cfg).await.unwrap();
    let (ack, mut waiter) = Ack::new();
    for hour in 0..6 {
        let events: Vec<Event> = (0..5)
            .map(|i| event(hour * 10 + i, "waf", DAY_US + hour * HOUR_US + i))
            .collect();
        lake.write(Format::Waf, &events_to_batch(&events).unwrap(), &ack)
            .await
            .unwrap();
        // Only the newest hour and the one before it stay open.
        assert!(
            lake.open_files() <= 2,
            "{} files open at hour {hour}",
            lake.open_files()
        );
    }
    assert_eq!(lake.stats().files, 4);
    for (i, source) in ["app", "falco"].into_iter().enumerate() {
        let events = vec![event(100 + i as i64, source, DAY_US)];
        let format = if source == "app" {
            Format::App
        } else {
            Format::Falco
        };
        lake.write(format, &events_to_batch(&events).unwrap(), &ack)
            .await
            .unwrap();
        assert!(lake.open_files() <= 2);
    }
    drop(ack);
    assert_eq!(waiter.try_status(), None);
    lake.close_all().await.unwrap();
    assert_eq!(lake.stats().rows, 32);
    assert_eq!(waiter.try_status(), Some(AckStatus::Delivered));
}

#[tokio::test]
async fn files_are_zstd_with_statistics_and_a_page_index() {
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use parquet::basic::Compression;
    use parquet::file::metadata::PageIndexPolicy;
    let dir = tempfile::tempdir().unwrap();
    let mut lake = LakeWriter::open(&LakeConfig::new(format!("file://{}", dir.path().display())))
        .await
        .unwrap();
    let events: Vec<Event> = (0..100)
        .map(|i| Event {
            user_agent: Some(format!("curl/8.{i}")),
            ..event(i, "waf", DAY_US + i)
        })
        .collect();
    let (ack, _waiter) = Ack::new();
    lake.write(Format::Waf, &events_to_batch(&events).unwrap(), &ack)
        .await
        .unwrap();
    lake.close_all().await.unwrap();
    let file = files_under(dir.path()).pop().unwrap();
    let file = std::fs::File::open(dir.path().join(file)).unwrap();
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap();
    let meta = reader.metadata();
    let schema = meta.file_metadata().schema_descr();
    let ts = (0..schema.num_columns())
        .find(|i| schema.column(*i).name() == "ts")
        .unwrap();
    let chunk = meta.row_group(0).column(ts);
    assert!(matches!(chunk.compression(), Compression::ZSTD(_)));
    assert!(
        chunk
            .statistics()
            .is_some_and(|s| s.min_bytes_opt().is_some())
    );
    let column_index = meta.column_index().expect("page index written");
    assert!(!column_index[0].is_empty());
    // Free text, the header map and unordered high-cardinality values carry no min/max.
    for name in ["user_agent", "headers.key_value.value", "client_ip", "uri"] {
        let i = (0..schema.num_columns())
            .find(|i| schema.column(*i).path().string() == name)
            .unwrap();
        let stats = meta.row_group(0).column(i).statistics();
        assert!(
            stats.is_none_or(|s| s.min_bytes_opt().is_none()),
            "{name} has statistics"
        );
    }
}
