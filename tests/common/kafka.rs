//! Kafka in tests: the topics and groups a test made, deleted when it
//! ends, and the offsets a group committed.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use seclake_fixtures::services::unique_name;

/// The topics and groups a test creates, deleted when it ends (passed or
/// failed), so the broker's data directory does not grow with every run.
pub struct Cleanup {
    brokers: String,
    topics: Vec<String>,
    groups: Vec<String>,
}

impl Cleanup {
    pub fn new(brokers: &str) -> Cleanup {
        Cleanup {
            brokers: brokers.to_owned(),
            topics: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// A fresh topic name ([`unique_name`]), deleted at the end.
    pub fn topic(&mut self, prefix: &str) -> String {
        let name = unique_name(prefix);
        self.topics.push(name.clone());
        name
    }

    /// A fresh consumer group name, deleted at the end.
    pub fn group(&mut self, prefix: &str) -> String {
        let name = unique_name(prefix);
        self.groups.push(name.clone());
        name
    }
}

impl Drop for Cleanup {
    /// Best effort, and no panic while a failed test unwinds: a topic that
    /// was never created, or a group still in use, is only reported.
    fn drop(&mut self) {
        let admin: AdminClient<DefaultClientContext> = match ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
        {
            Ok(admin) => admin,
            Err(e) => return eprintln!("cleanup: no admin client for {}: {e}", self.brokers),
        };
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return eprintln!("cleanup: no runtime");
        };
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        rt.block_on(async {
            let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
            let groups: Vec<&str> = self.groups.iter().map(String::as_str).collect();
            if !topics.is_empty() {
                match admin.delete_topics(&topics, &options).await {
                    Ok(results) => report_failures("topic", results),
                    Err(e) => eprintln!("cleanup: deleting topics {topics:?}: {e}"),
                }
            }
            if !groups.is_empty() {
                match admin.delete_groups(&groups, &options).await {
                    Ok(results) => report_failures("group", results),
                    Err(e) => eprintln!("cleanup: deleting groups {groups:?}: {e}"),
                }
            }
        });
    }
}

fn report_failures(kind: &str, results: Vec<Result<String, (String, RDKafkaErrorCode)>>) {
    for result in results {
        if let Err((name, code)) = result {
            // Never created (the test failed first) is no news, nor is a
            // group whose static members stay until their session expires
            // (they don't leave on close); its offsets are all it holds.
            if !matches!(
                code,
                RDKafkaErrorCode::UnknownTopicOrPartition
                    | RDKafkaErrorCode::GroupIdNotFound
                    | RDKafkaErrorCode::NonEmptyGroup
            ) {
                eprintln!("cleanup: {kind} {name} not deleted: {code}");
            }
        }
    }
}

/// For partitions `0..partitions` of `topic`: the offset `group` committed
/// (`Offset::Invalid` where none) and the partition's high watermark; `None`
/// while the broker does not answer.
pub fn committed_and_high(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Option<Vec<(Offset, i64)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .ok()?;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .ok()?;
    (0..partitions)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .ok()?;
            let offset = committed
                .find_partition(topic, p)
                .map_or(Offset::Invalid, |e| e.offset());
            Some((offset, high))
        })
        .collect()
}
