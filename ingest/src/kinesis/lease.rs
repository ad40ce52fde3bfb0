//! Shard leases and checkpoints in a DynamoDB table, laid out like the
//! KCL's, so that the workers of one application share a stream's shards.
//!
//! One item per shard, keyed by `leaseKey` (the shard id): `leaseOwner`
//! (the worker id; absent when free), `leaseCounter` (incremented by every
//! take, renew and release: the fencing token), `checkpoint` (a sequence
//! number or one of `TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`, `SHARD_END`),
//! `checkpointSubSequenceNumber`, `parentShardId` (a string set, absent when
//! the shard has no parent) and `ownerSwitchesSinceCheckpoint`.
//!
//! Every write is conditional on what the writer last saw, so two workers
//! never both believe they hold a shard; [`plan`] decides which leases a
//! worker should take.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType, TableStatus,
};

use crate::SequenceNumber;

const KEY: &str = "leaseKey";
const OWNER: &str = "leaseOwner";
const COUNTER: &str = "leaseCounter";
const CHECKPOINT: &str = "checkpoint";
const SUB_SEQUENCE: &str = "checkpointSubSequenceNumber";
const PARENTS: &str = "parentShardId";
const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";

/// How long [`LeaseTable::ensure`] waits for a new table to become ACTIVE.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);
const ACTIVE_POLL: Duration = Duration::from_secs(1);

/// The lease table of one application.
///
/// [`take`](Self::take), [`renew`](Self::renew),
/// [`checkpoint`](Self::checkpoint) and [`release`](Self::release) are
/// conditional on the owner and `leaseCounter` of the [`Lease`] passed in, and
/// renew and take change the counter. So a worker must keep, per lease, the
/// latest `Lease` these return and serialise its own operations on that
/// lease (a renewal racing a checkpoint of the same lease makes one of them
/// fail with [`LeaseError::Lost`] although no other worker took it).
#[derive(Debug, Clone)]
pub struct LeaseTable {
    client: Client,
    table: String,
}

/// One shard's lease as stored in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The shard id (`leaseKey`).
    pub shard_id: String,
    /// The worker holding the lease; `None` when free.
    pub owner: Option<String>,
    /// `leaseCounter`: changes on every take, renew and release.
    pub counter: u64,
    /// Where reading the shard resumes.
    pub checkpoint: Checkpoint,
    /// The shard's parents (one, or two after a merge).
    pub parents: Vec<String>,
    /// How often the lease was taken from another owner since the last
    /// checkpoint.
    pub owner_switches: u64,
}

/// Where reading a shard resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// From the oldest record kept.
    TrimHorizon,
    /// From the records written after reading starts.
    Latest,
    /// From the application's configured timestamp.
    AtTimestamp,
    /// The shard was closed and read to its end.
    ShardEnd,
    /// After this record (and, in a KPL aggregate, this user record).
    At {
        /// The last record processed.
        sequence: SequenceNumber,
        /// The last user record processed in it; 0 when not aggregated.
        sub_sequence: u64,
    },
}

impl Checkpoint {
    fn stored(&self) -> (&str, u64) {
        match self {
            Checkpoint::TrimHorizon => ("TRIM_HORIZON", 0),
            Checkpoint::Latest => ("LATEST", 0),
            Checkpoint::AtTimestamp => ("AT_TIMESTAMP", 0),
            Checkpoint::ShardEnd => ("SHARD_END", 0),
            Checkpoint::At {
                sequence,
                sub_sequence,
            } => (sequence.as_str(), *sub_sequence),
        }
    }

    fn parse(value: &str, sub_sequence: u64) -> Result<Checkpoint, String> {
        Ok(match value {
            "TRIM_HORIZON" => Checkpoint::TrimHorizon,
            "LATEST" => Checkpoint::Latest,
            "AT_TIMESTAMP" => Checkpoint::AtTimestamp,
            "SHARD_END" => Checkpoint::ShardEnd,
            digits => Checkpoint::At {
                sequence: SequenceNumber::new(digits).map_err(|e| format!("{CHECKPOINT}: {e}"))?,
                sub_sequence,
            },
        })
    }
}

