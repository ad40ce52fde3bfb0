//! Kinesis Data Streams on the kinesis-local server `scripts/services up`
//! starts on 127.0.0.1:4567 (`SECLAKE_KINESIS_ENDPOINT` to point elsewhere),
//! reached through aws-sdk-kinesis: a stream is created, records go in with
//! PutRecords and come back from every shard with GetRecords.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::client::Waiters;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};

const SHARDS: i32 = 2;
/// kinesis-local slows as a shard fills (`../shared/SERVICES.md`): a few
/// hundred records per shard keep this quick.
const RECORDS: usize = 600;
const WAIT: Duration = Duration::from_secs(60);

fn client() -> Option<Client> {
    let endpoint = seclake_fixtures::services::service(
        "kinesis",
        "SECLAKE_KINESIS_ENDPOINT",
        "http://127.0.0.1:4567",
    )?;
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    Some(Client::from_conf(config))
}

#[tokio::test]
async fn records_go_round_trip_through_every_shard() {
    let Some(kinesis) = client() else { return };
    let stream = seclake_fixtures::services::unique_name("seclake-test");
    kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(SHARDS)
        .send()
        .await
        .unwrap();
    kinesis
        .wait_until_stream_exists()
        .stream_name(&stream)
        .wait(WAIT)
        .await
        .expect("stream becomes ACTIVE");

    let mut sent = BTreeMap::new();
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(200) {
        let entries = chunk
            .iter()
            .map(|&i| {
                let data = format!(r#"{{"seq":{i},"clientIp":"203.0.113.{}"}}"#, i % 250);
                sent.insert(i, data.clone());
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("client-{}", i % 53))
                    .data(Blob::new(data))
                    .build()
                    .unwrap()
            })
            .collect();
        let put = kinesis
            .put_records()
            .stream_name(&stream)
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
        assert_eq!(put.failed_record_count(), Some(0));
        assert_eq!(put.records().len(), chunk.len());
    }

    let shards = kinesis
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .unwrap();
    assert_eq!(shards.shards().len(), usize::try_from(SHARDS).unwrap());
    let mut received = BTreeMap::new();
    let mut shards_with_records = 0;
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(&stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        // Sequence numbers are decimal strings of up to 128 digits (56 here),
        // past u128: compared as (length, digits).
        let mut last_sequence: Option<(usize, String)> = None;
        let mut from_this_shard = 0;
        // Read until the shard reports nothing behind: all it holds is read.
        while let Some(current) = iterator {
            let page = kinesis
                .get_records()
                .shard_iterator(current)
                .limit(250)
                .send()
                .await
                .unwrap();
            for record in page.records() {
                let digits = record.sequence_number();
                assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{digits}");
                let sequence = (digits.len(), digits.to_owned());
                assert!(last_sequence.as_ref().is_none_or(|last| *last < sequence));
                last_sequence = Some(sequence);
                let data = String::from_utf8(record.data().as_ref().to_vec()).unwrap();
                let seq = data
                    .strip_prefix(r#"{"seq":"#)
                    .and_then(|rest| rest.split(',').next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap();
                assert_eq!(record.partition_key(), format!("client-{}", seq % 53));
                assert!(received.insert(seq, data).is_none(), "no duplicates");
                from_this_shard += 1;
            }
            let caught_up = page.millis_behind_latest() == Some(0);
            iterator = page.next_shard_iterator;
            if caught_up && page.records.is_empty() {
                break;
            }
        }
        if from_this_shard > 0 {
            shards_with_records += 1;
        }
    }
    assert_eq!(received, sent);
    // 53 partition keys hash onto both shards' halves of the key space.
    assert_eq!(shards_with_records, SHARDS);

    kinesis
        .delete_stream()
        .stream_name(&stream)
        .enforce_consumer_deletion(true)
        .send()
        .await
        .unwrap();
}
