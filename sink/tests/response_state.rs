//! The block table against moto's DynamoDB: blocks round-trip with their
//! reasons and expiry, and a decider restored from it does not block again.

use std::time::Duration;

use seclake_enrich::threat::ThreatLevel;
use seclake_fixtures::services::{moto_with_credentials, unique_name};
use seclake_sink::response::{
    BlockPolicy, BlockTable, Decider, Observed, StateError, StoredBlock, Verdict, parse_net,
};

#[path = "support/block_table.rs"]
mod block_table;
use block_table::{client, create as table, delete as drop_table};

fn block(net: &str, until_ms: i64, reasons: &[&str]) -> StoredBlock {
    StoredBlock {
        net: parse_net(net).expect("a CIDR"),
        until_ms,
        created_ms: until_ms - 86_400_000,
        score: 100,
        level: ThreatLevel::Critical,
        trigger: "level critical".into(),
        reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
    }
}

#[tokio::test]
async fn blocks_round_trip_are_replaced_by_net_and_removed() {
    let Some(endpoint) = moto_with_credentials() else {
        return;
    };
    let dynamo = client(&endpoint);
    let name = table(&dynamo, "net").await;
    let blocks = BlockTable::new(dynamo.clone(), &name);
    blocks.check().await.expect("the table is usable");

    let first = block("198.51.100.7", 2_000_000, &["app.leaked_aws_key +100"]);
    let second = block("2001:db8::7", 3_000_000, &[]);
    blocks.put(&first).await.expect("put");
    blocks.put(&second).await.expect("put");
    assert_eq!(
        blocks.all().await.expect("scan"),
        vec![first.clone(), second.clone()]
    );

    let extended = StoredBlock {
        until_ms: 9_000_000,
        ..first.clone()
    };
    blocks.put(&extended).await.expect("put again");
    blocks.remove(second.net).await.expect("delete");
    assert_eq!(blocks.all().await.expect("scan"), vec![extended]);
    drop_table(&dynamo, &name).await;
}

#[tokio::test]
async fn a_restored_decider_neither_blocks_again_nor_forgets_to_expire() {
    let Some(endpoint) = moto_with_credentials() else {
        return;
    };
    let dynamo = client(&endpoint);
    let name = table(&dynamo, "net").await;
    let blocks = BlockTable::new(dynamo.clone(), &name);
    let reasons = vec![
        "waf.action.block +30".to_owned(),
        "ua.scanner +25".to_owned(),
    ];
    let event = Observed {
        ip: "198.51.100.7".parse().expect("ip"),
        ts_micros: 0,
        score: 100,
        level: ThreatLevel::Critical,
        reasons: &reasons,
        finding: None,
    };
    let policy = BlockPolicy {
        ttl: Duration::from_secs(3600),
        ..BlockPolicy::default()
    };
    let now = 1_000_000;
    let mut first = Decider::new(policy.clone(), Default::default());
    let Some(Verdict::Block(made)) = first.observe(&event, now) else {
        panic!("not blocked");
    };
    blocks.put(&StoredBlock::of(&made, now)).await.expect("put");

    // A restart: a new decider learns the block from the table.
    let mut second = Decider::new(policy, Default::default());
    for stored in blocks.all().await.expect("scan") {
        let ip = stored.host().expect("a host block");
        second.restore(ip, stored.until_ms);
    }
    assert_eq!(second.observe(&event, now + 1), None);
    assert_eq!(second.expired(now + 3_600_000), vec![event.ip]);
    let stored = blocks.all().await.expect("scan");
    assert_eq!(stored[0].trigger, "level critical");
    assert_eq!(stored[0].reasons, reasons);
    drop_table(&dynamo, &name).await;
}

#[tokio::test]
async fn a_table_keyed_otherwise_is_refused_by_name() {
    let Some(endpoint) = moto_with_credentials() else {
        return;
    };
    let dynamo = client(&endpoint);
    let name = table(&dynamo, "ip").await;
    let refused = BlockTable::new(dynamo.clone(), &name).check().await;
    assert!(
        matches!(&refused, Err(StateError::Unusable { why, .. }) if why.contains("\"net\"")),
        "{refused:?}"
    );
    let missing = BlockTable::new(dynamo.clone(), &unique_name("seclake-no-such"))
        .check()
        .await;
    assert!(
        matches!(missing, Err(StateError::Api { .. })),
        "{missing:?}"
    );
    drop_table(&dynamo, &name).await;
}