/// Why a lease table operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The lease changed since it was read (another worker took it, or a
    /// stale `Lease` was passed): it is not ours, and must not be written.
    #[error("lease of shard {shard_id} lost: it changed since it was read")]
    Lost {
        /// The shard whose lease was lost.
        shard_id: String,
    },
    /// DynamoDB failed or refused; the message names the table.
    #[error("{0}")]
    Dynamo(String),
    /// An item of the table is not a lease this module can read.
    #[error("lease of shard {shard_id} is corrupt: {reason}")]
    Corrupt {
        /// The item's `leaseKey`.
        shard_id: String,
        /// What is wrong with it, and the table's name.
        reason: String,
    },
}

impl LeaseTable {
    /// The lease table `table`, reached with `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        LeaseTable {
            client,
            table: table.into(),
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.table
    }

    /// Creates the table (on-demand billing) if missing and waits until it is
    /// ACTIVE. An existing table is used as is, if its key is `leaseKey`.
    pub async fn ensure(&self) -> Result<(), LeaseError> {
        let deadline = tokio::time::Instant::now() + ACTIVE_TIMEOUT;
        let mut created = false;
        loop {
            match self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
            {
                Ok(described) => {
                    let Some(table) = described.table() else {
                        return Err(self.refused("DescribeTable returned no table"));
                    };
                    let keyed_by_lease_key = matches!(
                        table.key_schema(),
                        [key] if key.attribute_name() == KEY && *key.key_type() == KeyType::Hash
                    );
                    if !keyed_by_lease_key {
                        return Err(self.refused(&format!(
                            "its key is not the single hash key {KEY}: {:?}",
                            table.key_schema()
                        )));
                    }
                    match table.table_status() {
                        Some(TableStatus::Active | TableStatus::Updating) => return Ok(()),
                        Some(TableStatus::Creating) | None => {}
                        Some(status) => {
                            return Err(self.refused(&format!("its status is {}", status.as_str())));
                        }
                    }
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    if !created {
                        self.create().await?;
                        created = true;
                        continue;
                    }
                }
                Err(e) => return Err(self.dynamo("DescribeTable", e)),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.refused(&format!("not ACTIVE after {ACTIVE_TIMEOUT:?}")));
            }
            tokio::time::sleep(ACTIVE_POLL).await;
        }
    }

    async fn create(&self) -> Result<(), LeaseError> {
        tracing::info!(table = %self.table, "creating the Kinesis lease table");
        let key = KeySchemaElement::builder()
            .attribute_name(KEY)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| self.refused(&e.to_string()))?;
        let key_type = AttributeDefinition::builder()
            .attribute_name(KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| self.refused(&e.to_string()))?;
        match self
            .client
            .create_table()
            .table_name(&self.table)
            .key_schema(key)
            .attribute_definitions(key_type)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Another worker created it meanwhile.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.dynamo("CreateTable", e)),
        }
    }

    /// Every lease, read with a consistent Scan, page after page.
    pub async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut leases = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.dynamo("Scan", e))?;
            for item in page.items() {
                leases.push(self.lease(item)?);
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(leases),
            }
        }
    }

    /// Adds a free lease for a newly found shard unless the shard has one;
    /// returns whether it was added.
    pub async fn create_if_absent(
        &self,
        shard_id: &str,
        parents: &[String],
        start: Checkpoint,
    ) -> Result<bool, LeaseError> {
        let (checkpoint, sub_sequence) = start.stored();
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, s(shard_id))
            .item(COUNTER, n(0))
            .item(CHECKPOINT, s(checkpoint))
            .item(SUB_SEQUENCE, n(sub_sequence))
            .item(OWNER_SWITCHES, n(0))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", KEY);
        // A string set can't be empty.
        if !parents.is_empty() {
            put = put.item(PARENTS, AttributeValue::Ss(parents.to_vec()));
        }
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.dynamo("PutItem", e)),
        }
    }

    /// Takes `lease` (free, expired or another worker's) for `owner`, if it
    /// is still as read: owner set, counter + 1, and owner switches + 1 when
    /// it is taken from another owner (not when free, as in the KCL).
    pub async fn take(&self, lease: &Lease, owner: &str) -> Result<Lease, LeaseError> {
        let switched = lease.owner.as_deref().is_some_and(|old| old != owner);
        let mut update = self
            .unchanged(lease)
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":one", n(1));
        update = if switched {
            update
                .update_expression(
                    "SET #owner = :owner, #counter = #counter + :one, \
                     #switches = if_not_exists(#switches, :zero) + :one",
                )
                .expression_attribute_names("#switches", OWNER_SWITCHES)
                .expression_attribute_values(":zero", n(0))
        } else {
            update.update_expression("SET #owner = :owner, #counter = #counter + :one")
        };
        self.send(lease, update).await
    }

    /// Renews a lease held as `lease` says: counter + 1. A `lease` without
    /// an owner is [`LeaseError::Lost`], as for checkpoint and release.
    pub async fn renew(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        let update = self
            .held(lease)?
            .update_expression("SET #counter = #counter + :one")
            .expression_attribute_values(":one", n(1));
        self.send(lease, update).await
    }

    /// Records `checkpoint` for a lease held as `lease` says; the counter
    /// stays, owner switches go back to 0.
    pub async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: Checkpoint,
    ) -> Result<Lease, LeaseError> {
        let (value, sub_sequence) = checkpoint.stored();
        let update = self
            .held(lease)?
            .update_expression("SET #checkpoint = :checkpoint, #sub = :sub, #switches = :zero")
            .expression_attribute_names("#checkpoint", CHECKPOINT)
            .expression_attribute_names("#sub", SUB_SEQUENCE)
            .expression_attribute_names("#switches", OWNER_SWITCHES)
            .expression_attribute_values(":checkpoint", s(value))
            .expression_attribute_values(":sub", n(sub_sequence))
            .expression_attribute_values(":zero", n(0));
        self.send(lease, update).await
    }

    /// Gives up a lease held as `lease` says: owner removed, counter + 1.
    pub async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        let update = self
            .held(lease)?
            .update_expression("REMOVE #owner SET #counter = #counter + :one")
            .expression_attribute_values(":one", n(1));
        self.send(lease, update).await.map(drop)
    }

    /// An UpdateItem of `lease`'s item, on condition that its owner and
    /// counter are still those of `lease`.
    fn unchanged(&self, lease: &Lease) -> UpdateItemFluentBuilder {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(&lease.shard_id))
            .expression_attribute_names("#counter", COUNTER)
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":counter", n(lease.counter))
            .return_values(ReturnValue::AllNew);
        match &lease.owner {
            Some(owner) => update
                .condition_expression("#owner = :held_by AND #counter = :counter")
                .expression_attribute_values(":held_by", s(owner)),
            None => {
                update.condition_expression("attribute_not_exists(#owner) AND #counter = :counter")
            }
        }
    }

    /// [`Self::unchanged`] for a lease that must have an owner.
    fn held(&self, lease: &Lease) -> Result<UpdateItemFluentBuilder, LeaseError> {
        if lease.owner.is_none() {
            return Err(LeaseError::Lost {
                shard_id: lease.shard_id.clone(),
            });
        }
        Ok(self.unchanged(lease))
    }

    async fn send(
        &self,
        lease: &Lease,
        update: UpdateItemFluentBuilder,
    ) -> Result<Lease, LeaseError> {
        match update.send().await {
            Ok(updated) => match updated.attributes() {
                Some(item) => self.lease(item),
                None => Err(self.corrupt(&lease.shard_id, "UpdateItem returned no attributes")),
            },
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                tracing::debug!(table = %self.table, shard_id = %lease.shard_id, "lease lost");
                Err(LeaseError::Lost {
                    shard_id: lease.shard_id.clone(),
                })
            }
            Err(e) => Err(self.dynamo("UpdateItem", e)),
        }
    }

    fn lease(&self, item: &HashMap<String, AttributeValue>) -> Result<Lease, LeaseError> {
        let Some(AttributeValue::S(shard_id)) = item.get(KEY) else {
            return Err(self.corrupt("?", &format!("{KEY} is not a string: {:?}", item.get(KEY))));
        };
        let corrupt = |reason: String| self.corrupt(shard_id, &reason);
        let number = |name: &str, default: Option<u64>| match (item.get(name), default) {
            (Some(AttributeValue::N(text)), _) => text
                .parse::<u64>()
                .map_err(|_| corrupt(format!("{name} is not a counter: {text:?}"))),
            (None, Some(default)) => Ok(default),
            (other, _) => Err(corrupt(format!("{name} is not a number: {other:?}"))),
        };
        let owner = match item.get(OWNER) {
            None | Some(AttributeValue::Null(true)) => None,
            Some(AttributeValue::S(owner)) => Some(owner.clone()),
            Some(other) => return Err(corrupt(format!("{OWNER} is not a string: {other:?}"))),
        };
        let counter = number(COUNTER, None)?;
        let sub_sequence = number(SUB_SEQUENCE, Some(0))?;
        let owner_switches = number(OWNER_SWITCHES, Some(0))?;
        let checkpoint = match item.get(CHECKPOINT) {
            Some(AttributeValue::S(value)) => {
                Checkpoint::parse(value, sub_sequence).map_err(corrupt)?
            }
            other => return Err(corrupt(format!("{CHECKPOINT} is not a string: {other:?}"))),
        };
        let parents = match item.get(PARENTS) {
            None => Vec::new(),
            Some(AttributeValue::Ss(parents)) => parents.clone(),
            Some(other) => {
                return Err(corrupt(format!("{PARENTS} is not a string set: {other:?}")));
            }
        };
        Ok(Lease {
            shard_id: shard_id.clone(),
            owner,
            counter,
            checkpoint,
            parents,
            owner_switches,
        })
    }

    fn dynamo<E, R>(&self, operation: &str, error: SdkError<E, R>) -> LeaseError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        LeaseError::Dynamo(format!(
            "lease table {}: {operation} failed: {}",
            self.table,
            DisplayErrorContext(&error)
        ))
    }

    fn refused(&self, why: &str) -> LeaseError {
        LeaseError::Dynamo(format!("lease table {}: {why}", self.table))
    }

    fn corrupt(&self, shard_id: &str, reason: &str) -> LeaseError {
        LeaseError::Corrupt {
            shard_id: shard_id.to_owned(),
            reason: format!("{reason} (lease table {})", self.table),
        }
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Which leases `me` should take now, as the KCL decides.
///
/// A lease is in play unless its checkpoint is [`Checkpoint::ShardEnd`] or it
/// is neither `ready` (its parents finished: the caller decides) nor held by
/// a live worker. Live workers are the owners of leases not in `expired` (the
/// shard ids whose counter the caller saw unchanged for the lease timeout),
/// plus `me`; the fair share is ceil(leases in play / live workers).
///
/// Up to the fair share (held + planned, never more), `me` takes free and
/// expired leases, its own expired ones included, that are `ready`. Only when
/// there are none does it steal one lease from the live worker holding the
/// most: if that worker holds more than the fair share, or exactly the fair
/// share while `me` lacks more than one (so a newcomer gets work without two
/// workers trading a lease back and forth). Expired leases beyond the fair
/// share are left to the other workers or the next round. The order is
/// staggered by `me` so that workers planning at once try different leases.
pub fn plan(
    leases: &[Lease],
    me: &str,
    expired: &HashSet<String>,
    ready: impl Fn(&Lease) -> bool,
) -> Vec<Lease> {
    let live = |lease| live_owner(lease, expired);
    let in_play: Vec<(&Lease, bool)> = leases
        .iter()
        .filter(|lease| lease.checkpoint != Checkpoint::ShardEnd)
        .map(|lease| (lease, ready(lease)))
        .filter(|&(lease, ready)| ready || live(lease).is_some())
        .collect();
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    for &(lease, _) in &in_play {
        if let Some(owner) = live(lease) {
            *load.entry(owner).or_default() += 1;
        }
    }
    let held = load.get(me).copied().unwrap_or(0);
    let workers = load.len() + usize::from(!load.contains_key(me));
    let share = in_play.len().div_ceil(workers);
    let needed = share.saturating_sub(held);
    if needed == 0 {
        return Vec::new();
    }

    let free: Vec<&Lease> = in_play
        .iter()
        .filter(|&&(lease, ready)| ready && live(lease).is_none())
        .map(|&(lease, _)| lease)
        .collect();
    if !free.is_empty() {
        return staggered(free, me).take(needed).cloned().collect();
    }

    let Some((&victim, &most)) = load
        .iter()
        .filter(|&(&owner, _)| owner != me)
        .max_by_key(|&(_, &count)| count)
    else {
        return Vec::new();
    };
    if most < share || (most == share && needed < 2) {
        return Vec::new();
    }
    let stealable: Vec<&Lease> = in_play
        .iter()
        .filter(|&&(lease, ready)| ready && live(lease) == Some(victim))
        .map(|&(lease, _)| lease)
        .collect();
    staggered(stealable, me).take(1).cloned().collect()
}

/// The owner of `lease`, unless it has expired.
fn live_owner<'a>(lease: &'a Lease, expired: &HashSet<String>) -> Option<&'a str> {
    if expired.contains(&lease.shard_id) {
        return None;
    }
    lease.owner.as_deref()
}

