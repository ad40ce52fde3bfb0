//! Who is blocked, why and until when, in a DynamoDB table: blocks survive a
//! restart and are removed on time by whichever instance is running. The
//! table is the operator's (no `CreateTable` permission needed): one string
//! hash key, `net`. DynamoDB's own TTL must stay off for it, since an item
//! deleted behind seclake's back would leave its address blocked in WAF.

use std::collections::HashMap;
use std::net::IpAddr;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeyType, ScalarAttributeType};
use ipnet::IpNet;
use seclake_enrich::threat::ThreatLevel;

use super::{Block, Trigger, parse_net};

/// The table's hash key: the blocked CIDR.
pub const KEY: &str = "net";

/// Why the block table could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// DynamoDB refused or could not be reached.
    #[error("block table {table}: {operation}: {message}")]
    Api {
        /// The table.
        table: String,
        /// The call.
        operation: &'static str,
        /// What DynamoDB said.
        message: String,
    },
    /// The table is not shaped as seclake needs.
    #[error("block table {table} (response.state_table): {why}")]
    Unusable {
        /// The table.
        table: String,
        /// What is wrong.
        why: String,
    },
}

/// One block as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlock {
    /// The blocked CIDR.
    pub net: IpNet,
    /// Unblocked at (ms since the epoch).
    pub until_ms: i64,
    /// Blocked at (ms since the epoch).
    pub created_ms: i64,
    /// The deciding event's score.
    pub score: i32,
    /// Its level.
    pub level: ThreatLevel,
    /// What triggered the block, e.g. `level critical` or `5 events in 60s`.
    pub trigger: String,
    /// The deciding event's reasons.
    pub reasons: Vec<String>,
}

impl StoredBlock {
    /// The record of `block`, made at `now_ms`.
    pub fn of(block: &Block, now_ms: i64) -> StoredBlock {
        StoredBlock {
            net: block.net,
            until_ms: block.until_ms,
            created_ms: now_ms,
            score: block.score,
            level: block.level,
            trigger: match &block.trigger {
                Trigger::Level(level) => format!("level {level}"),
                Trigger::Finding(kind) => format!("GuardDuty {kind}"),
                Trigger::Sustained { events, window } => {
                    format!("{events} events in {}s", window.as_secs())
                }
            },
            reasons: block.reasons.clone(),
        }
    }

    /// The blocked address, when the CIDR is one host.
    pub fn host(&self) -> Option<IpAddr> {
        (self.net.prefix_len() == self.net.max_prefix_len()).then(|| self.net.addr())
    }

    fn item(&self) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            (KEY.to_owned(), AttributeValue::S(self.net.to_string())),
            (
                "until_ms".to_owned(),
                AttributeValue::N(self.until_ms.to_string()),
            ),
            (
                "created_ms".to_owned(),
                AttributeValue::N(self.created_ms.to_string()),
            ),
            (
                "score".to_owned(),
                AttributeValue::N(self.score.to_string()),
            ),
            (
                "level".to_owned(),
                AttributeValue::S(self.level.as_str().to_owned()),
            ),
            (
                "trigger".to_owned(),
                AttributeValue::S(self.trigger.clone()),
            ),
        ]);
        // A string list may not be empty in DynamoDB.
        if !self.reasons.is_empty() {
            item.insert(
                "reasons".to_owned(),
                AttributeValue::L(
                    self.reasons
                        .iter()
                        .cloned()
                        .map(AttributeValue::S)
                        .collect(),
                ),
            );
        }
        item
    }

    fn from_item(item: &HashMap<String, AttributeValue>) -> Result<StoredBlock, String> {
        let text = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .ok_or_else(|| format!("no string {name}"))
        };
        let number = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| format!("no integer {name}"))
        };
        let net = parse_net(text(KEY)?)?;
        let level = text("level")?;
        Ok(StoredBlock {
            net,
            until_ms: number("until_ms")?,
            created_ms: number("created_ms")?,
            score: i32::try_from(number("score")?).map_err(|e| e.to_string())?,
            level: ThreatLevel::from_name(level).ok_or_else(|| format!("level {level:?}"))?,
            trigger: text("trigger")?.clone(),
            reasons: item
                .get("reasons")
                .and_then(|v| v.as_l().ok())
                .map(|l| l.iter().filter_map(|r| r.as_s().ok().cloned()).collect())
                .unwrap_or_default(),
        })
    }
}

