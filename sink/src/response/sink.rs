//! The response as a sink: it reads every scored event, decides blocks on
//! the sink's thread (cheap, in order) and hands them to an applier task
//! that changes the IP set, the block table and the audit trail.
//!
//! The applier coalesces: whatever was decided while a write was under way
//! goes into the next one, and writes are at least `update_interval` apart
//! (WAF allows one `UpdateIPSet` per second per account and region). WAF or
//! DynamoDB failing never stops the pipeline: what could not be applied is
//! kept and retried with backoff.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use futures::StreamExt as _;
use ipnet::IpNet;
use seclake_enrich::threat::ThreatLevel;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::audit::{AuditEntry, AuditLog, Deciding, Decision};
use super::decide::{Block, Decider, Observed, Verdict};
use super::ip_set::{IpSet, IpSetState};
use super::keys::{AccessKeys, KeyMode, KeyOutcome, access_keys};
use super::state::{BlockTable, StoredBlock};
use super::{AllowList, ResponseConfig};
use crate::{Sink, SinkBatch, SinkError, SinkStats};

/// Longest pause between retries of a failed change.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);

/// How long closing waits for the last changes to be applied.
const CLOSE_DEADLINE: Duration = Duration::from_secs(20);

/// The threat rule that fires on an AWS access key id in an app record.
const LEAKED_KEY_RULE: &str = "app.leaked_aws_key";

/// PutItem and GetItem calls in flight at once.
const TABLE_CONCURRENCY: usize = 16;

/// Work for the applier.
#[derive(Debug)]
enum Order {
    /// Put the address in the set.
    Block(Block, Deciding, i64),
    /// Audit a decision that changes nothing in WAF.
    Audit(AuditEntry),
    /// Take the address out: its block expired.
    Expire(IpAddr, i64),
    /// Deactivate a leaked access key.
    Key(String, Deciding, i64),
}

/// What the applier tells the deciding side.
#[derive(Debug)]
enum Back {
    /// Another instance extended this block: it ends at this time.
    Extended(IpAddr, i64),
    /// No longer blocked (evicted, refused): decide it afresh.
    Forget(IpAddr),
}

/// The running response sink.
pub struct ResponseSink {
    decider: Decider,
    dry_run: bool,
    /// Formats whose addresses are blocked.
    block_formats: Vec<seclake_ingest::Format>,
    /// Leaked keys are looked for (`leaked_keys` is not `off`).
    watch_keys: bool,
    /// Keys already handed to the applier.
    keys_seen: HashSet<String>,
    orders: Option<mpsc::UnboundedSender<Order>>,
    back: mpsc::UnboundedReceiver<Back>,
    applier: Option<tokio::task::JoinHandle<Result<SinkStats, SinkError>>>,
    stats: SinkStats,
}

