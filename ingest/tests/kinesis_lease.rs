//! The Kinesis lease table on moto's DynamoDB, which `scripts/services up
//! moto` starts on 127.0.0.1:5000 (`SECLAKE_S3_ENDPOINT` to point
//! elsewhere). Each test gets a table of its own, deleted when it ends.

use std::future::Future;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{AttributeValue, BillingMode, TableStatus};
use seclake_fixtures::services::{moto, unique_name};
use seclake_ingest::SequenceNumber;
use seclake_ingest::kinesis::lease::{Checkpoint, Lease, LeaseError, LeaseTable};

const SHARD: &str = "shardId-000000000000";
const SEQUENCE: &str = "49590338271490256608559692538361571095921575989136588898";

fn client() -> Option<Client> {
    let endpoint = moto()?;
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    Some(Client::from_conf(config))
}

/// Runs `test` with a lease table of a new name (not yet created) and the
/// client, then deletes the table, whether the test passed or panicked.
async fn with_table<F, Fut>(test: F)
where
    F: FnOnce(LeaseTable, Client) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(client) = client() else { return };
    let name = unique_name("seclake-leases");
    let outcome = tokio::spawn(test(LeaseTable::new(client.clone(), &name), client.clone())).await;
    if let Err(e) = client.delete_table().table_name(&name).send().await {
        eprintln!(
            "deleting lease table {name}: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(&e)
        );
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A table holding one free lease of [`SHARD`], and that lease.
async fn one_lease(table: &LeaseTable) -> Lease {
    table.ensure().await.unwrap();
    assert!(
        table
            .create_if_absent(SHARD, &[], Checkpoint::TrimHorizon)
            .await
            .unwrap()
    );
    stored(table).await
}

/// The lease of [`SHARD`] as the table has it.
async fn stored(table: &LeaseTable) -> Lease {
    let leases = table.list().await.unwrap();
    leases
        .into_iter()
        .find(|lease| lease.shard_id == SHARD)
        .expect("the lease is in the table")
}

fn at(sequence: &str, sub_sequence: u64) -> Checkpoint {
    Checkpoint::At {
        sequence: SequenceNumber::new(sequence).unwrap(),
        sub_sequence,
    }
}

/// Whether `result` is [`LeaseError::Lost`] for [`SHARD`]; other errors fail
/// the test.
fn is_lost(result: Result<impl std::fmt::Debug, LeaseError>) -> bool {
    match result {
        Err(LeaseError::Lost { shard_id }) => shard_id == SHARD,
        Err(other) => panic!("expected Lost, got {other}"),
        Ok(_) => false,
    }
}

#[tokio::test]
async fn ensure_creates_the_table_once() {
    with_table(|table, client| async move {
        let missing = client
            .describe_table()
            .table_name(table.name())
            .send()
            .await;
        assert!(missing.is_err(), "{missing:?}");

        table.ensure().await.unwrap();
        let described = client
            .describe_table()
            .table_name(table.name())
            .send()
            .await
            .unwrap();
        let description = described.table().unwrap();
        assert_eq!(description.table_status(), Some(&TableStatus::Active));
        assert_eq!(
            description
                .billing_mode_summary()
                .and_then(|summary| summary.billing_mode()),
            Some(&BillingMode::PayPerRequest)
        );
        let key = &description.key_schema()[0];
        assert_eq!(key.attribute_name(), "leaseKey");

        table
            .create_if_absent(SHARD, &[], Checkpoint::Latest)
            .await
            .unwrap();
        table.ensure().await.unwrap();
        assert_eq!(table.list().await.unwrap().len(), 1, "the table was kept");
    })
    .await;
}

#[tokio::test]
async fn create_if_absent_adds_a_lease_once() {
    with_table(|table, _| async move {
        table.ensure().await.unwrap();
        assert!(table.list().await.unwrap().is_empty());
        let parents = vec![
            "shardId-000000000001".to_owned(),
            "shardId-000000000002".to_owned(),
        ];
        let start = at(SEQUENCE, 0);
        assert!(
            table
                .create_if_absent(SHARD, &parents, start.clone())
                .await
                .unwrap()
        );
        assert!(
            !table
                .create_if_absent(SHARD, &[], Checkpoint::TrimHorizon)
                .await
                .unwrap()
        );
        let mut lease = stored(&table).await;
        lease.parents.sort();
        assert_eq!(
            lease,
            Lease {
                shard_id: SHARD.into(),
                owner: None,
                counter: 0,
                checkpoint: start,
                parents,
                owner_switches: 0,
            }
        );
        assert!(
            table
                .create_if_absent("shardId-000000000003", &[], Checkpoint::TrimHorizon)
                .await
                .unwrap()
        );
        assert_eq!(table.list().await.unwrap().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn of_two_workers_taking_one_lease_one_wins() {
    with_table(|table, _| async move {
        let free = one_lease(&table).await;
        let (a, b) = tokio::join!(table.take(&free, "worker-a"), table.take(&free, "worker-b"));
        let (winner, loser) = match (a, b) {
            (Ok(won), lost) | (lost, Ok(won)) => (won, lost),
            (a, b) => panic!("nobody took the lease: {a:?}, {b:?}"),
        };
        assert!(is_lost(loser));
        assert_eq!(winner.counter, free.counter + 1);
        assert_eq!(winner, stored(&table).await);

        // The same when two workers steal one lease.
        let (a, b) = tokio::join!(
            table.take(&winner, "worker-c"),
            table.take(&winner, "worker-d")
        );
        assert_eq!(usize::from(a.is_ok()) + usize::from(b.is_ok()), 1);
        let thief = a.or(b).unwrap();
        assert_eq!(thief.counter, winner.counter + 1);
        assert_eq!(thief, stored(&table).await);
    })
    .await;
}

#[tokio::test]
async fn a_stolen_lease_cannot_be_renewed() {
    with_table(|table, _| async move {
        let free = one_lease(&table).await;
        let held = table.take(&free, "worker-a").await.unwrap();
        let renewed = table.renew(&held).await.unwrap();
        assert_eq!(renewed.counter, held.counter + 1);
        assert_eq!(renewed.owner.as_deref(), Some("worker-a"));
        assert!(is_lost(table.renew(&held).await), "an old counter is stale");

        let seen = stored(&table).await;
        assert_eq!(seen, renewed);
        table.take(&seen, "worker-b").await.unwrap();
        assert!(is_lost(table.renew(&renewed).await));
        assert_eq!(stored(&table).await.owner.as_deref(), Some("worker-b"));
    })
    .await;
}

#[tokio::test]
async fn a_lost_lease_cannot_be_checkpointed() {
    with_table(|table, _| async move {
        let free = one_lease(&table).await;
        assert!(
            is_lost(table.checkpoint(&free, at(SEQUENCE, 0)).await),
            "not held"
        );
        let held = table.take(&free, "worker-a").await.unwrap();
        let held = table.checkpoint(&held, at(SEQUENCE, 0)).await.unwrap();

        let seen = stored(&table).await;
        let stolen = table.take(&seen, "worker-b").await.unwrap();
        let later = at(&format!("{}9", &SEQUENCE[..SEQUENCE.len() - 1]), 0);
        assert!(is_lost(table.checkpoint(&held, later).await));
        assert!(is_lost(table.checkpoint(&held, Checkpoint::ShardEnd).await));
        assert_eq!(stored(&table).await, stolen);
        assert_eq!(stolen.checkpoint, at(SEQUENCE, 0));
    })
    .await;
}

#[tokio::test]
async fn checkpoints_go_round_trip() {
    with_table(|table, _| async move {
        let free = one_lease(&table).await;
        let held = table.take(&free, "worker-a").await.unwrap();
        assert_eq!(SEQUENCE.len(), 56);
        let checkpoint = at(SEQUENCE, 7);
        let checkpointed = table.checkpoint(&held, checkpoint.clone()).await.unwrap();
        assert_eq!(
            checkpointed,
            Lease {
                checkpoint: checkpoint.clone(),
                ..held.clone()
            }
        );
        assert_eq!(stored(&table).await, checkpointed);

        // Renewing keeps the checkpoint; the renewed lease checkpoints on.
        let renewed = table.renew(&checkpointed).await.unwrap();
        assert_eq!(renewed.checkpoint, checkpoint);
        let longest = at(&"9".repeat(SequenceNumber::MAX_DIGITS), u64::MAX);
        let renewed = table.checkpoint(&renewed, longest.clone()).await.unwrap();
        assert_eq!(stored(&table).await.checkpoint, longest);
        let ended = table
            .checkpoint(&renewed, Checkpoint::ShardEnd)
            .await
            .unwrap();
        assert_eq!(stored(&table).await, ended);
        assert_eq!(ended.checkpoint, Checkpoint::ShardEnd);
        assert_eq!(ended.counter, renewed.counter);
    })
    .await;
}

#[tokio::test]
async fn a_released_lease_is_free_for_another_worker() {
    with_table(|table, _| async move {
        let free = one_lease(&table).await;
        let held = table.take(&free, "worker-a").await.unwrap();
        table.release(&held).await.unwrap();
        assert!(is_lost(table.release(&held).await), "released twice");
        let seen = stored(&table).await;
        assert_eq!(seen.owner, None);
        assert_eq!(seen.counter, held.counter + 1);
        assert!(is_lost(table.renew(&held).await));

        let taken = table.take(&seen, "worker-b").await.unwrap();
        assert_eq!(taken.owner.as_deref(), Some("worker-b"));
        assert_eq!(taken.counter, seen.counter + 1);
        assert_eq!(stored(&table).await, taken);
        assert!(is_lost(table.take(&seen, "worker-c").await), "taken twice");
    })
    .await;
}

#[tokio::test]
async fn owner_switches_count_takes_from_other_owners() {
    with_table(|table, _| async move {
        let free = one_lease(&table).await;
        let a = table.take(&free, "worker-a").await.unwrap();
        assert_eq!(
            a.owner_switches, 0,
            "a free lease has no owner to switch from"
        );
        let a = table.take(&a, "worker-a").await.unwrap();
        assert_eq!(a.owner_switches, 0, "taken back by its own owner");
        let b = table.take(&a, "worker-b").await.unwrap();
        assert_eq!(b.owner_switches, 1);
        let a = table.take(&b, "worker-a").await.unwrap();
        assert_eq!(a.owner_switches, 2);
        assert_eq!(stored(&table).await.owner_switches, 2);

        let a = table.checkpoint(&a, at(SEQUENCE, 1)).await.unwrap();
        assert_eq!(a.owner_switches, 0);
        let b = table.take(&a, "worker-b").await.unwrap();
        assert_eq!(b.owner_switches, 1);
        table.release(&b).await.unwrap();
        let c = table.take(&stored(&table).await, "worker-c").await.unwrap();
        assert_eq!(c.owner_switches, 1, "a release hands the lease over");
        assert_eq!(stored(&table).await, c);
    })
    .await;
}

#[tokio::test]
async fn items_that_are_not_leases_are_corrupt() {
    with_table(|table, client| async move {
        table.ensure().await.unwrap();
        client
            .put_item()
            .table_name(table.name())
            .item("leaseKey", AttributeValue::S(SHARD.into()))
            .item("leaseCounter", AttributeValue::N("3".into()))
            .item("checkpoint", AttributeValue::S("0042".into()))
            .send()
            .await
            .unwrap();
        match table.list().await {
            Err(LeaseError::Corrupt { shard_id, reason }) => {
                assert_eq!(shard_id, SHARD);
                assert!(reason.contains("0042"), "{reason}");
                assert!(reason.contains(table.name()), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    })
    .await;
}
