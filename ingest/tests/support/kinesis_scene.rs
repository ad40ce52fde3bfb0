//! The Kinesis source's test scene, shared by `kinesis_source.rs` and
//! `kinesis_faults.rs` (`#[path]`): kinesis-local (127.0.0.1:4567,
//! `SECLAKE_KINESIS_ENDPOINT`) with the leases in moto's DynamoDB
//! (127.0.0.1:5000, `SECLAKE_S3_ENDPOINT`), both started by `scripts/services
//! up kinesis moto`. Each scene has a fresh stream and lease table and
//! deletes them.
//!
//! The pipeline is played by a thread that takes every batch, notes its
//! records and drops it, which acknowledges it.
#![allow(dead_code)] // each test crate uses its own share

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::client::Waiters;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use seclake_fixtures::services::{moto_with_credentials, service, unique_name};
use seclake_ingest::kinesis::lease::{Lease, LeaseTable};
use seclake_ingest::{
    Batch, BatchSender, Finished, Flaw, Position, Shutdown, SourceConfig, SourceContext,
};

pub const WAIT: Duration = Duration::from_secs(90);
/// Short, so that a take-over is quick; renewals every second.
pub const LEASE_TIMEOUT_SECS: u64 = 3;

/// The two servers, or none when they are down outside CI.
pub struct Services {
    pub kinesis: Client,
    pub kinesis_url: String,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub moto_url: String,
    pub rt: tokio::runtime::Runtime,
}

/// A stream and a lease table of their own, deleted when dropped.
pub struct Scene<'s> {
    pub services: &'s Services,
    pub stream: String,
    pub table: String,
}

/// What a client of `endpoint` needs: moto's test credentials, a region,
/// the SDK's default retries.
fn sdk_config(endpoint: &str) -> SdkConfig {
    let credentials = Credentials::new("testing", "testing", None, None, "test");
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build()
}

/// A Kinesis client of `endpoint`: kinesis-local or a proxy in front of it.
pub fn kinesis_client(endpoint: &str) -> Client {
    Client::new(&sdk_config(endpoint))
}

impl Services {
    pub fn up() -> Option<Services> {
        let kinesis_url = service(
            "kinesis",
            "SECLAKE_KINESIS_ENDPOINT",
            "http://127.0.0.1:4567",
        )?;
        let moto_url = moto_with_credentials()?;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk_config(&moto_url));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        Some(Services {
            kinesis: kinesis_client(&kinesis_url),
            kinesis_url,
            dynamo,
            moto_url,
            rt,
        })
    }

    pub fn scene(&self, shards: i32) -> Scene<'_> {
        let stream = unique_name("seclake-test");
        self.rt.block_on(async {
            self.kinesis
                .create_stream()
                .stream_name(&stream)
                .shard_count(shards)
                .send()
                .await
                .expect("CreateStream");
            self.kinesis
                .wait_until_stream_exists()
                .stream_name(&stream)
                .wait(WAIT)
                .await
                .expect("the stream becomes ACTIVE");
        });
        Scene {
            services: self,
            stream,
            table: unique_name("seclake-leases"),
        }
    }
}

impl Drop for Scene<'_> {
    fn drop(&mut self) {
        let s = self.services;
        s.rt.block_on(async {
            let _ = s
                .kinesis
                .delete_stream()
                .stream_name(&self.stream)
                .send()
                .await;
            let _ = s.dynamo.delete_table().table_name(&self.table).send().await;
        });
    }
}