impl ResponseSink {
    /// Restores the blocks in the block table, opens the audit trail and
    /// starts the applier. With `dry_run`, WAF is never called and the table
    /// is only read.
    pub async fn open(cfg: &ResponseConfig) -> Result<ResponseSink, SinkError> {
        cfg.check()?;
        let policy = cfg.policy()?;
        let allow: AllowList = cfg.allow_list()?;
        let shared = cfg.aws().await;
        let unusable = |key: &'static str, e: &dyn std::fmt::Display| SinkError::Config {
            key,
            why: e.to_string(),
        };
        let table = BlockTable::connect(cfg, &shared);
        let mut restored = Vec::new();
        if let Some(table) = &table {
            table
                .check()
                .await
                .map_err(|e| unusable("response.state_table", &e))?;
            restored = table
                .all()
                .await
                .map_err(|e| unusable("response.state_table", &e))?;
        }
        let (ip_set, state) = if cfg.dry_run {
            (None, None)
        } else {
            let set = IpSet::connect(cfg, &shared).with_limit(cfg.max_addresses());
            let state = match set.read().await {
                Ok(state) => Some(state),
                Err(e) if e.is_refusal() => return Err(unusable("response.ip_set_id", &e)),
                Err(e) => {
                    // The lake must not wait for WAF: decisions are kept
                    // and applied once it answers.
                    tracing::warn!("response: {e}; starting without it, changes wait for WAF");
                    None
                }
            };
            (Some(set), state)
        };
        // Blocks the table holds but the set lost (a crash between the two
        // writes, WAF down at the last close, an operator's edit) go back.
        let now = now_ms();
        // Without a first read, every running block is checked at the first
        // write (the plan skips what the set holds).
        let restores: BTreeSet<IpNet> = if ip_set.is_none() {
            BTreeSet::new()
        } else {
            restored
                .iter()
                .filter(|b| b.until_ms > now)
                .filter(|b| state.as_ref().is_none_or(|s| !s.addresses.contains(&b.net)))
                .map(|b| b.net)
                .collect()
        };
        let mut decider = Decider::new(policy, allow);
        let mut known = HashMap::new();
        for block in &restored {
            if let Some(ip) = block.host() {
                decider.restore(ip, block.until_ms);
            }
            known.insert(block.net, (block.until_ms, block.score));
        }
        if !restored.is_empty() {
            tracing::info!(
                blocks = restored.len(),
                "response: blocks restored from the block table"
            );
        }
        let keys = (cfg.leaked_keys != KeyMode::Off).then(|| {
            AccessKeys::connect(&shared, cfg.iam_endpoint.as_deref(), &cfg.protected_users)
        });
        let alerts = match &cfg.alerts {
            Some(alerting) => crate::alert::response_alerter(&alerting.outputs, &alerting.rules)?,
            None => None,
        };
        let audit = AuditLog::open(cfg.lake.as_ref()).await?.with_alerts(alerts);
        let (orders, inbox) = mpsc::unbounded_channel();
        let (back_tx, back) = mpsc::unbounded_channel();
        let applier = Applier {
            ip_set,
            table: if cfg.dry_run { None } else { table },
            keys,
            keys_dry_run: cfg.dry_run || cfg.leaked_keys == KeyMode::DryRun,
            leaks: BTreeMap::new(),
            audit,
            known,
            interval: cfg.update_interval(),
            wrote: false,
            back: back_tx,
            blocks: BTreeMap::new(),
            restores,
            expiries: BTreeMap::new(),
            failures: 0,
        };
        Ok(ResponseSink {
            decider,
            dry_run: cfg.dry_run,
            block_formats: cfg.block_formats(),
            watch_keys: cfg.leaked_keys != KeyMode::Off,
            keys_seen: HashSet::new(),
            orders: Some(orders),
            back,
            applier: Some(tokio::spawn(applier.run(inbox))),
            stats: SinkStats::default(),
        })
    }

    fn send(&mut self, order: Order) -> Result<(), SinkError> {
        let sent = self.orders.as_ref().is_some_and(|o| o.send(order).is_ok());
        if sent {
            Ok(())
        } else {
            Err(SinkError::Task("the response applier stopped".into()))
        }
    }

    /// Takes what the applier learnt (extended or forgotten blocks).
    fn listen(&mut self) {
        while let Ok(back) = self.back.try_recv() {
            match back {
                Back::Extended(ip, until_ms) => self.decider.restore(ip, until_ms),
                Back::Forget(ip) => self.decider.forget(ip),
            }
        }
    }

    /// Decides on every row at or above the policy's floor; `blocks` is
    /// false for a format whose addresses are not blocked.
    fn decide(
        &mut self,
        batch: &RecordBatch,
        blocks: bool,
        findings: bool,
        now_ms: i64,
    ) -> Result<(), SinkError> {
        let columns = Columns::of(batch)?;
        let floor = self.decider.floor();
        let finding_level = self.decider.finding_level();
        for row in 0..batch.num_rows() {
            let finding = (findings && columns.severity(row).is_some_and(|s| s >= finding_level))
                .then(|| columns.rule.value(row));
            let Some(level) = columns
                .level(row)
                .filter(|l| *l >= floor || finding.is_some())
            else {
                continue;
            };
            let reasons = columns.reasons(row);
            if self.watch_keys
                && finding.is_some()
                && let Some(key) = columns.named_key(row)
            {
                self.leaked_keys(&columns, row, level, &reasons, vec![key], now_ms)?;
            }
            if reasons.iter().any(|r| r.starts_with(LEAKED_KEY_RULE)) {
                // A key in a log line says nothing about the request's client.
                if self.watch_keys {
                    let found = columns.logged_keys(row);
                    self.leaked_keys(&columns, row, level, &reasons, found, now_ms)?;
                }
                continue;
            }
            if !blocks {
                continue;
            }
            let Some(ip) = columns.ip(row) else { continue };
            let seen = Observed {
                ip,
                ts_micros: columns.ts.value(row),
                score: columns.score.value(row),
                level,
                reasons: &reasons,
                finding,
            };
            let Some(verdict) = self.decider.observe(&seen, now_ms) else {
                continue;
            };
            let deciding = columns.deciding(row, &seen);
            let order = match verdict {
                Verdict::Block(block) if self.dry_run => {
                    let stored = StoredBlock::of(&block, now_ms);
                    Order::Audit(AuditEntry {
                        decision: Decision::DryRun,
                        net: Some(block.net),
                        user: None,
                        at_ms: now_ms,
                        until_ms: Some(block.until_ms),
                        message: format!(
                            "would block {} until {} ({}; dry run)",
                            block.net,
                            rfc3339(block.until_ms),
                            stored.trigger
                        ),
                        trigger: Some(stored.trigger),
                        deciding,
                    })
                }
                Verdict::Block(block) => Order::Block(block, deciding, now_ms),
                Verdict::Allowed { ip, entry } => Order::Audit(AuditEntry {
                    decision: Decision::AllowListed,
                    net: Some(IpNet::from(ip)),
                    user: None,
                    at_ms: now_ms,
                    until_ms: None,
                    trigger: None,
                    message: format!("not blocked: {ip} is in the allow-list entry {entry}"),
                    deciding,
                }),
                Verdict::Throttled { ip } => Order::Audit(AuditEntry {
                    decision: Decision::Throttled,
                    net: Some(IpNet::from(ip)),
                    user: None,
                    at_ms: now_ms,
                    until_ms: None,
                    trigger: None,
                    message: format!(
                        "not blocked yet: this minute's max_blocks_per_minute is spent; {ip} is decided again at its next event"
                    ),
                    deciding,
                }),
            };
            self.send(order)?;
        }
        Ok(())
    }
}