/// `leases` by shard id, rotated by a hash of `me`.
fn staggered<'a>(
    mut leases: Vec<&'a Lease>,
    me: &str,
) -> impl Iterator<Item = &'a Lease> + use<'a> {
    leases.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
    let mut hasher = DefaultHasher::new();
    me.hash(&mut hasher);
    if !leases.is_empty() {
        let by = usize::try_from(hasher.finish() % leases.len() as u64).unwrap_or(0);
        leases.rotate_left(by);
    }
    leases.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(shard: usize, owner: Option<&str>) -> Lease {
        Lease {
            shard_id: format!("shardId-{shard:012}"),
            owner: owner.map(str::to_owned),
            counter: 1,
            checkpoint: Checkpoint::TrimHorizon,
            parents: Vec::new(),
            owner_switches: 0,
        }
    }

    fn owned(owners: &[Option<&str>]) -> Vec<Lease> {
        owners
            .iter()
            .enumerate()
            .map(|(shard, &owner)| lease(shard, owner))
            .collect()
    }

    fn held_by(leases: &[Lease], owner: &str) -> usize {
        leases
            .iter()
            .filter(|lease| lease.owner.as_deref() == Some(owner))
            .count()
    }

    /// Plans for `me` with nothing expired and everything ready, then takes
    /// what was planned; returns how many leases were planned.
    fn round(leases: &mut [Lease], me: &str) -> usize {
        let planned = plan(leases, me, &HashSet::new(), |_| true);
        for taken in &planned {
            for lease in leases.iter_mut() {
                if lease.shard_id == taken.shard_id {
                    lease.owner = Some(me.to_owned());
                }
            }
        }
        planned.len()
    }

    #[test]
    fn a_lone_worker_takes_every_shard() {
        let leases = owned(&[None; 4]);
        let planned = plan(&leases, "a", &HashSet::new(), |_| true);
        assert_eq!(planned.len(), 4);
        let ids: HashSet<_> = planned.iter().map(|l| &l.shard_id).collect();
        assert_eq!(ids.len(), 4);
    }

    #[test]
    fn two_workers_split_four_shards_two_and_two() {
        let mut leases = owned(&[None; 4]);
        assert_eq!(round(&mut leases, "a"), 4);
        // One steal per round until the split is even, then nothing moves.
        assert_eq!(round(&mut leases, "b"), 1);
        assert_eq!(round(&mut leases, "a"), 0);
        assert_eq!(round(&mut leases, "b"), 1);
        assert_eq!((held_by(&leases, "a"), held_by(&leases, "b")), (2, 2));
        assert_eq!(round(&mut leases, "a"), 0);
        assert_eq!(round(&mut leases, "b"), 0);
    }

    #[test]
    fn a_third_worker_steals_exactly_one() {
        let mut leases = owned(&[Some("a"), Some("a"), Some("b"), Some("b")]);
        let planned = plan(&leases, "c", &HashSet::new(), |_| true);
        assert_eq!(planned.len(), 1);
        assert!(
            planned[0]
                .owner
                .as_deref()
                .is_some_and(|o| o == "a" || o == "b")
        );
        round(&mut leases, "c");
        for me in ["a", "b", "c", "a", "b", "c"] {
            assert_eq!(round(&mut leases, me), 0, "{me} moves a lease: {leases:?}");
        }
    }

    #[test]
    fn expired_leases_of_a_dead_worker_are_taken() {
        let leases = owned(&[Some("a"), Some("a"), Some("dead"), Some("dead")]);
        let expired: HashSet<String> = leases[2..].iter().map(|l| l.shard_id.clone()).collect();
        let planned = plan(&leases, "a", &expired, |_| true);
        let ids: HashSet<_> = planned.iter().map(|l| l.shard_id.clone()).collect();
        assert_eq!(ids, expired);

        // With another live worker, the fair share caps what each takes.
        let mut shared = leases.clone();
        shared[0].owner = Some("b".into());
        let planned = plan(&shared, "a", &expired, |_| true);
        assert_eq!(planned.len(), 1);
        assert!(expired.contains(&planned[0].shard_id));

        // A worker's own expired lease (say, after a restart) is taken back.
        let mine = owned(&[Some("a")]);
        let expired = HashSet::from([mine[0].shard_id.clone()]);
        assert_eq!(plan(&mine, "a", &expired, |_| true), mine);
    }

    #[test]
    fn finished_and_unready_shards_are_never_planned() {
        let mut leases = owned(&[None, None, None, None]);
        leases[0].checkpoint = Checkpoint::ShardEnd;
        leases[1].checkpoint = Checkpoint::ShardEnd;
        leases[3].parents = vec![leases[0].shard_id.clone(), leases[1].shard_id.clone()];
        let not_child = |lease: &Lease| lease.parents.is_empty();
        let planned = plan(&leases, "a", &HashSet::new(), not_child);
        assert_eq!(planned, vec![leases[2].clone()]);

        // Nor stolen, nor taken when expired.
        for lease in &mut leases {
            lease.owner = Some("b".into());
        }
        let planned = plan(&leases, "a", &HashSet::new(), not_child);
        assert_eq!(planned, vec![leases[2].clone()]);
        let expired = leases.iter().map(|l| l.shard_id.clone()).collect();
        assert_eq!(
            plan(&leases, "a", &expired, not_child),
            vec![leases[2].clone()]
        );
    }

    #[test]
    fn checkpoints_are_stored_as_the_kcl_stores_them() {
        let sequence =
            SequenceNumber::new("49590338271490256608559692538361571095921575989136588898")
                .unwrap();
        let at = Checkpoint::At {
            sequence: sequence.clone(),
            sub_sequence: 3,
        };
        assert_eq!(at.stored(), (sequence.as_str(), 3));
        assert_eq!(Checkpoint::parse(sequence.as_str(), 3), Ok(at));
        for sentinel in [
            Checkpoint::TrimHorizon,
            Checkpoint::Latest,
            Checkpoint::AtTimestamp,
            Checkpoint::ShardEnd,
        ] {
            let (value, sub) = sentinel.stored();
            assert_eq!(Checkpoint::parse(value, sub), Ok(sentinel));
        }
        assert!(Checkpoint::parse("TRIM-HORIZON", 0).is_err());
    }
}