impl Scene<'_> {
    /// PutRecords of `(partition key, data)` pairs, 200 a call, every one
    /// accepted.
    pub fn put(&self, records: &[(String, Vec<u8>)]) {
        let s = self.services;
        s.rt.block_on(async {
            for chunk in records.chunks(200) {
                let entries = chunk
                    .iter()
                    .map(|(key, data)| {
                        PutRecordsRequestEntry::builder()
                            .partition_key(key)
                            .data(Blob::new(data.clone()))
                            .build()
                            .expect("an entry")
                    })
                    .collect::<Vec<_>>();
                let out = s
                    .kinesis
                    .put_records()
                    .stream_name(&self.stream)
                    .set_records(Some(entries))
                    .send()
                    .await
                    .expect("PutRecords");
                assert_eq!(out.failed_record_count(), Some(0), "every record put");
            }
        });
    }

    /// A worker of this scene's stream and lease table on kinesis-local.
    pub fn config(&self, worker: &str, until_caught_up: bool) -> Worker {
        self.config_via(&self.services.kinesis_url, "", worker, until_caught_up)
    }

    /// A worker that reaches Kinesis at `endpoint` (a proxy in front of
    /// kinesis-local), with `extra` config lines.
    pub fn config_via(
        &self,
        endpoint: &str,
        extra: &str,
        worker: &str,
        until_caught_up: bool,
    ) -> Worker {
        let text = format!(
            "type = \"kinesis\"\nformat = \"app\"\nstream = \"{}\"\nregion = \"us-east-1\"\n\
             endpoint = \"{endpoint}\"\nlease_table = \"{}\"\nlease_endpoint = \"{}\"\n\
             lease_timeout_secs = {LEASE_TIMEOUT_SECS}\nworker_id = \"{worker}\"\n{extra}",
            self.stream, self.table, self.services.moto_url
        );
        let config: SourceConfig = toml::from_str(&text).expect("a kinesis config");
        config.spec().check().expect("a valid config");
        Worker::start(config, self.services.rt.handle().clone(), until_caught_up)
    }

    /// Waits until the stream is ACTIVE again after a reshard.
    pub fn wait_active(&self, after: &str) {
        let s = self.services;
        s.rt.block_on(
            s.kinesis
                .wait_until_stream_exists()
                .stream_name(&self.stream)
                .wait(WAIT),
        )
        .unwrap_or_else(|e| panic!("ACTIVE after {after}: {e}"));
    }

    /// The ids of the shards still open for writes.
    pub fn open_shards(&self) -> Vec<String> {
        let s = self.services;
        let out =
            s.rt.block_on(s.kinesis.list_shards().stream_name(&self.stream).send())
                .expect("ListShards");
        out.shards()
            .iter()
            .filter(|s| {
                s.sequence_number_range()
                    .is_some_and(|r| r.ending_sequence_number().is_none())
            })
            .map(|s| s.shard_id().to_owned())
            .collect()
    }

    pub fn leases(&self) -> Vec<Lease> {
        let table = LeaseTable::new(self.services.dynamo.clone(), &self.table);
        self.services.rt.block_on(table.list()).expect("the leases")
    }
}

/// What the pipeline thread saw of one record.
#[derive(Debug, Clone)]
pub struct Seen {
    pub data: String,
    pub position: Position,
    pub flaw: Option<Flaw>,
}

/// A running source and the pipeline thread that drains it.
pub struct Worker {
    shutdown: Shutdown,
    seen: Arc<Mutex<Vec<Seen>>>,
    source: JoinHandle<Finished>,
    pipeline: JoinHandle<()>,
}

impl Worker {
    fn start(config: SourceConfig, rt: tokio::runtime::Handle, until_caught_up: bool) -> Worker {
        let (tx, rx) = crossbeam_channel::bounded::<Batch>(4);
        let mut ctx = SourceContext::new(BatchSender::new(tx), rt);
        ctx.until_caught_up = until_caught_up;
        let shutdown = ctx.shutdown.clone();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let pipeline = {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                for batch in rx {
                    let mut seen = seen.lock().expect("seen");
                    for (i, (raw, record)) in batch.iter().enumerate() {
                        seen.push(Seen {
                            data: String::from_utf8_lossy(raw).into_owned(),
                            position: batch.position(i),
                            flaw: record.flaw,
                        });
                    }
                }
            })
        };
        let source = std::thread::spawn(move || {
            let source = config.spec().build().expect("builds");
            source.run(&ctx).expect("runs")
        });
        Worker {
            shutdown,
            seen,
            source,
            pipeline,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    /// Stops it as SIGTERM does: what was read is settled, the leases given back.
    pub fn stop(self) -> Vec<Seen> {
        self.shutdown.trigger();
        self.finish()
    }

    /// Waits for it to stop by itself (caught up), then settles.
    pub fn finish(self) -> Vec<Seen> {
        let finished = self.source.join().expect("the source thread");
        self.pipeline.join().expect("the pipeline thread");
        assert_eq!(finished.outstanding.settle(), 0, "every batch delivered");
        self.seen.lock().expect("seen").clone()
    }

    /// Stops reading without settling: its leases stay as a dead worker
    /// leaves them (owned, not renewed), like a `kill -9`.
    pub fn crash(self) -> Vec<Seen> {
        self.shutdown.trigger();
        let finished = self.source.join().expect("the source thread");
        self.pipeline.join().expect("the pipeline thread");
        std::mem::forget(finished.outstanding);
        self.seen.lock().expect("seen").clone()
    }
}

/// Polls `done` until it holds or `WAIT` passes.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `n` app-like records `{"key":K,"n":I}`, spread over 40 partition keys.
pub fn records(tag: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let key = format!("key-{}", i % 40);
            let data = format!(r#"{{"tag":"{tag}","key":"{key}","n":{i}}}"#);
            (key, data.into_bytes())
        })
        .collect()
}

pub fn data_of(records: &[(String, Vec<u8>)]) -> BTreeSet<String> {
    records
        .iter()
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .collect()
}

pub fn clean(seen: &[Seen]) -> BTreeSet<String> {
    seen.iter()
        .filter(|s| s.flaw.is_none())
        .map(|s| s.data.clone())
        .collect()
}
