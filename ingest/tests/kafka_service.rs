//! The Kafka broker `scripts/services up` starts on 127.0.0.1:9092
//! (`SECLAKE_KAFKA_BROKERS` to point elsewhere), reached through rdkafka:
//! topics are created explicitly, records go round trip with keys and
//! headers, and committed offsets are what the broker keeps for the group.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use seclake_fixtures::services::unique_name;

const PARTITIONS: i32 = 3;
const RECORDS: usize = 3_000;
/// Generous: a first consumer group join on a fresh broker takes a few
/// seconds; this only bounds a hang.
const WAIT: Duration = Duration::from_secs(60);

fn brokers() -> Option<String> {
    seclake_fixtures::services::service("kafka", "SECLAKE_KAFKA_BROKERS", "127.0.0.1:9092")
}

fn config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

async fn create_topic(admin: &AdminClient<DefaultClientContext>, topic: &str) {
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("CreateTopics request");
    assert_eq!(created, vec![Ok(topic.to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_go_round_trip_with_keys_headers_and_committed_offsets() {
    let Some(brokers) = brokers() else { return };
    let topic = unique_name("seclake-test");
    let admin: AdminClient<DefaultClientContext> = config(&brokers).create().unwrap();
    create_topic(&admin, &topic).await;

    let producer: FutureProducer = config(&brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "zstd")
        .create()
        .unwrap();
    let mut sent: BTreeMap<String, String> = BTreeMap::new();
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let key = format!("client-{}", i % 97);
        let payload = format!(r#"{{"seq":{i},"clientIp":"198.51.100.{}"}}"#, i % 250);
        let headers = OwnedHeaders::new().insert(Header {
            key: "seq",
            value: Some(i.to_string().as_str()),
        });
        let record = FutureRecord::to(&topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        // Enqueued now, acknowledged later: the batch goes out at once.
        let delivery = producer.send_result(record).map_err(|(e, _)| e).unwrap();
        deliveries.push(delivery);
        sent.insert(i.to_string(), payload);
    }
    let mut per_partition = [0i64; PARTITIONS as usize];
    for delivery in deliveries {
        let delivery = delivery
            .await
            .expect("producer alive")
            .map_err(|(e, _)| e)
            .expect("broker acknowledged");
        per_partition[usize::try_from(delivery.partition).unwrap()] += 1;
    }
    // Keys hash across partitions: every partition got some.
    assert!(per_partition.iter().all(|&n| n > 0), "{per_partition:?}");

    let consumer: StreamConsumer = config(&brokers)
        .set("group.id", &topic)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut received: BTreeMap<String, String> = BTreeMap::new();
    while received.len() < RECORDS {
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .expect("records arrive")
            .expect("no consumer error");
        let headers = message.headers().expect("headers kept");
        let seq = headers.iter().find(|h| h.key == "seq").expect("seq header");
        let seq = String::from_utf8(seq.value.unwrap().to_vec()).unwrap();
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        let index: usize = seq.parse().unwrap();
        assert_eq!(key, format!("client-{}", index % 97));
        let payload = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
        assert!(received.insert(seq, payload).is_none(), "no duplicates");
    }
    assert_eq!(received, sent);

    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    let committed = consumer.committed(WAIT).unwrap();
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let offset = committed
            .find_partition(&topic, partition)
            .expect("partition assigned")
            .offset()
            .to_raw()
            .expect("an offset, not a logical position");
        let (_, high) = consumer.fetch_watermarks(&topic, partition, WAIT).unwrap();
        assert_eq!(offset, high, "partition {partition} committed to its end");
        total += offset;
    }
    assert_eq!(total, i64::try_from(RECORDS).unwrap());

    let deleted = admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .unwrap();
    assert_eq!(deleted, vec![Ok(topic.clone())]);
}

#[tokio::test]
async fn topics_are_not_created_by_use() {
    let Some(brokers) = brokers() else { return };
    let topic = unique_name("seclake-absent");
    let consumer: StreamConsumer = config(&brokers)
        .set("allow.auto.create.topics", "true")
        .create()
        .unwrap();
    // A metadata request that asks for creation still finds no topic: the
    // broker runs with auto.create.topics.enable=false.
    let metadata = consumer.fetch_metadata(Some(&topic), WAIT).unwrap();
    let found = &metadata.topics()[0];
    assert_eq!(found.name(), topic);
    assert_eq!(
        found.error().map(RDKafkaErrorCode::from),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    );
}
