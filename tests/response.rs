//! The automatic response in the pipeline, against moto's WAFv2 and
//! DynamoDB: fixture traffic blocks exactly the addresses the lake says
//! attacked (none from the allow-list), a dry run decides the same without
//! touching WAF, two instances on one set keep each other's blocks, expired
//! blocks leave the set, and a restart keeps the state.
//!
//! Blocks here are made by single critical events (sustained blocks are
//! switched off with a huge `sustained_events`), so the lake itself is the
//! oracle: the addresses of critical events. The sustained rule is covered
//! by the decider's unit tests.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_wafv2::types::IpAddressVersion;
use common::{Seclake, free_port, waf_lines};
use datafusion::arrow::array::{Array as _, AsArray as _};
use seclake_fixtures::services::moto_with_credentials;
use seclake_sink::response::{BlockTable, StoredBlock};

#[path = "../sink/tests/support/block_table.rs"]
mod block_table;
#[path = "../sink/tests/support/waf_ip_set.rs"]
mod waf_ip_set;
use waf_ip_set::TestIpSet;

/// Fixture records per run: enough for dozens of critical attackers.
const RECORDS: u64 = 20_000;
const SEED: u64 = 1414;

/// A moto IP set and block table for one test, deleted when it passes.
struct Scene {
    rt: tokio::runtime::Runtime,
    moto: String,
    set: Option<TestIpSet>,
    dynamo: aws_sdk_dynamodb::Client,
    table: String,
}

impl Scene {
    fn new(moto: &str) -> Scene {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let set = rt.block_on(TestIpSet::create(moto, IpAddressVersion::Ipv4));
        let dynamo = block_table::client(moto);
        let table = rt.block_on(block_table::create(&dynamo, "net"));
        Scene {
            rt,
            moto: moto.to_owned(),
            set: Some(set),
            dynamo,
            table,
        }
    }

    fn set(&self) -> &TestIpSet {
        self.set.as_ref().expect("the set")
    }

    /// The set's addresses, as host addresses (`/32` dropped).
    fn addresses(&self) -> BTreeSet<String> {
        self.rt
            .block_on(self.set().addresses())
            .into_iter()
            .map(|a| a.trim_end_matches("/32").to_owned())
            .collect()
    }

    fn blocks(&self) -> Vec<StoredBlock> {
        let table = BlockTable::new(self.dynamo.clone(), &self.table);
        self.rt.block_on(table.all()).expect("the block table")
    }

    fn put(&self, block: &StoredBlock) {
        let table = BlockTable::new(self.dynamo.clone(), &self.table);
        self.rt.block_on(table.put(block)).expect("put");
    }

    /// A pipeline config over `input`, writing its lake under `dir`.
    fn config(&self, dir: &Path, input: &Path, extra: &str) -> PathBuf {
        let d = dir.display();
        let text = format!(
            "[[source]]\ntype = \"file\"\nformat = \"waf\"\npath = \"{}\"\n\
             [lake]\nurl = \"file://{d}/lake\"\n[dlq]\nurl = \"file://{d}/dlq\"\n\
             [response]\nip_set_name = \"{}\"\nip_set_id = \"{}\"\nscope = \"REGIONAL\"\n\
             region = \"ap-northeast-2\"\nendpoint = \"{m}\"\n\
             state_table = \"{}\"\nstate_endpoint = \"{m}\"\n\
             sustained_events = 100000\nmax_blocks_per_minute = 10000\n\
             update_interval = \"100ms\"\n{extra}\n{}",
            input.display(),
            self.set().name,
            self.set().id,
            self.table,
            Seclake::metrics_section(free_port()),
            m = self.moto,
        );
        std::fs::create_dir_all(dir).expect("dir");
        let path = dir.join("seclake.toml");
        std::fs::write(&path, text).expect("config written");
        path
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Some(set) = self.set.take() {
            self.rt.block_on(set.delete());
        }
        self.rt
            .block_on(block_table::delete(&self.dynamo, &self.table));
    }
}

/// Runs the pipeline on `config` to its end.
fn run(config: &Path) -> serde_json::Value {
    let port = free_port();
    Seclake::start(config, port, &[]).wait_success(Duration::from_secs(300))
}

