//! IP sets on moto's WAFv2 for the tests that change them: made per test,
//! deleted by [`TestIpSet::delete`]. Shared with the root crate's tests
//! through `#[path]`.

use aws_sdk_wafv2::types::{IpAddressVersion, Scope};
use seclake_fixtures::services::unique_name;

/// A WAFv2 client for moto at `endpoint`, with its test credentials.
pub fn client(endpoint: &str) -> aws_sdk_wafv2::Client {
    aws_sdk_wafv2::Client::from_conf(
        aws_sdk_wafv2::Config::builder()
            .behavior_version(aws_sdk_wafv2::config::BehaviorVersion::latest())
            .region(aws_sdk_wafv2::config::Region::new("ap-northeast-2"))
            .credentials_provider(aws_sdk_wafv2::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .endpoint_url(endpoint)
            .build(),
    )
}

/// A REGIONAL IP set made for one test.
pub struct TestIpSet {
    pub client: aws_sdk_wafv2::Client,
    pub name: String,
    pub id: String,
}

impl TestIpSet {
    /// An empty set of `version`, described as "seclake test".
    pub async fn create(endpoint: &str, version: IpAddressVersion) -> TestIpSet {
        let client = client(endpoint);
        let name = unique_name("seclake-test-blocked");
        let created = client
            .create_ip_set()
            .name(&name)
            .scope(Scope::Regional)
            .ip_address_version(version)
            .set_addresses(Some(Vec::new()))
            .description("seclake test")
            .send()
            .await
            .expect("CreateIPSet on moto");
        let id = created
            .summary()
            .and_then(|s| s.id())
            .expect("an id")
            .to_owned();
        TestIpSet { client, name, id }
    }

    /// `GetIPSet`.
    async fn get(&self) -> aws_sdk_wafv2::operation::get_ip_set::GetIpSetOutput {
        self.client
            .get_ip_set()
            .name(&self.name)
            .id(&self.id)
            .scope(Scope::Regional)
            .send()
            .await
            .expect("GetIPSet")
    }

    /// The set's addresses as WAF returns them, sorted.
    pub async fn addresses(&self) -> Vec<String> {
        let mut addresses = self
            .get()
            .await
            .ip_set()
            .map(|s| s.addresses().to_vec())
            .unwrap_or_default();
        addresses.sort();
        addresses
    }

    /// Deletes the set.
    pub async fn delete(self) {
        let token = self.get().await.lock_token.expect("a lock token");
        self.client
            .delete_ip_set()
            .name(&self.name)
            .id(&self.id)
            .scope(Scope::Regional)
            .lock_token(token)
            .send()
            .await
            .expect("DeleteIPSet");
    }
}
