//! The WAF IP set client against moto's WAFv2, whose lock tokens are real
//! (a stale token is refused) but which checks no limit or address: those
//! are the client's own, and tested here as such. Each test makes its own IP
//! set and deletes it.

use std::collections::BTreeSet;

use aws_sdk_wafv2::types::IpAddressVersion;
use seclake_fixtures::services::moto_with_credentials;
use seclake_sink::response::{IpNet, IpSet, IpSetError, IpVersion, Scope, parse_net};

#[path = "support/waf_ip_set.rs"]
mod waf_ip_set;
use waf_ip_set::TestIpSet;

struct TestSet(TestIpSet);

impl TestSet {
    async fn create(version: IpAddressVersion) -> Option<TestSet> {
        let endpoint = moto_with_credentials()?;
        Some(TestSet(TestIpSet::create(&endpoint, version).await))
    }

    /// A client of its own, as another pipeline instance would have.
    fn writer(&self) -> IpSet {
        IpSet::new(
            self.0.client.clone(),
            &self.0.name,
            &self.0.id,
            Scope::Regional,
        )
    }

    async fn delete(self) {
        self.0.delete().await;
    }
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| parse_net(s).expect("a CIDR")).collect()
}

#[tokio::test]
async fn adds_and_removes_host_cidrs_and_keeps_the_description() {
    let Some(set) = TestSet::create(IpAddressVersion::Ipv4).await else {
        return;
    };
    let waf = set.writer();
    let change = waf
        .change(
            &nets(&["198.51.100.7", "203.0.113.9", "198.51.100.7/32"]),
            &[],
        )
        .await
        .expect("adds");
    assert_eq!(change.added, nets(&["198.51.100.7", "203.0.113.9"]));
    assert_eq!(change.conflicts, 0);
    let again = waf
        .change(&nets(&["198.51.100.7"]), &[])
        .await
        .expect("no-op");
    assert!(again.added.is_empty() && again.removed.is_empty());

    let removed = waf
        .change(&[], &nets(&["203.0.113.9", "192.0.2.1"]))
        .await
        .expect("removes");
    assert_eq!(removed.removed, nets(&["203.0.113.9"]));
    let now = waf.read().await.expect("reads");
    assert_eq!(now.addresses, nets(&["198.51.100.7"]).into_iter().collect());
    assert_eq!(now.version, IpVersion::V4);
    assert_eq!(now.description.as_deref(), Some("seclake test"));
    assert_eq!(
        set.0.addresses().await,
        ["198.51.100.7/32"],
        "as WAF holds them"
    );
    set.delete().await;
}

#[tokio::test]
async fn a_write_with_a_stale_token_is_redone_and_loses_no_entry() {
    let Some(set) = TestSet::create(IpAddressVersion::Ipv4).await else {
        return;
    };
    let (a, b) = (set.writer(), set.writer());
    let stale = a.read().await.expect("reads");
    b.change(&nets(&["198.51.100.1"]), &[])
        .await
        .expect("b adds");
    let mut mine: BTreeSet<IpNet> = stale.addresses.clone();
    mine.extend(nets(&["198.51.100.2"]));
    let lost = a.write(&stale, &mine).await;
    assert!(
        matches!(lost, Err(IpSetError::Conflict { .. })),
        "a stale lock token must be refused: {lost:?}"
    );
    a.change(&nets(&["198.51.100.2"]), &[])
        .await
        .expect("a adds");
    let now = a.read().await.expect("reads");
    assert_eq!(
        now.addresses,
        nets(&["198.51.100.1", "198.51.100.2"])
            .into_iter()
            .collect()
    );
    set.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_adding_at_once_keep_every_entry() {
    let Some(set) = TestSet::create(IpAddressVersion::Ipv4).await else {
        return;
    };
    let writer = |prefix: u8| {
        let waf = set.writer();
        tokio::spawn(async move {
            let mut conflicts = 0;
            for host in 1..=20u8 {
                let net = parse_net(&format!("10.{prefix}.0.{host}")).expect("a CIDR");
                conflicts += waf.change(&[net], &[]).await.expect("adds").conflicts;
            }
            conflicts
        })
    };
    let (one, two) = (writer(1), writer(2));
    let conflicts = one.await.expect("writer 1") + two.await.expect("writer 2");
    let now = set.writer().read().await.expect("reads");
    assert_eq!(now.addresses.len(), 40, "{conflicts} conflicts redone");
    for prefix in [1, 2] {
        for host in 1..=20 {
            let net = parse_net(&format!("10.{prefix}.0.{host}")).expect("a CIDR");
            assert!(now.addresses.contains(&net), "{net} lost");
        }
    }
    set.delete().await;
}

#[tokio::test]
async fn the_limit_and_the_address_family_are_enforced_before_writing() {
    let Some(set) = TestSet::create(IpAddressVersion::Ipv4).await else {
        return;
    };
    let waf = set.writer().with_limit(3);
    waf.change(&nets(&["192.0.2.1", "192.0.2.2", "192.0.2.3"]), &[])
        .await
        .expect("up to the limit");
    let full = waf.change(&nets(&["192.0.2.4"]), &[]).await;
    assert!(
        matches!(
            full,
            Err(IpSetError::Full {
                would: 4,
                limit: 3,
                ..
            })
        ),
        "{full:?}"
    );
    let freed = waf
        .change(&[], &nets(&["192.0.2.1"]))
        .await
        .expect("removes");
    assert_eq!(freed.removed.len(), 1);
    let wrong = waf.change(&nets(&["2001:db8::1"]), &[]).await;
    assert!(
        matches!(
            wrong,
            Err(IpSetError::Version {
                version: IpVersion::V4,
                ..
            })
        ),
        "{wrong:?}"
    );
    let now = waf.read().await.expect("reads");
    assert_eq!(now.addresses.len(), 2, "nothing written by refused changes");
    set.delete().await;
}

#[tokio::test]
async fn an_ipv6_set_takes_128_bit_host_cidrs() {
    let Some(set) = TestSet::create(IpAddressVersion::Ipv6).await else {
        return;
    };
    let waf = set.writer();
    let change = waf
        .change(&nets(&["2001:db8::7"]), &[])
        .await
        .expect("adds");
    assert_eq!(change.added[0].to_string(), "2001:db8::7/128");
    let now = waf.read().await.expect("reads");
    assert_eq!(now.version, IpVersion::V6);
    assert_eq!(now.addresses.len(), 1);
    set.delete().await;
}
