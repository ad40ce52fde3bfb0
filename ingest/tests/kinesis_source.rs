//! The Kinesis source against kinesis-local (127.0.0.1:4567,
//! `SECLAKE_KINESIS_ENDPOINT`) with its leases in moto's DynamoDB
//! (127.0.0.1:5000, `SECLAKE_S3_ENDPOINT`), both started by `scripts/services
//! up`. Each test uses a fresh stream and lease table and deletes them; the
//! scene and the worker the tests drive are in `support/kinesis_scene.rs`.

#[path = "support/kinesis_scene.rs"]
mod kinesis_scene;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kinesis_scene::{LEASE_TIMEOUT_SECS, Seen, Services, clean, data_of, records, wait_for};
use seclake_ingest::kinesis::aggregate::{Flaw as PayloadFlaw, aggregate};
use seclake_ingest::kinesis::lease::Checkpoint;
use seclake_ingest::{Flaw, Position};

#[test]
fn one_worker_reads_every_shard_unpacks_kpl_and_resumes_from_its_checkpoints() {
    let Some(services) = Services::up() else {
        return;
    };
    let scene = services.scene(4);
    let plain = records("plain", 400);
    let users: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| {
            (
                format!("user-{i}"),
                format!(r#"{{"tag":"kpl","n":{i}}}"#).into_bytes(),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = users
        .iter()
        .map(|(k, d)| (k.as_str(), d.as_slice()))
        .collect();
    let packed = aggregate(&refs);
    let mut broken = aggregate(&refs[..3]);
    let last = broken.len() - 1;
    broken[last] ^= 0xff;
    let mut all = plain.clone();
    all.push(("agg".into(), packed));
    all.push(("bad".into(), broken.clone()));
    scene.put(&all);

    let first = scene.config("w1", true).finish();
    let mut expected = data_of(&plain);
    expected.extend(data_of(&users));
    assert_eq!(clean(&first), expected, "every record once unpacked");
    assert_eq!(
        first.iter().filter(|s| s.flaw.is_none()).count(),
        expected.len(),
        "no record twice"
    );
    let flawed: Vec<&Seen> = first.iter().filter(|s| s.flaw.is_some()).collect();
    assert_eq!(
        flawed.len(),
        1,
        "the aggregate with a bad MD5 is one dead letter"
    );
    assert_eq!(flawed[0].flaw, Some(Flaw::Payload(PayloadFlaw::KplDigest)));
    assert_eq!(
        flawed[0].data.as_bytes(),
        String::from_utf8_lossy(&broken).as_bytes()
    );
    let subs: Vec<Option<u32>> = first
        .iter()
        .filter(|s| s.flaw.is_none() && s.data.contains(r#""tag":"kpl""#))
        .map(|s| match &s.position {
            Position::Kinesis { sub_sequence, .. } => *sub_sequence,
            other => panic!("a Kinesis position, not {other:?}"),
        })
        .collect();
    assert_eq!(
        subs,
        (0..50).map(Some).collect::<Vec<_>>(),
        "sub-sequences in order"
    );

    let leases = scene.leases();
    assert_eq!(leases.len(), 4, "a lease per shard");
    assert!(
        leases.iter().all(|l| l.owner.is_none()),
        "given back at stop"
    );
    assert!(
        leases
            .iter()
            .filter(|l| matches!(l.checkpoint, Checkpoint::At { .. }))
            .count()
            >= 2,
        "the shards with records are checkpointed: {leases:?}"
    );

    let more = records("more", 120);
    scene.put(&more);
    let second = scene.config("w2", true).finish();
    assert_eq!(
        clean(&second),
        data_of(&more),
        "only what came after the checkpoints"
    );
    assert_eq!(second.len(), more.len(), "nothing read again");
}

#[test]
fn two_workers_split_the_shards_a_third_takes_its_share_and_every_record_is_delivered() {
    let Some(services) = Services::up() else {
        return;
    };
    let scene = services.scene(4);
    let a = scene.config("worker-a", false);
    let b = scene.config("worker-b", false);
    let sent = records("shared", 800);
    scene.put(&sent);
    let expected = data_of(&sent);
    wait_for("every record, and the shards split 2/2", || {
        let mut union = clean(&a.seen());
        union.extend(clean(&b.seen()));
        let leases = scene.leases();
        let owned_by = |w: &str| {
            leases
                .iter()
                .filter(|l| l.owner.as_deref() == Some(w))
                .count()
        };
        union == expected && owned_by("worker-a") == 2 && owned_by("worker-b") == 2
    });
    let c = scene.config("worker-c", false);
    let later = records("later", 300);
    scene.put(&later);
    let mut expected = expected;
    expected.extend(data_of(&later));
    wait_for("a third worker's fair share and every record", || {
        let mut union = clean(&a.seen());
        union.extend(clean(&b.seen()));
        union.extend(clean(&c.seen()));
        let leases = scene.leases();
        let mut owned: Vec<usize> = ["worker-a", "worker-b", "worker-c"]
            .iter()
            .map(|w| {
                leases
                    .iter()
                    .filter(|l| l.owner.as_deref() == Some(*w))
                    .count()
            })
            .collect();
        owned.sort_unstable();
        union == expected && owned == [1, 1, 2]
    });
    let mut union = clean(&a.stop());
    union.extend(clean(&b.stop()));
    union.extend(clean(&c.stop()));
    assert_eq!(union, expected);
}

#[test]
fn a_crashed_workers_shards_are_taken_over_after_the_lease_timeout_and_nothing_is_lost() {
    let Some(services) = Services::up() else {
        return;
    };
    let scene = services.scene(4);
    let before = records("before", 300);
    scene.put(&before);
    let first = scene.config("crashing", false);
    wait_for("the first worker to read everything", || {
        clean(&first.seen()) == data_of(&before)
    });
    let crashed_at = Instant::now();
    first.crash();
    let held: Vec<_> = scene
        .leases()
        .into_iter()
        .filter(|l| l.owner.as_deref() == Some("crashing"))
        .collect();
    assert_eq!(held.len(), 4, "the dead worker still holds every lease");

    let after = records("after", 300);
    scene.put(&after);
    let second = scene.config("survivor", false);
    wait_for("the survivor to read what came after", || {
        data_of(&after).is_subset(&clean(&second.seen()))
    });
    let took = crashed_at.elapsed();
    assert!(
        took >= Duration::from_secs(LEASE_TIMEOUT_SECS),
        "no lease is taken before it expires ({took:?})"
    );
    let leases = scene.leases();
    assert!(
        leases
            .iter()
            .all(|l| l.owner.as_deref() == Some("survivor")),
        "{leases:?}"
    );
    let seen = second.stop();
    // At least once: what the dead worker delivered but had not yet
    // checkpointed is read again; nothing after its checkpoints is lost.
    let mut all = data_of(&before);
    all.extend(data_of(&after));
    let got = clean(&seen);
    assert!(data_of(&after).is_subset(&got));
    assert!(got.is_subset(&all));
}

#[test]
fn a_split_shard_is_read_after_its_parent_and_keeps_each_keys_order() {
    let Some(services) = Services::up() else {
        return;
    };
    let scene = services.scene(1);
    let before = records("before", 200);
    scene.put(&before);
    let worker = scene.config("splitter", false);
    wait_for("the parent's records", || {
        data_of(&before).is_subset(&clean(&worker.seen()))
    });
    let parent = scene.open_shards().remove(0);
    services
        .rt
        .block_on(
            services
                .kinesis
                .split_shard()
                .stream_name(&scene.stream)
                .shard_to_split(parent)
                .new_starting_hash_key("170141183460469231731687303715884105728")
                .send(),
        )
        .expect("SplitShard");
    scene.wait_active("the split");
    let after = records("after", 200);
    scene.put(&after);
    wait_for("the children's records", || {
        data_of(&after).is_subset(&clean(&worker.seen()))
    });
    let seen = worker.stop();
    assert_per_key_order(&seen, &["before", "after"]);
    let leases = scene.leases();
    assert_eq!(leases.len(), 3, "the parent and two children: {leases:?}");
    assert!(
        leases
            .iter()
            .any(|l| l.checkpoint == Checkpoint::ShardEnd && l.parents.is_empty()),
        "the parent is checkpointed at its end: {leases:?}"
    );
}

/// Every record of `seen` in put order per key, and put before `later`
/// tags; each tag's records in their order.
fn assert_per_key_order(seen: &[Seen], tags: &[&str]) {
    let mut order: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    for s in seen.iter().filter(|s| s.flaw.is_none()) {
        let v: serde_json::Value = serde_json::from_str(&s.data).expect("json");
        let key = v["key"].as_str().expect("key").to_owned();
        let tag = v["tag"].as_str().expect("tag");
        let phase = tags.iter().position(|t| *t == tag).expect("a known tag");
        let n = usize::try_from(v["n"].as_u64().expect("n")).expect("n");
        order.entry(key).or_default().push((phase, n));
    }
    for (key, got) in &order {
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let mut first_seen = got.clone();
        first_seen.dedup();
        assert_eq!(&first_seen, &sorted, "{key}: records in put order");
    }
}

#[test]
fn a_merge_and_an_update_shard_count_mid_stream_lose_nothing_and_keep_each_keys_order() {
    let Some(services) = Services::up() else {
        return;
    };
    let scene = services.scene(2);
    let phase0 = records("p0", 150);
    scene.put(&phase0);
    let worker = scene.config("resharder", false);
    let open = scene.open_shards();
    assert_eq!(open.len(), 2);
    services
        .rt
        .block_on(
            services
                .kinesis
                .merge_shards()
                .stream_name(&scene.stream)
                .shard_to_merge(&open[0])
                .adjacent_shard_to_merge(&open[1])
                .send(),
        )
        .expect("MergeShards");
    scene.wait_active("the merge");
    let phase1 = records("p1", 150);
    scene.put(&phase1);
    services
        .rt
        .block_on(
            services
                .kinesis
                .update_shard_count()
                .stream_name(&scene.stream)
                .target_shard_count(2)
                .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
                .send(),
        )
        .expect("UpdateShardCount");
    scene.wait_active("the update");
    let phase2 = records("p2", 150);
    scene.put(&phase2);
    let mut all = data_of(&phase0);
    all.extend(data_of(&phase1));
    all.extend(data_of(&phase2));
    wait_for("every phase's records", || clean(&worker.seen()) == all);
    let seen = worker.stop();
    assert_eq!(clean(&seen), all, "nothing lost");
    assert_per_key_order(&seen, &["p0", "p1", "p2"]);
    let leases = scene.leases();
    assert!(
        leases.len() >= 5,
        "two parents, the merged shard, its children: {leases:?}"
    );
}
