//! The lake on S3: the moto server that `scripts/services up` starts on
//! 127.0.0.1:5000 (`SECLAKE_S3_ENDPOINT` to point elsewhere).

use std::sync::Arc;

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use seclake_enrich::schema::{Event, events_to_batch};
use seclake_ingest::{Ack, AckStatus, Format};
use seclake_sink::{LakeConfig, LakeWriter};

const HOUR_US: i64 = 3_600_000_000;
/// 2026-11-25T00:00:00Z in µs.
const DAY_US: i64 = 1_795_564_800_000_000;
const REGION: &str = "us-east-1";

fn event(i: i64, ts: i64) -> Event {
    Event {
        event_id: format!("{i:032x}"),
        source: "waf".into(),
        ts,
        ingest_ts: ts,
        client_ip: Some(format!("198.51.100.{}", i % 250)),
        threat_level: "low".into(),
        ..Event::default()
    }
}

fn config(endpoint: &str, url: String) -> LakeConfig {
    LakeConfig {
        endpoint: Some(endpoint.to_owned()),
        region: Some(REGION.to_owned()),
        ..LakeConfig::new(url)
    }
}

#[tokio::test]
async fn the_lake_on_moto_s3_is_partitioned_and_datafusion_reads_it_back() {
    let Some(endpoint) = seclake_fixtures::services::moto_with_credentials() else {
        return;
    };
    let bucket = format!("seclake-test-{}", uuid::Uuid::now_v7().simple());
    seclake_fixtures::services::create_bucket(&endpoint, &bucket);

    let mut lake = LakeWriter::open(&config(&endpoint, format!("s3://{bucket}/lake")))
        .await
        .unwrap();
    let events: Vec<Event> = (0..300)
        .map(|i| event(i, DAY_US + i * HOUR_US / 100))
        .collect();
    let (ack, mut waiter) = Ack::new();
    lake.write(Format::Waf, &events_to_batch(&events).unwrap(), &ack)
        .await
        .unwrap();
    drop(ack);
    lake.close_all().await.unwrap();
    assert_eq!(waiter.try_status(), Some(AckStatus::Delivered));

    let store: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_region(REGION)
            .build()
            .unwrap(),
    );
    let mut keys = Vec::new();
    let mut listing = store.list(Some(&"lake".into()));
    while let Some(meta) = futures::StreamExt::next(&mut listing).await {
        keys.push(meta.unwrap().location.to_string());
    }
    keys.sort();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for (key, hour) in keys.iter().zip(["00", "01", "02"]) {
        let want = format!("lake/source=waf/dt=2026-11-25/hour={hour}/part-");
        assert!(key.starts_with(&want) && key.ends_with(".parquet"), "{key}");
    }

    let ctx = SessionContext::new();
    let url = url::Url::parse(&format!("s3://{bucket}")).unwrap();
    ctx.register_object_store(&url, store);
    let options = ParquetReadOptions::default().table_partition_cols(vec![
        ("source".into(), arrow::datatypes::DataType::Utf8),
        ("dt".into(), arrow::datatypes::DataType::Utf8),
        ("hour".into(), arrow::datatypes::DataType::Utf8),
    ]);
    ctx.register_parquet("events", &format!("s3://{bucket}/lake/"), options)
        .await
        .unwrap();
    let batches = ctx
        .sql("SELECT hour, count(DISTINCT event_id) AS n FROM events GROUP BY hour ORDER BY hour")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    for hour in ["00", "01", "02"] {
        assert!(text.contains(&format!("| {hour}   | 100 |")), "{text}");
    }
}

#[tokio::test]
async fn a_missing_bucket_is_a_clear_error_naming_the_key() {
    let Some(endpoint) = seclake_fixtures::services::moto_with_credentials() else {
        return;
    };
    let url = format!(
        "s3://seclake-missing-{}/lake",
        uuid::Uuid::now_v7().simple()
    );
    let err = LakeWriter::open(&config(&endpoint, url.clone()))
        .await
        .err()
        .expect("a missing bucket is refused")
        .to_string();
    assert!(err.contains("lake.url") && err.contains(&url), "{err}");
}