/// Runs `sql` over the lake under `dir` (tables `waf` and `response`, one
/// per `source=` partition) and returns the first column as text.
fn lake_column(dir: &Path, sql: &str) -> Vec<String> {
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let ctx = SessionContext::new();
        for source in ["waf", "response"] {
            let path = dir.join(format!("lake/source={source}"));
            if path.exists() {
                ctx.register_parquet(
                    source,
                    &format!("{}/", path.display()),
                    ParquetReadOptions::default(),
                )
                .await
                .expect("registered");
            }
        }
        let batches = ctx
            .sql(sql)
            .await
            .expect("planned")
            .collect()
            .await
            .expect("ran");
        let mut out = Vec::new();
        for batch in &batches {
            let column = datafusion::arrow::compute::cast(
                batch.column(0),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .expect("text");
            let column = column.as_string::<i32>();
            out.extend((0..column.len()).map(|i| column.value(i).to_owned()));
        }
        out
    })
}

/// The IPv4 addresses of critical events in the lake under `dir`.
fn critical_v4(dir: &Path) -> BTreeSet<String> {
    lake_column(
        dir,
        "SELECT DISTINCT client_ip FROM waf WHERE threat_level = 'critical' AND client_ip NOT LIKE '%:%'",
    )
    .into_iter()
    .collect()
}

/// The addresses the audit trail under `dir` gives `decision` for.
fn audited(dir: &Path, decision: &str) -> BTreeSet<String> {
    if !dir.join("lake/source=response").exists() {
        return BTreeSet::new();
    }
    lake_column(
        dir,
        &format!("SELECT DISTINCT client_ip FROM response WHERE action = '{decision}'"),
    )
    .into_iter()
    .collect()
}

fn write_input(path: &Path, lines: &[Vec<u8>]) {
    let mut text = Vec::new();
    for line in lines {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    std::fs::write(path, text).expect("input written");
}

/// Moto, or the test ends here (failing when CI is set).
fn moto() -> Option<String> {
    moto_with_credentials()
}

#[test]
fn fixture_attackers_are_blocked_exactly_and_a_dry_run_decides_the_same_without_touching_waf() {
    let Some(moto) = moto() else { return };
    let scene = Scene::new(&moto);
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("waf.ndjson");
    write_input(&input, &waf_lines(SEED, RECORDS));

    // A first run without a response tells which addresses attacked, so two
    // of them can go on the allow-list: one as itself, one by its /24.
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).expect("dir");
    let plain_config = plain.join("seclake.toml");
    std::fs::write(
        &plain_config,
        format!(
            "[[source]]\ntype = \"file\"\nformat = \"waf\"\npath = \"{}\"\n\
             [lake]\nurl = \"file://{d}/lake\"\n[dlq]\nurl = \"file://{d}/dlq\"\n{}",
            input.display(),
            Seclake::metrics_section(free_port()),
            d = plain.display()
        ),
    )
    .expect("config");
    run(&plain_config);
    let attackers = critical_v4(&plain);
    assert!(
        attackers.len() >= 10,
        "the fixture has critical IPv4 attackers: {attackers:?}"
    );
    let mut picked = attackers.iter();
    let allowed_host = picked.next().expect("one").clone();
    let allowed_net = {
        let second = picked.next().expect("two");
        let octets: Vec<&str> = second.split('.').collect();
        format!("{}.{}.{}.0/24", octets[0], octets[1], octets[2])
    };
    let allow = format!("allow = [\"10.0.0.0/8\", \"{allowed_host}/32\", \"{allowed_net}\"]");
    let is_allowed = |ip: &str| {
        let net: seclake_sink::response::IpNet = allowed_net.parse().expect("net");
        ip == allowed_host || net.contains(&ip.parse::<std::net::IpAddr>().expect("ip"))
    };
    let expected: BTreeSet<String> = attackers
        .iter()
        .filter(|ip| !is_allowed(ip))
        .cloned()
        .collect();
    let kept_out: BTreeSet<String> = attackers
        .iter()
        .filter(|ip| is_allowed(ip))
        .cloned()
        .collect();

    let dry = tmp.path().join("dry");
    run(&scene.config(&dry, &input, &format!("{allow}\ndry_run = true")));
    assert!(scene.addresses().is_empty(), "a dry run leaves WAF alone");
    assert!(scene.blocks().is_empty(), "and the block table");
    let would = audited(&dry, "dry_run");

    let real = tmp.path().join("real");
    run(&scene.config(&real, &input, &allow));
    let in_set = scene.addresses();
    assert_eq!(
        in_set, expected,
        "exactly the critical attackers, none allowed"
    );
    assert_eq!(audited(&real, "blocked"), expected, "each block is audited");
    assert_eq!(
        audited(&real, "allow_listed"),
        kept_out,
        "each allow-listed attacker is audited"
    );
    assert_eq!(audited(&dry, "allow_listed"), kept_out);
    let would_v4: BTreeSet<String> = would
        .iter()
        .filter(|ip| !ip.contains(':'))
        .cloned()
        .collect();
    assert_eq!(would_v4, expected, "the dry run decided the same blocks");
    let refused = audited(&real, "refused");
    assert_eq!(
        would
            .difference(&would_v4)
            .cloned()
            .collect::<BTreeSet<_>>(),
        refused,
        "IPv6 attackers are refused by an IPv4 set and audited so"
    );
    let stored: BTreeSet<String> = scene
        .blocks()
        .iter()
        .filter_map(|b| b.host().map(|ip| ip.to_string()))
        .collect();
    assert_eq!(stored, expected, "every block is in the block table");
    assert!(
        scene
            .blocks()
            .iter()
            .all(|b| b.level.as_str() == "critical" && !b.reasons.is_empty()),
        "with its level and reasons"
    );
}

