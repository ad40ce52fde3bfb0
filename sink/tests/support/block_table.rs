//! Block tables on moto's DynamoDB for the tests: made per test with a
//! string hash key, deleted by the test. Shared with the root crate's tests
//! through `#[path]`.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use seclake_fixtures::services::unique_name;

/// A DynamoDB client for moto at `endpoint`, with its test credentials.
pub fn client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("ap-northeast-2"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .endpoint_url(endpoint)
            .build(),
    )
}

/// A new table keyed by the string `key`; its name.
pub async fn create(client: &aws_sdk_dynamodb::Client, key: &str) -> String {
    let name = unique_name("seclake-test-blocks");
    client
        .create_table()
        .table_name(&name)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable on moto");
    name
}

/// Deletes the table `name`.
pub async fn delete(client: &aws_sdk_dynamodb::Client, name: &str) {
    client
        .delete_table()
        .table_name(name)
        .send()
        .await
        .expect("DeleteTable");
}