/// The block table.
#[derive(Debug, Clone)]
pub struct BlockTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl BlockTable {
    /// The table `[response] state_table` names, if it names one, through
    /// `shared` (see [`ResponseConfig::aws`](super::ResponseConfig::aws)).
    pub fn connect(
        cfg: &super::ResponseConfig,
        shared: &aws_config::SdkConfig,
    ) -> Option<BlockTable> {
        let table = cfg.state_table.as_deref()?;
        let mut dynamo = aws_sdk_dynamodb::config::Builder::from(shared);
        if let Some(endpoint) = &cfg.state_endpoint {
            dynamo = dynamo.endpoint_url(endpoint);
        }
        Some(BlockTable::new(
            aws_sdk_dynamodb::Client::from_conf(dynamo.build()),
            table,
        ))
    }

    /// The table `table` through `client`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str) -> BlockTable {
        BlockTable {
            client,
            table: table.to_owned(),
        }
    }

    /// Checks that the table exists with the single string hash key `net`.
    pub async fn check(&self) -> Result<(), StateError> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| self.api("DescribeTable", &e))?;
        let table = described.table();
        let keyed = table.is_some_and(|t| {
            matches!(t.key_schema(), [key] if key.attribute_name() == KEY && *key.key_type() == KeyType::Hash)
                && t.attribute_definitions().iter().any(|a| {
                    a.attribute_name() == KEY && *a.attribute_type() == ScalarAttributeType::S
                })
        });
        if keyed {
            Ok(())
        } else {
            Err(StateError::Unusable {
                table: self.table.clone(),
                why: format!("its key must be the single string hash key {KEY:?}"),
            })
        }
    }

    /// Stores `block`, replacing an earlier record of the same CIDR.
    pub async fn put(&self, block: &StoredBlock) -> Result<(), StateError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(block.item()))
            .send()
            .await
            .map_err(|e| self.api("PutItem", &e))?;
        Ok(())
    }

    /// The block of `net`, if one is stored (a consistent read).
    pub async fn get(&self, net: IpNet) -> Result<Option<StoredBlock>, StateError> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(net.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.api("GetItem", &e))?;
        got.item()
            .map(|item| {
                StoredBlock::from_item(item).map_err(|why| StateError::Unusable {
                    table: self.table.clone(),
                    why: format!("an item seclake cannot read ({why}): {item:?}"),
                })
            })
            .transpose()
    }

    /// Forgets the block of `net`.
    pub async fn remove(&self, net: IpNet) -> Result<(), StateError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(net.to_string()))
            .send()
            .await
            .map_err(|e| self.api("DeleteItem", &e))?;
        Ok(())
    }

    /// Every block, read with a consistent Scan, page after page. An item
    /// seclake cannot read is an error, not skipped: its address would stay
    /// blocked with nobody to remove it.
    pub async fn all(&self) -> Result<Vec<StoredBlock>, StateError> {
        let mut blocks = Vec::new();
        let mut items = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = items.next().await {
            let item = item.map_err(|e| self.api("Scan", &e))?;
            let block = StoredBlock::from_item(&item).map_err(|why| StateError::Unusable {
                table: self.table.clone(),
                why: format!("an item seclake cannot read ({why}): {item:?}"),
            })?;
            blocks.push(block);
        }
        blocks.sort_by_key(|b| b.net);
        Ok(blocks)
    }

    fn api<E, R>(&self, operation: &'static str, e: &SdkError<E, R>) -> StateError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        StateError::Api {
            table: self.table.clone(),
            operation,
            message: DisplayErrorContext(e).to_string(),
        }
    }
}
