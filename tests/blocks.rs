//! `seclake blocks list|add|remove` against an IP set on moto's WAFv2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_sdk_wafv2::types::IpAddressVersion;
use seclake_fixtures::services::moto_with_credentials;

#[path = "../sink/tests/support/block_table.rs"]
mod block_table;
#[path = "../sink/tests/support/waf_ip_set.rs"]
mod waf_ip_set;
use waf_ip_set::TestIpSet;

/// A test IP set driven from this synchronous test, deleted when dropped.
struct Set {
    rt: tokio::runtime::Runtime,
    set: Option<TestIpSet>,
    name: String,
    id: String,
}

impl Set {
    fn create(endpoint: &str) -> Set {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let set = rt.block_on(TestIpSet::create(endpoint, IpAddressVersion::Ipv4));
        let (name, id) = (set.name.clone(), set.id.clone());
        Set {
            rt,
            set: Some(set),
            name,
            id,
        }
    }

    fn addresses(&self) -> Vec<String> {
        self.set
            .as_ref()
            .map_or_else(Vec::new, |set| self.rt.block_on(set.addresses()))
    }
}

impl Drop for Set {
    fn drop(&mut self) {
        // A failed test keeps its set rather than panic again while unwinding.
        if let Some(set) = self.set.take().filter(|_| !std::thread::panicking()) {
            self.rt.block_on(set.delete());
        }
    }
}

fn config(dir: &Path, endpoint: &str, set: &Set, extra: &str) -> PathBuf {
    let d = dir.display();
    let text = format!(
        "[[source]]\ntype = \"file\"\nformat = \"waf\"\npath = \"{d}/in.ndjson\"\n\
         [lake]\nurl = \"file://{d}/lake\"\n[dlq]\nurl = \"file://{d}/dlq\"\n\
         [response]\nip_set_name = \"{}\"\nip_set_id = \"{}\"\nscope = \"REGIONAL\"\n\
         region = \"ap-northeast-2\"\nendpoint = \"{endpoint}\"\n\
         allow = [\"10.0.0.0/8\", \"203.0.113.7/32\"]\n{extra}",
        set.name, set.id
    );
    std::fs::write(dir.join("in.ndjson"), "").expect("input written");
    let path = dir.join(format!("blocks-{}.toml", extra.len()));
    std::fs::write(&path, text).expect("config written");
    path
}

fn blocks(config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seclake"));
    cmd.arg("blocks")
        .args(&args[..1])
        .arg("--config")
        .arg(config);
    cmd.args(&args[1..]);
    cmd.output().expect("seclake runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn operators_add_list_and_remove_blocks_but_never_an_allowed_address() {
    let Some(endpoint) = moto_with_credentials() else {
        return;
    };
    let set = Set::create(&endpoint);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &endpoint, &set, "");

    let added = blocks(&cfg, &["add", "198.51.100.7", "192.0.2.0/24"]);
    assert!(added.status.success(), "{}", text(&added.stderr));
    assert_eq!(
        text(&added.stdout),
        "added 192.0.2.0/24\nadded 198.51.100.7/32\n"
    );
    let again = blocks(&cfg, &["add", "198.51.100.7"]);
    assert_eq!(text(&again.stdout), "already blocked: 198.51.100.7/32\n");

    let refused = blocks(&cfg, &["add", "198.51.100.8", "10.1.2.3"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("response.allow entry 10.0.0.0/8"),
        "{}",
        text(&refused.stderr)
    );
    let wide = blocks(&cfg, &["add", "203.0.113.0/24"]);
    assert!(!wide.status.success(), "a range holding an allowed address");
    assert_eq!(set.addresses(), ["192.0.2.0/24", "198.51.100.7/32"]);

    let dry = blocks(&cfg, &["add", "198.51.100.9", "--dry-run"]);
    assert_eq!(text(&dry.stdout), "dry run: would add 198.51.100.9/32\n");
    let dry_cfg = config(dir.path(), &endpoint, &set, "dry_run = true\n");
    let dry = blocks(&dry_cfg, &["remove", "198.51.100.7"]);
    assert_eq!(text(&dry.stdout), "dry run: would remove 198.51.100.7/32\n");
    assert_eq!(set.addresses(), ["192.0.2.0/24", "198.51.100.7/32"]);

    let list = blocks(&cfg, &["list"]);
    assert_eq!(text(&list.stdout), "192.0.2.0/24\n198.51.100.7/32\n");
    let removed = blocks(&cfg, &["remove", "198.51.100.7", "198.51.100.99"]);
    assert_eq!(
        text(&removed.stdout),
        "removed 198.51.100.7/32\nnot blocked: 198.51.100.99/32\n"
    );
    assert_eq!(set.addresses(), ["192.0.2.0/24"]);
}

#[test]
fn a_bad_response_key_is_named() {
    let Some(endpoint) = moto_with_credentials() else {
        return;
    };
    let set = Set::create(&endpoint);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &endpoint, &set, "");
    let text_cfg = std::fs::read_to_string(&cfg)
        .expect("config")
        .replace("\"10.0.0.0/8\"", "\"10.0.0.0/33\"");
    std::fs::write(&cfg, text_cfg).expect("config written");
    let out = blocks(&cfg, &["list"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("response.allow"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn with_a_state_table_blocks_are_recorded_listed_and_forgotten() {
    let Some(endpoint) = moto_with_credentials() else {
        return;
    };
    let set = Set::create(&endpoint);
    let dynamo = block_table::client(&endpoint);
    let table = set.rt.block_on(block_table::create(&dynamo, "net"));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        &endpoint,
        &set,
        &format!(
            "state_table = \"{table}\"\nstate_endpoint = \"{endpoint}\"\nblock_ttl = \"2h\"\n"
        ),
    );
    let items = || {
        set.rt
            .block_on(dynamo.scan().table_name(&table).send())
            .expect("Scan")
            .items
            .unwrap_or_default()
    };

    let added = blocks(&cfg, &["add", "198.51.100.7"]);
    assert!(added.status.success(), "{}", text(&added.stderr));
    let stored = items();
    assert_eq!(stored.len(), 1);
    let until: i64 = stored[0]["until_ms"]
        .as_n()
        .expect("until_ms")
        .parse()
        .expect("a number");
    let created: i64 = stored[0]["created_ms"]
        .as_n()
        .expect("created_ms")
        .parse()
        .expect("a number");
    assert_eq!(until - created, 2 * 3600 * 1000, "block_ttl");

    let list = text(&blocks(&cfg, &["list"]).stdout);
    assert!(
        list.starts_with("198.51.100.7/32\tuntil ") && list.contains("\toperator"),
        "{list}"
    );
    let removed = blocks(&cfg, &["remove", "198.51.100.7"]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert!(items().is_empty());
    set.rt.block_on(block_table::delete(&dynamo, &table));
}