#[test]
fn two_instances_on_one_ip_set_keep_each_others_blocks() {
    let Some(moto) = moto() else { return };
    let scene = Scene::new(&moto);
    let tmp = tempfile::tempdir().expect("tempdir");
    let lines = waf_lines(SEED + 1, RECORDS);
    let (first, second) = lines.split_at(lines.len() / 2);
    let inputs = [tmp.path().join("a.ndjson"), tmp.path().join("b.ndjson")];
    write_input(&inputs[0], first);
    write_input(&inputs[1], second);
    let dirs = [tmp.path().join("a"), tmp.path().join("b")];
    let configs: Vec<PathBuf> = dirs
        .iter()
        .zip(&inputs)
        .map(|(dir, input)| scene.config(dir, input, ""))
        .collect();
    let runs: Vec<Seclake> = configs
        .iter()
        .map(|c| Seclake::start(c, free_port(), &[]))
        .collect();
    for run in runs {
        run.wait_success(Duration::from_secs(300));
    }
    let expected: BTreeSet<String> = dirs.iter().flat_map(|d| critical_v4(d)).collect();
    assert!(expected.len() >= 10, "{expected:?}");
    let blocked: BTreeSet<String> = dirs.iter().flat_map(|d| audited(d, "blocked")).collect();
    assert_eq!(blocked, expected, "each instance blocked its attackers");
    assert_eq!(
        scene.addresses(),
        expected,
        "and neither lost the other's entries"
    );
}

#[test]
fn expired_blocks_leave_the_set_and_a_restart_keeps_the_rest() {
    let Some(moto) = moto() else { return };
    let scene = Scene::new(&moto);
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("waf.ndjson");
    write_input(&input, &waf_lines(SEED + 2, RECORDS));
    let first = tmp.path().join("first");
    run(&scene.config(&first, &input, ""));
    let blocked = scene.addresses();
    assert!(blocked.len() >= 10, "{blocked:?}");

    // Two blocks end while seclake is down.
    let mut stored = scene.blocks();
    stored.sort_by_key(|b| b.net);
    let now = chrono::Utc::now().timestamp_millis();
    let ending: Vec<StoredBlock> = stored
        .iter()
        .take(2)
        .map(|b| StoredBlock {
            until_ms: now - 1000,
            ..b.clone()
        })
        .collect();
    for block in &ending {
        scene.put(block);
    }
    let ended: BTreeSet<String> = ending
        .iter()
        .filter_map(|b| b.host().map(|ip| ip.to_string()))
        .collect();

    // Restarted on no new traffic: the ended blocks go, the rest stay.
    let empty = tmp.path().join("empty.ndjson");
    std::fs::write(&empty, "").expect("input");
    let idle = tmp.path().join("idle");
    run(&scene.config(&idle, &empty, ""));
    assert_eq!(
        scene.addresses(),
        blocked.difference(&ended).cloned().collect(),
        "expired blocks left the set, the others stayed"
    );
    assert_eq!(audited(&idle, "expired"), ended, "each expiry is audited");
    assert_eq!(
        scene.blocks().len(),
        stored.len() - ended.len(),
        "and left the block table"
    );

    // The same traffic again: blocks still running are not made again.
    let again = tmp.path().join("again");
    run(&scene.config(&again, &input, ""));
    assert_eq!(
        audited(&again, "blocked"),
        ended,
        "only the expired addresses are blocked anew"
    );
    assert_eq!(scene.addresses(), blocked);
    for block in scene.blocks() {
        if ending.iter().any(|e| e.net == block.net) {
            assert!(block.until_ms > now, "{block:?} was blocked anew");
        } else {
            let before = stored.iter().find(|s| s.net == block.net);
            assert_eq!(before, Some(&block), "restored, not remade");
        }
    }
}
