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
#[path = "../sink/tests/support/slack_hook.rs"]
mod slack_hook;
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

    /// A pipeline config over the WAF records in `input`, writing its lake
    /// under `dir`.
    fn config(&self, dir: &Path, input: &Path, extra: &str) -> PathBuf {
        self.config_for("waf", dir, input, extra)
    }

    /// [`Scene::config`] for records of `format`.
    fn config_for(&self, format: &str, dir: &Path, input: &Path, extra: &str) -> PathBuf {
        self.config_via(&self.moto, format, dir, input, extra)
    }

    /// [`Scene::config_for`] reaching WAF at `waf` (a proxy).
    fn config_via(
        &self,
        waf: &str,
        format: &str,
        dir: &Path,
        input: &Path,
        extra: &str,
    ) -> PathBuf {
        let d = dir.display();
        let text = format!(
            "[[source]]\ntype = \"file\"\nformat = \"{format}\"\npath = \"{}\"\n\
             [lake]\nurl = \"file://{d}/lake\"\n[dlq]\nurl = \"file://{d}/dlq\"\n\
             [response]\nip_set_name = \"{}\"\nip_set_id = \"{}\"\nscope = \"REGIONAL\"\n\
             region = \"ap-northeast-2\"\nendpoint = \"{waf}\"\n\
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
/// per `source=` partition, and `guardduty`) and returns the first column as
/// text.
fn lake_column(dir: &Path, sql: &str) -> Vec<String> {
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let ctx = SessionContext::new();
        for source in ["waf", "guardduty", "response"] {
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
    audited_column(dir, "client_ip", decision)
}

/// `column` of the audit events under `dir` whose decision is `decision`.
fn audited_column(dir: &Path, column: &str, decision: &str) -> BTreeSet<String> {
    if !dir.join("lake/source=response").exists() {
        return BTreeSet::new();
    }
    lake_column(
        dir,
        &format!("SELECT DISTINCT {column} FROM response WHERE action = '{decision}'"),
    )
    .into_iter()
    .collect()
}

/// The `blocks` of the daily reports (UTC) of the days the audit events
/// under `dir` fall on.
fn report_blocks(dir: &Path) -> Vec<serde_json::Value> {
    let days = lake_column(dir, "SELECT DISTINCT CAST(ts AS DATE) FROM response");
    let out = dir.join("reports");
    let mut blocks = Vec::new();
    for date in days {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_report"))
            .args([
                "run", "--date", &date, "--quiet", "--format", "json", "--lake",
            ])
            .arg(dir.join("lake"))
            .arg("--out")
            .arg(&out)
            .output()
            .expect("report runs");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{stderr}");
        let path = out.join(format!("security-report-{date}.json"));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("json")).expect("parses");
        blocks.extend(json["blocks"].as_array().cloned().unwrap_or_default());
    }
    blocks
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

    let hook = slack_hook::Hook::start(&[]);
    let alerting = format!(
        "[alerts.slack]\nwebhook_url = \"{}\"\n[[alert]]\nname = \"blocks\"\nformat = \"response\"\n\
         action = [\"blocked\"]\noutput = \"slack\"",
        hook.url
    );
    let real = tmp.path().join("real");
    run(&scene.config(&real, &input, &format!("{allow}\n{alerting}")));
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
    let blocks = report_blocks(&real);
    assert_eq!(
        blocks
            .iter()
            .filter(|b| b["decision"] == "blocked")
            .filter_map(|b| b["client_ip"].as_str().map(str::to_owned))
            .collect::<BTreeSet<_>>(),
        expected,
        "the daily report lists the day's blocks"
    );
    let messages = hook.delivered();
    assert_eq!(
        messages.iter().map(slack_hook::alerts).sum::<u64>(),
        expected.len() as u64,
        "one Slack alert per block: {messages:?}"
    );
    let shown: Vec<String> = messages.iter().flat_map(slack_hook::sections).collect();
    assert!(!shown.is_empty());
    for section in &shown {
        assert!(
            expected.iter().any(|ip| section.contains(ip.as_str())),
            "an alert names a blocked address: {section}"
        );
        assert!(
            section.contains("Expires") && section.contains("critical"),
            "{section}"
        );
    }
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

/// An IAM client for moto at `endpoint`, with its test credentials.
fn iam_client(endpoint: &str) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::Config::builder()
            .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
            .region(aws_sdk_iam::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_iam::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .endpoint_url(endpoint)
            .build(),
    )
}

/// An IAM user with one access key on moto; its key id.
async fn user_with_key(iam: &aws_sdk_iam::Client, user: &str) -> String {
    iam.create_user()
        .user_name(user)
        .send()
        .await
        .expect("CreateUser on moto");
    let created = iam
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .expect("CreateAccessKey");
    created
        .access_key()
        .map(|k| k.access_key_id().to_owned())
        .expect("a key")
}

async fn key_status(iam: &aws_sdk_iam::Client, user: &str) -> String {
    let listed = iam
        .list_access_keys()
        .user_name(user)
        .send()
        .await
        .expect("ListAccessKeys");
    listed.access_key_metadata()[0]
        .status()
        .map(|s| s.as_str().to_owned())
        .expect("a status")
}

#[test]
fn leaked_access_keys_are_deactivated_unless_protected_and_a_dry_run_only_says_so() {
    let Some(moto) = moto() else { return };
    let scene = Scene::new(&moto);
    let iam = iam_client(&moto);
    let leaky = seclake_fixtures::services::unique_name("seclake-test-leaky");
    let admin = seclake_fixtures::services::unique_name("seclake-test-admin");
    let (leaky_key, admin_key) = scene.rt.block_on(async {
        (
            user_with_key(&iam, &leaky).await,
            user_with_key(&iam, &admin).await,
        )
    });
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("app.ndjson");
    let line = |error: &str, msg: &str| {
        serde_json::json!({
            "ts": "2026-11-24T11:14:26.083546363Z", "level": "error", "service": "commerce-api",
            "method": "POST", "route": "/orders/{id}/invoice", "path": "/orders/ord_1/invoice",
            "status": 500, "latency_ms": 227.2, "bytes": 108, "client_ip": "29.21.108.169",
            "user_agent": "Mozilla/5.0", "user_id": "u_101540", "request_id": "r-1",
            "error": error, "msg": msg,
        })
        .to_string()
        .into_bytes()
    };
    write_input(
        &input,
        &[
            line(
                &format!(
                    "api error InvalidAccessKeyId: The AWS Access Key Id {leaky_key} you provided does not exist"
                ),
                "invoice upload failed",
            ),
            line(
                "upload failed",
                &format!("retrying with access_key_id={admin_key}"),
            ),
            line(&format!("again {leaky_key}"), "invoice upload failed"),
        ],
    );
    let keys = |mode: &str| {
        format!(
            "leaked_keys = \"{mode}\"\nprotected_users = [\"{admin}\"]\niam_endpoint = \"{moto}\""
        )
    };
    let status = || {
        scene.rt.block_on(async {
            (
                key_status(&iam, &leaky).await,
                key_status(&iam, &admin).await,
            )
        })
    };

    let dry = tmp.path().join("dry");
    run(&scene.config_for("app", &dry, &input, &keys("dry_run")));
    assert_eq!(
        status(),
        ("Active".into(), "Active".into()),
        "a dry run changes nothing"
    );
    assert_eq!(
        audited_column(&dry, "user_name", "key_dry_run"),
        BTreeSet::from([leaky.clone()])
    );
    assert_eq!(
        audited_column(&dry, "user_name", "key_protected"),
        BTreeSet::from([admin.clone()])
    );

    let real = tmp.path().join("real");
    run(&scene.config_for("app", &real, &input, &keys("disable")));
    assert_eq!(
        status(),
        ("Inactive".into(), "Active".into()),
        "the leaked key is deactivated, the protected user's is not"
    );
    assert_eq!(
        audited_column(&real, "user_name", "key_disabled"),
        BTreeSet::from([leaky.clone()])
    );
    assert_eq!(
        audited_column(&real, "user_name", "key_protected"),
        BTreeSet::from([admin.clone()])
    );
    let messages = audited_column(&real, "message", "key_disabled");
    assert_eq!(
        messages.len(),
        1,
        "one decision per key however often it leaked: {messages:?}"
    );
    assert!(
        messages.iter().all(|m| m.contains(&leaky_key)),
        "{messages:?}"
    );
    // The users stay: moto keeps a deleted IAM user's model, and its
    // `/moto-api/data.json` (which the SES tests read) then fails on it.
}

#[test]
fn a_waf_outage_never_stops_the_lake_and_its_blocks_land_at_the_next_start() {
    let Some(moto) = moto() else { return };
    let scene = Scene::new(&moto);
    let proxy = common::opensearch::Proxy::start(&moto);
    proxy.set(common::opensearch::Mode::Down);
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("waf.ndjson");
    write_input(&input, &waf_lines(SEED + 3, RECORDS));

    let down = tmp.path().join("down");
    let summary = run(&scene.config_via(&proxy.url, "waf", &down, &input, ""));
    assert_eq!(
        summary["lake_rows"].as_u64(),
        Some(
            lake_column(&down, "SELECT count(*) FROM waf")[0]
                .parse()
                .expect("a count")
        ),
    );
    let expected = critical_v4(&down);
    assert!(expected.len() >= 10, "{expected:?}");
    assert!(
        summary["lake_rows"]
            .as_u64()
            .is_some_and(|rows| rows + 100 >= RECORDS),
        "every record reached the lake while WAF was down: {summary}"
    );
    assert!(scene.addresses().is_empty(), "WAF took nothing");
    let stored: BTreeSet<String> = scene
        .blocks()
        .iter()
        .filter_map(|b| b.host().map(|ip| ip.to_string()))
        .collect();
    assert_eq!(
        stored, expected,
        "the decisions were kept in the block table"
    );

    proxy.set(common::opensearch::Mode::Pass);
    let empty = tmp.path().join("empty.ndjson");
    std::fs::write(&empty, "").expect("input");
    run(&scene.config_via(&proxy.url, "waf", &tmp.path().join("up"), &empty, ""));
    assert_eq!(
        scene.addresses(),
        expected,
        "the next start put them in the set"
    );
}

#[test]
fn guardduty_findings_of_high_severity_block_their_remote_address() {
    let Some(moto) = moto() else { return };
    let scene = Scene::new(&moto);
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("guardduty.ndjson");
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 29).expect("date");
    std::fs::write(&input, seclake_fixtures::guardduty_lines(SEED, day, 2000)).expect("input");
    let dir = tmp.path().join("run");
    run(&scene.config_for("guardduty", &dir, &input, ""));
    let expected: BTreeSet<String> = lake_column(
        &dir,
        "SELECT DISTINCT client_ip FROM guardduty \
         WHERE severity IN ('high', 'critical') AND client_ip NOT LIKE '%:%'",
    )
    .into_iter()
    .collect();
    assert!(expected.len() >= 5, "{expected:?}");
    let lower: BTreeSet<String> = lake_column(
        &dir,
        "SELECT DISTINCT client_ip FROM guardduty WHERE severity IN ('low', 'medium') \
         AND client_ip NOT LIKE '%:%'",
    )
    .into_iter()
    .filter(|ip| !expected.contains(ip))
    .collect();
    assert!(
        !lower.is_empty(),
        "the fixture has lower findings with addresses too"
    );
    assert_eq!(
        scene.addresses(),
        expected,
        "high and critical findings block, lower ones do not"
    );
    let triggers = lake_column(
        &dir,
        "SELECT DISTINCT rule FROM response WHERE action = 'blocked'",
    );
    assert!(
        triggers.iter().all(|t| t.starts_with("GuardDuty ")),
        "blocked as findings: {triggers:?}"
    );
}

#[test]
fn a_guardduty_finding_naming_a_key_deactivates_it_and_blocks_its_caller() {
    let Some(moto) = moto() else { return };
    let scene = Scene::new(&moto);
    let iam = iam_client(&moto);
    let user = seclake_fixtures::services::unique_name("seclake-test-exfiltrated");
    let key = scene.rt.block_on(user_with_key(&iam, &user));
    let finding = serde_json::json!({
        "version": "0", "id": "e1", "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty", "account": "123456789012",
        "time": "2026-11-29T10:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {
            "schemaVersion": "2.0", "accountId": "123456789012", "region": "us-east-1",
            "id": "f1", "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
            "severity": 8.0, "title": "Credentials for an EC2 instance were used outside AWS",
            "resource": {"resourceType": "AccessKey", "accessKeyDetails": {
                "accessKeyId": key, "userName": user, "userType": "IAMUser"}},
            "service": {"serviceName": "guardduty", "action": {
                "actionType": "AWS_API_CALL",
                "awsApiCallAction": {"api": "ListBuckets", "serviceName": "s3.amazonaws.com",
                    "remoteIpDetails": {"ipAddressV4": "198.51.100.23"}}},
                "eventFirstSeen": "2026-11-29T09:59:00Z", "eventLastSeen": "2026-11-29T10:00:00Z"},
            "createdAt": "2026-11-29T10:00:00Z", "updatedAt": "2026-11-29T10:00:00Z"
        }
    });
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("guardduty.ndjson");
    write_input(&input, &[finding.to_string().into_bytes()]);
    let dir = tmp.path().join("run");
    let keys = format!("leaked_keys = \"disable\"\niam_endpoint = \"{moto}\"");
    run(&scene.config_for("guardduty", &dir, &input, &keys));
    assert_eq!(scene.rt.block_on(key_status(&iam, &user)), "Inactive");
    assert_eq!(
        audited_column(&dir, "user_name", "key_disabled"),
        BTreeSet::from([user])
    );
    assert_eq!(
        scene.addresses(),
        BTreeSet::from(["198.51.100.23".to_owned()])
    );
}