impl ResponseSink {
    /// Hands each of `found`, leaked in `row`, to the applier, once.
    fn leaked_keys(
        &mut self,
        columns: &Columns<'_>,
        row: usize,
        level: ThreatLevel,
        reasons: &[String],
        found: Vec<String>,
        now_ms: i64,
    ) -> Result<(), SinkError> {
        for key in found {
            if self.keys_seen.insert(key.clone()) {
                let seen = Observed {
                    ip: IpAddr::from([0, 0, 0, 0]),
                    ts_micros: columns.ts.value(row),
                    score: columns.score.value(row),
                    level,
                    reasons,
                    finding: None,
                };
                let deciding = columns.deciding(row, &seen);
                self.send(Order::Key(key, deciding, now_ms))?;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Sink for ResponseSink {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        self.listen();
        let blocks = self.block_formats.contains(&batch.format);
        let findings = batch.format == seclake_ingest::Format::GuardDuty;
        self.decide(&batch.events, blocks, findings, now_ms())
    }

    async fn roll_due(&mut self) -> Result<(), SinkError> {
        self.listen();
        let now = now_ms();
        for ip in self.decider.expired(now) {
            self.send(Order::Expire(ip, now))?;
        }
        if self.applier.as_ref().is_some_and(|a| a.is_finished()) {
            return self.close().await;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        if self.orders.is_some() {
            self.listen();
            let now = now_ms();
            for ip in self.decider.expired(now) {
                self.send(Order::Expire(ip, now))?;
            }
        }
        self.orders = None;
        if let Some(applier) = self.applier.take() {
            self.stats = applier
                .await
                .map_err(|e| SinkError::Task(format!("the response applier: {e}")))??;
        }
        Ok(())
    }

    fn stats(&self) -> SinkStats {
        self.stats
    }
}

/// The columns the decisions read, by name.
struct Columns<'a> {
    ip: &'a arrow::array::StringArray,
    ts: &'a arrow::array::PrimitiveArray<arrow::datatypes::TimestampMicrosecondType>,
    score: &'a arrow::array::PrimitiveArray<Int32Type>,
    level: &'a arrow::array::StringArray,
    reasons: &'a arrow::array::ListArray,
    country_iso: &'a arrow::array::StringArray,
    country_name: &'a arrow::array::StringArray,
    asn: &'a arrow::array::PrimitiveArray<Int64Type>,
    as_org: &'a arrow::array::StringArray,
    app_error: &'a arrow::array::StringArray,
    message: &'a arrow::array::StringArray,
    severity: &'a arrow::array::StringArray,
    rule: &'a arrow::array::StringArray,
    access_key: &'a arrow::array::StringArray,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Columns<'a>, SinkError> {
        use crate::columns::{list, primitive, text};
        let text = |name| text(batch, name);
        Ok(Columns {
            ip: text("client_ip")?,
            ts: primitive(batch, "ts")?,
            score: primitive(batch, "threat_score")?,
            level: text("threat_level")?,
            reasons: list(batch, "threat_reasons")?,
            country_iso: text("country_iso")?,
            country_name: text("country_name")?,
            asn: primitive(batch, "asn")?,
            as_org: text("as_org")?,
            app_error: text("app_error")?,
            message: text("message")?,
            severity: text("severity")?,
            rule: text("rule")?,
            access_key: text("aws_access_key_id")?,
        })
    }

    fn level(&self, row: usize) -> Option<ThreatLevel> {
        ThreatLevel::from_name(self.level.value(row))
    }

    /// The access key ids in the row's app error and message.
    fn logged_keys(&self, row: usize) -> Vec<String> {
        let mut found = Vec::new();
        for text in [self.app_error, self.message] {
            if !text.is_null(row) {
                found.extend(access_keys(text.value(row)).map(str::to_owned));
            }
        }
        found
    }

    /// The long-term access key a finding names, if any.
    fn named_key(&self, row: usize) -> Option<String> {
        if self.access_key.is_null(row) {
            return None;
        }
        access_keys(self.access_key.value(row))
            .next()
            .map(str::to_owned)
    }

    /// The event's `severity` as a level (GuardDuty's labels are the
    /// threat levels' names).
    fn severity(&self, row: usize) -> Option<ThreatLevel> {
        if self.severity.is_null(row) {
            return None;
        }
        ThreatLevel::from_name(self.severity.value(row))
    }

    fn ip(&self, row: usize) -> Option<IpAddr> {
        if self.ip.is_null(row) {
            return None;
        }
        self.ip.value(row).parse().ok()
    }

    fn reasons(&self, row: usize) -> Vec<String> {
        if self.reasons.is_null(row) {
            return Vec::new();
        }
        let list = self.reasons.value(row);
        list.as_string_opt::<i32>()
            .map(|s| s.iter().flatten().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    fn deciding(&self, row: usize, seen: &Observed<'_>) -> Deciding {
        let text =
            |a: &arrow::array::StringArray| (!a.is_null(row)).then(|| a.value(row).to_owned());
        Deciding {
            score: seen.score,
            level: seen.level,
            reasons: seen.reasons.to_vec(),
            country_iso: text(self.country_iso),
            country_name: text(self.country_name),
            asn: (!self.asn.is_null(row)).then(|| self.asn.value(row)),
            as_org: text(self.as_org),
        }
    }
}

/// Applies blocks and expiries to WAF and the block table, and audits them.
struct Applier {
    /// None in a dry run.
    ip_set: Option<IpSet>,
    /// None in a dry run or without `state_table`.
    table: Option<BlockTable>,
    /// None when `leaked_keys` is off.
    keys: Option<AccessKeys>,
    keys_dry_run: bool,
    /// Leaked keys not yet handled.
    leaks: BTreeMap<String, (Deciding, i64)>,
    audit: AuditLog,
    /// This deployment's blocks (restored and made): expiry and score, for
    /// choosing what to evict.
    known: HashMap<IpNet, (i64, i32)>,
    interval: Duration,
    /// The last round called `UpdateIPSet`.
    wrote: bool,
    back: mpsc::UnboundedSender<Back>,
    /// Blocks not yet in the set.
    blocks: BTreeMap<IpNet, (Block, Deciding, i64)>,
    /// Stored blocks missing from the set at start.
    restores: BTreeSet<IpNet>,
    /// Expired blocks not yet out of the set.
    expiries: BTreeMap<IpNet, (IpAddr, i64)>,
    failures: u32,
}

impl Applier {
    async fn run(
        mut self,
        mut inbox: mpsc::UnboundedReceiver<Order>,
    ) -> Result<SinkStats, SinkError> {
        let mut next_write = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = self.has_work().then_some(next_write);
            tokio::select! {
                order = inbox.recv() => match order {
                    Some(order) => self.take(order),
                    None => break,
                },
                () = sleep_until(due) => {
                    while let Ok(order) = inbox.try_recv() {
                        self.take(order);
                    }
                    // Paced from the start of a write, so that writes taking
                    // time do not push every later one further back.
                    let started = Instant::now();
                    let ok = self.apply().await;
                    next_write = started + self.pause(ok);
                }
                _ = tick.tick() => self.audit.roll_due().await?,
            }
        }
        let deadline = Instant::now() + CLOSE_DEADLINE;
        while self.has_work() && Instant::now() < deadline {
            tokio::time::sleep_until(next_write.min(deadline)).await;
            let started = Instant::now();
            let ok = self.apply().await;
            next_write = started + self.pause(ok);
        }
        if self.has_work() {
            tracing::warn!(
                blocks = self.blocks.len(),
                expiries = self.expiries.len(),
                "response: closing with changes WAF did not take; the block table keeps them for the next start"
            );
        }
        self.audit.close().await?;
        Ok(SinkStats {
            rows: self.audit.written(),
            files: self.audit.files(),
            ..SinkStats::default()
        })
    }

    fn has_work(&self) -> bool {
        !self.blocks.is_empty()
            || !self.expiries.is_empty()
            || !self.leaks.is_empty()
            || !self.restores.is_empty()
    }

    /// The pause before the next write: the interval after an
    /// `UpdateIPSet` (WAF's rate limit counts those), none after a round
    /// that wrote nothing, longer after failures.
    fn pause(&mut self, ok: bool) -> Duration {
        let wrote = std::mem::take(&mut self.wrote);
        if ok {
            self.failures = 0;
            return if wrote { self.interval } else { Duration::ZERO };
        }
        self.failures = self.failures.saturating_add(1);
        let backoff = self.interval.saturating_mul(1 << self.failures.min(5));
        backoff.min(MAX_RETRY_PAUSE.max(self.interval))
    }

    fn take(&mut self, order: Order) {
        match order {
            Order::Audit(entry) => self.audit.record(&entry),
            Order::Key(key, deciding, at_ms) => {
                self.leaks.insert(key, (deciding, at_ms));
            }
            Order::Block(block, deciding, at_ms) => {
                self.expiries.remove(&block.net);
                self.blocks.insert(block.net, (block, deciding, at_ms));
            }
            Order::Expire(ip, at_ms) => {
                let net = IpNet::from(ip);
                if self.ip_set.is_none() {
                    self.audit.record(&AuditEntry {
                        decision: Decision::Expired,
                        net: Some(net),
                        user: None,
                        at_ms,
                        until_ms: None,
                        trigger: None,
                        message: format!("the dry-run block of {net} expired"),
                        deciding: Deciding::default(),
                    });
                    return;
                }
                self.blocks.remove(&net);
                // A block that never reached the set (refused) just ends.
                if self.known.contains_key(&net) {
                    self.expiries.insert(net, (ip, at_ms));
                }
            }
        }
    }

    /// One round: record the new blocks in the table, write the set once,
    /// then forget what left it. True when everything pending was applied.
    async fn apply(&mut self) -> bool {
        if !self.apply_keys().await {
            return false;
        }
        let Some(ip_set) = self.ip_set.clone() else {
            self.blocks.clear();
            self.expiries.clear();
            return true;
        };
        let now = now_ms();
        if let Err(e) = record_blocks(self.table.as_ref(), &self.blocks).await {
            return self.failed(&e);
        }
        let nets: Vec<IpNet> = self.expiries.keys().copied().collect();
        match extended(self.table.as_ref(), nets, now).await {
            Ok(extended) => {
                for block in extended {
                    if let Some((ip, _)) = self.expiries.remove(&block.net) {
                        self.known.insert(block.net, (block.until_ms, block.score));
                        let _ = self.back.send(Back::Extended(ip, block.until_ms));
                    }
                }
            }
            Err(e) => return self.failed(&e),
        }
        let adds: Vec<(IpNet, i32)> = self
            .blocks
            .iter()
            .map(|(net, (block, _, _))| (*net, block.score))
            .chain(
                self.restores
                    .iter()
                    .map(|net| (*net, self.known.get(net).map_or(0, |k| k.1))),
            )
            .collect();
        let removes: Vec<IpNet> = self.expiries.keys().copied().collect();
        let mut plan = Plan::default();
        let known = &self.known;
        let limit = ip_set.limit();
        let changed = ip_set
            .edit(|state| {
                plan = Plan::make(state, limit, &adds, &removes, known, now);
                (plan.add.clone(), plan.remove.clone())
            })
            .await;
        let change = match changed {
            Ok(change) => change,
            Err(e) => return self.failed(&e),
        };
        if !change.added.is_empty() || !change.removed.is_empty() {
            self.wrote = true;
            metrics::counter!("seclake_response_ip_set_updates_total").increment(1);
        }
        if change.conflicts > 0 {
            metrics::counter!("seclake_response_ip_set_conflicts_total")
                .increment(change.conflicts as u64);
        }
        let mut forget = Vec::new();
        let now = now_ms();
        let restores = std::mem::take(&mut self.restores);
        if !restores.is_empty() {
            tracing::info!(
                blocks = restores.len(),
                "response: blocks in the block table but not in the IP set were put back"
            );
        }
        for (net, (block, deciding, decided_ms)) in std::mem::take(&mut self.blocks) {
            let trigger = StoredBlock::of(&block, now).trigger;
            let refused = plan.refused.iter().find(|(n, _)| *n == net);
            let (decision, message) = match refused {
                Some((_, why)) => {
                    forget.push(net);
                    (Decision::Refused, format!("not blocked: {why}"))
                }
                None => {
                    metrics::histogram!("seclake_response_block_seconds")
                        .record((now - decided_ms).max(0) as f64 / 1000.0);
                    self.known.insert(net, (block.until_ms, block.score));
                    (
                        Decision::Blocked,
                        format!(
                            "blocked {net} until {} ({trigger})",
                            rfc3339(block.until_ms)
                        ),
                    )
                }
            };
            self.audit.record(&AuditEntry {
                decision,
                net: Some(net),
                user: None,
                at_ms: now,
                until_ms: (decision == Decision::Blocked).then_some(block.until_ms),
                trigger: Some(trigger),
                message,
                deciding,
            });
        }
        for (net, (_, at_ms)) in std::mem::take(&mut self.expiries) {
            self.known.remove(&net);
            forget.push(net);
            self.audit.record(&AuditEntry {
                decision: Decision::Expired,
                net: Some(net),
                user: None,
                at_ms,
                until_ms: None,
                trigger: None,
                message: format!("unblocked {net}: its block expired"),
                deciding: Deciding::default(),
            });
        }
        for net in &plan.evicted {
            let (until_ms, score) = self.known.remove(net).unwrap_or_default();
            forget.push(*net);
            let _ = self.back.send(Back::Forget(net.addr()));
            self.audit.record(&AuditEntry {
                decision: Decision::Evicted,
                net: Some(*net),
                user: None,
                at_ms: now,
                until_ms: None,
                trigger: None,
                message: format!(
                    "unblocked {net} (score {score}, until {}) to make room in a full IP set",
                    rfc3339(until_ms)
                ),
                deciding: Deciding {
                    score,
                    ..Deciding::default()
                },
            });
        }
        if let Some(table) = &self.table {
            let removed =
                on_table(table, forget, |t, net| async move { t.remove(net).await }).await;
            if let Some(Err(e)) = removed.into_iter().find(Result::is_err) {
                // The addresses are out of the set; a stale record only
                // means a removal of nothing when it expires.
                tracing::warn!("response: {e}");
            }
        }
        true
    }

    /// Deactivates (or, in a dry run, looks up) the pending leaked keys.
    async fn apply_keys(&mut self) -> bool {
        let Some(keys) = self.keys.clone() else {
            self.leaks.clear();
            return true;
        };
        while let Some((key, (deciding, _))) = self.leaks.pop_first() {
            let outcome = match keys.deactivate(&key, self.keys_dry_run).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    self.leaks.insert(key, (deciding, now_ms()));
                    return self.failed(&e);
                }
            };
            let (decision, user) = match &outcome {
                KeyOutcome::Disabled { user } => (Decision::KeyDisabled, Some(user.clone())),
                KeyOutcome::WouldDisable { user } => (Decision::KeyDryRun, Some(user.clone())),
                KeyOutcome::Protected { user } => (Decision::KeyProtected, Some(user.clone())),
                KeyOutcome::NotFound => (Decision::KeyNotFound, None),
            };
            self.audit.record(&AuditEntry {
                decision,
                net: None,
                user,
                at_ms: now_ms(),
                until_ms: None,
                trigger: Some("leaked access key".to_owned()),
                message: format!("access key {key} found in the logs: {outcome}"),
                deciding,
            });
        }
        true
    }

    fn failed(&mut self, e: &dyn std::fmt::Display) -> bool {
        metrics::counter!("seclake_response_errors_total").increment(1);
        tracing::warn!(
            blocks = self.blocks.len(),
            expiries = self.expiries.len(),
            "response: {e}; kept for the next attempt"
        );
        false
    }
}

/// Stores the pending blocks before they reach WAF: a block in the set
/// always has a record, so it is removed on time even after a crash.
async fn record_blocks(
    table: Option<&BlockTable>,
    blocks: &BTreeMap<IpNet, (Block, Deciding, i64)>,
) -> Result<(), super::StateError> {
    let Some(table) = table else {
        return Ok(());
    };
    let stored: Vec<StoredBlock> = blocks
        .values()
        .map(|(block, _, at_ms)| StoredBlock::of(block, *at_ms))
        .collect();
    on_table(table, stored, |t, block| async move { t.put(&block).await })
        .await
        .into_iter()
        .collect()
}

/// The stored blocks among `nets` whose expiry is after `now`: another
/// instance blocked them again, so they stay.
async fn extended(
    table: Option<&BlockTable>,
    nets: Vec<IpNet>,
    now: i64,
) -> Result<Vec<StoredBlock>, super::StateError> {
    let Some(table) = table else {
        return Ok(Vec::new());
    };
    let stored = on_table(table, nets, |t, net| async move { t.get(net).await }).await;
    let mut later = Vec::new();
    for got in stored {
        later.extend(got?.filter(|b| b.until_ms > now));
    }
    Ok(later)
}

/// `call` on the table for each of `items`, [`TABLE_CONCURRENCY`] at a time.
async fn on_table<I, T, F, Fut>(table: &BlockTable, items: I, call: F) -> Vec<T>
where
    I: IntoIterator,
    F: Fn(BlockTable, I::Item) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    futures::stream::iter(items)
        .map(|item| call(table.clone(), item))
        .buffer_unordered(TABLE_CONCURRENCY)
        .collect()
        .await
}

/// What one write adds and removes, planned from a fresh read of the set.
#[derive(Debug, Default, Clone)]
struct Plan {
    add: Vec<IpNet>,
    remove: Vec<IpNet>,
    /// Blocks of this deployment taken out early to make room.
    evicted: Vec<IpNet>,
    /// Blocks that cannot go in, and why.
    refused: Vec<(IpNet, String)>,
}

impl Plan {
    /// Adds `adds` and removes `removes`; when the set would pass `limit`,
    /// evicts this deployment's blocks, expired ones first (oldest expiry
    /// first), then the lowest scores; what still does not fit is refused,
    /// lowest scores first. Entries put in the set by others are never
    /// evicted.
    fn make(
        state: &IpSetState,
        limit: usize,
        adds: &[(IpNet, i32)],
        removes: &[IpNet],
        known: &HashMap<IpNet, (i64, i32)>,
        now: i64,
    ) -> Plan {
        let mut plan = Plan {
            remove: removes.to_vec(),
            ..Plan::default()
        };
        let mut new: Vec<(IpNet, i32)> = Vec::new();
        for &(net, score) in adds {
            if !state.version.holds(&net) {
                plan.refused.push((
                    net,
                    format!("the IP set holds {} addresses only", state.version),
                ));
            } else if !state.addresses.contains(&net) {
                new.push((net, score));
            }
        }
        let leaving: HashSet<&IpNet> = removes
            .iter()
            .filter(|n| state.addresses.contains(n))
            .collect();
        let room = limit.saturating_sub(state.addresses.len() - leaving.len());
        if new.len() > room {
            let mut candidates: Vec<(IpNet, i64, i32)> = state
                .addresses
                .iter()
                .filter(|n| !leaving.contains(n))
                .filter_map(|n| known.get(n).map(|&(until, score)| (*n, until, score)))
                .collect();
            candidates.sort_by_key(|&(net, until, score)| {
                let expired = until <= now;
                (
                    !expired,
                    if expired { until } else { i64::from(score) },
                    until,
                    net,
                )
            });
            let need = new.len() - room;
            plan.evicted = candidates.iter().take(need).map(|c| c.0).collect();
            let short = need - plan.evicted.len();
            if short > 0 {
                new.sort_by_key(|&(net, score)| (score, net));
                for (net, _) in new.drain(..short) {
                    plan.refused
                        .push((net, format!("the IP set is full ({limit} addresses)")));
                }
            }
        }
        plan.add = new.into_iter().map(|(net, _)| net).collect();
        plan.remove.extend(plan.evicted.iter().copied());
        plan
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::response::{IpVersion, parse_net};

    const NOW: i64 = 1_000_000;

    fn net(s: &str) -> IpNet {
        parse_net(s).expect("net")
    }

    fn state(addresses: &[&str]) -> IpSetState {
        IpSetState {
            addresses: addresses.iter().map(|a| net(a)).collect::<BTreeSet<_>>(),
            version: IpVersion::V4,
            lock_token: "t".into(),
            description: None,
        }
    }

    #[test]
    fn a_set_with_room_takes_every_new_block_and_skips_what_it_holds() {
        let plan = Plan::make(
            &state(&["1.1.1.1/32"]),
            3,
            &[(net("1.1.1.1"), 90), (net("2.2.2.2"), 90)],
            &[],
            &HashMap::new(),
            NOW,
        );
        assert_eq!(plan.add, vec![net("2.2.2.2")]);
        assert!(plan.remove.is_empty() && plan.evicted.is_empty() && plan.refused.is_empty());
    }

    #[test]
    fn a_full_set_evicts_expired_blocks_first_then_the_lowest_scores_never_others_entries() {
        // 9.9.9.9 is the operator's: never evicted.
        let set = state(&[
            "9.9.9.9/32",
            "1.0.0.1/32",
            "1.0.0.2/32",
            "1.0.0.3/32",
            "1.0.0.4/32",
        ]);
        let known = HashMap::from([
            (net("1.0.0.1"), (NOW + 10, 40)),
            (net("1.0.0.2"), (NOW - 5, 100)),
            (net("1.0.0.3"), (NOW - 50, 95)),
            (net("1.0.0.4"), (NOW + 10, 70)),
        ]);
        let adds = [
            (net("5.0.0.1"), 90),
            (net("5.0.0.2"), 90),
            (net("5.0.0.3"), 90),
        ];
        let plan = Plan::make(&set, 5, &adds, &[], &known, NOW);
        assert_eq!(
            plan.evicted,
            vec![net("1.0.0.3"), net("1.0.0.2"), net("1.0.0.1")],
            "the oldest expiry, the other expired one, then the lowest score"
        );
        assert_eq!(plan.add.len(), 3);
        assert!(plan.refused.is_empty());
    }

    #[test]
    fn what_cannot_fit_is_refused_lowest_scores_first_and_removals_make_room() {
        let set = state(&["9.9.9.1/32", "9.9.9.2/32", "1.0.0.1/32"]);
        let adds = [
            (net("5.0.0.1"), 95),
            (net("5.0.0.2"), 80),
            (net("5.0.0.3"), 99),
        ];
        let plan = Plan::make(&set, 3, &adds, &[net("1.0.0.1")], &HashMap::new(), NOW);
        assert_eq!(
            plan.add,
            vec![net("5.0.0.3")],
            "the one free place goes to the highest score"
        );
        assert_eq!(
            plan.refused.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![net("5.0.0.2"), net("5.0.0.1")]
        );
        assert_eq!(plan.remove, vec![net("1.0.0.1")]);
        let v6 = Plan::make(
            &set,
            10,
            &[(net("2001:db8::1"), 99)],
            &[],
            &HashMap::new(),
            NOW,
        );
        assert!(v6.add.is_empty());
        assert!(v6.refused[0].1.contains("IPV4"), "{:?}", v6.refused);
    }
}
