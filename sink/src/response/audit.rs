//! The response's audit trail: every decision (blocked, dry run, allow-listed,
//! throttled, expired, evicted, refused, leaked keys) is an event in the
//! lake under `source=response`, so the daily report and any SQL over the
//! lake can say who was blocked, why and until when; and it goes to the
//! `[[alert]]` rules with `format = "response"`.

use futures::future::BoxFuture;
use ipnet::IpNet;
use seclake_enrich::schema::{Event, events_to_batch};
use seclake_enrich::threat::ThreatLevel;
use seclake_ingest::Ack;
use xxhash_rust::xxh3::xxh3_128_with_seed;

use crate::alert::{Alert, ResponseAlerts};
use crate::{LakeConfig, LakeWriter, SinkError};

/// The lake's `source` partition of audit events.
pub const SOURCE: &str = "response";

/// Seeds audit event ids apart from every log format's.
const ID_SEED: u64 = 0x7265_7370_6f6e_7365;

/// What the response did about an address; the audit event's `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Decision {
    /// Put in the IP set.
    Blocked,
    /// Would have been blocked; `dry_run` is on.
    DryRun,
    /// Met the policy, but the allow-list covers it.
    AllowListed,
    /// Met the policy, but the minute's budget of new blocks was spent.
    Throttled,
    /// Taken out of the set: its block expired.
    Expired,
    /// Taken out of the set before its expiry to make room for a new block.
    Evicted,
    /// Not blocked: no room in the set, or an address of the other IP version.
    Refused,
    /// A leaked access key set `Inactive`.
    KeyDisabled,
    /// A leaked access key that would have been set `Inactive` (dry run).
    KeyDryRun,
    /// A leaked access key of a protected user, left active.
    KeyProtected,
    /// A leaked access key no user of this account owns.
    KeyNotFound,
}

impl Decision {
    /// The name in the `action` column and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Blocked => "blocked",
            Decision::DryRun => "dry_run",
            Decision::AllowListed => "allow_listed",
            Decision::Throttled => "throttled",
            Decision::Expired => "expired",
            Decision::Evicted => "evicted",
            Decision::Refused => "refused",
            Decision::KeyDisabled => "key_disabled",
            Decision::KeyDryRun => "key_dry_run",
            Decision::KeyProtected => "key_protected",
            Decision::KeyNotFound => "key_not_found",
        }
    }
}

/// Where the deciding event came from, as far as an operator reading the
/// audit (or an alert) cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deciding {
    /// The event's threat score.
    pub score: i32,
    /// Its level.
    pub level: ThreatLevel,
    /// Its reasons.
    pub reasons: Vec<String>,
    /// GeoIP country code.
    pub country_iso: Option<String>,
    /// GeoIP country name.
    pub country_name: Option<String>,
    /// GeoIP autonomous system number.
    pub asn: Option<i64>,
    /// GeoIP autonomous system organisation.
    pub as_org: Option<String>,
}

/// One decision, as audited.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// What was done.
    pub decision: Decision,
    /// The CIDR concerned; none for a leaked key.
    pub net: Option<IpNet>,
    /// The IAM user concerned (a leaked key's).
    pub user: Option<String>,
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// When the block ends (ms since the epoch), for blocks.
    pub until_ms: Option<i64>,
    /// What triggered the block (`level critical`, `5 events in 60s`).
    pub trigger: Option<String>,
    /// A sentence for people: what happened and until when.
    pub message: String,
    /// The deciding event.
    pub deciding: Deciding,
}

impl AuditEntry {
    /// The entry as an event of the event schema, `source=response`. Its id
    /// is a hash of the decision, the CIDR and the time, so the same decision
    /// written twice is counted once.
    pub fn to_event(&self) -> Event {
        let ts = self.at_ms.saturating_mul(1000);
        let subject = self.subject();
        let key = format!(
            "{}\0{subject}\0{}\0{}",
            self.decision.as_str(),
            self.at_ms,
            self.message
        );
        let client_ip = self.net.map(|net| {
            if net.prefix_len() == net.max_prefix_len() {
                net.addr().to_string()
            } else {
                net.to_string()
            }
        });
        let d = &self.deciding;
        Event {
            event_id: format!("{:032x}", xxh3_128_with_seed(key.as_bytes(), ID_SEED)),
            source: SOURCE.to_owned(),
            ts,
            ingest_ts: ts,
            client_ip,
            user_name: self.user.clone(),
            action: Some(self.decision.as_str().to_owned()),
            rule: self.trigger.clone(),
            message: Some(self.message.clone()),
            country_iso: d.country_iso.clone(),
            country_name: d.country_name.clone(),
            asn: d.asn,
            as_org: d.as_org.clone(),
            threat_score: d.score,
            threat_level: d.level.as_str().to_owned(),
            threat_reasons: d.reasons.clone(),
            ..Event::default()
        }
    }
}

impl AuditEntry {
    /// What the decision is about: the CIDR, or a leaked key's user.
    fn subject(&self) -> String {
        self.net
            .map(|n| n.to_string())
            .or_else(|| self.user.clone())
            .unwrap_or_default()
    }

    /// The entry as an alert for the `format = "response"` rules.
    pub fn to_alert(&self) -> Alert {
        let d = &self.deciding;
        let subject = self.subject();
        Alert {
            title: format!("{} {subject}", self.decision.as_str().replace('_', " ")),
            client_ip: self.net.map(|n| n.addr().to_string()),
            country_iso: d.country_iso.clone(),
            country_name: d.country_name.clone(),
            asn: d.asn,
            as_org: d.as_org.clone(),
            score: d.score,
            level: d.level,
            reasons: d.reasons.clone(),
            expiry_ms: self.until_ms,
            rule: self.trigger.clone(),
            text: Some(self.message.clone()),
            event_ms: self.at_ms,
            ..Alert::default()
        }
    }
}

/// Records decisions: logs and counts them, writes them into the lake's
/// `source=response` partitions and hands them to the alerts.
pub struct AuditLog {
    lake: Option<LakeWriter>,
    alerts: Option<ResponseAlerts>,
    pending: Vec<Event>,
    written: u64,
}

impl AuditLog {
    /// Audits into the lake `cfg` describes; without one, decisions are only
    /// logged and counted.
    pub async fn open(cfg: Option<&LakeConfig>) -> Result<AuditLog, SinkError> {
        let lake = match cfg {
            Some(cfg) => Some(LakeWriter::open(cfg).await?),
            None => None,
        };
        Ok(AuditLog {
            lake,
            alerts: None,
            pending: Vec::new(),
            written: 0,
        })
    }

    /// Also alerts every decision through `alerts`.
    pub fn with_alerts(mut self, alerts: Option<ResponseAlerts>) -> AuditLog {
        self.alerts = alerts;
        self
    }

    /// Records `entry`; it reaches the lake with the next [`AuditLog::flush`].
    pub fn record(&mut self, entry: &AuditEntry) {
        if let Some(alerts) = &self.alerts {
            alerts.decision(entry.to_alert(), entry.decision.as_str());
        }
        tracing::info!(
            decision = entry.decision.as_str(),
            "response: {}",
            entry.message
        );
        metrics::counter!("seclake_response_decisions_total", "decision" => entry.decision.as_str())
            .increment(1);
        if self.lake.is_some() {
            self.pending.push(entry.to_event());
        }
    }

    /// Hands what was recorded to the lake's open files.
    pub fn flush(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let Some(lake) = &mut self.lake else {
                return Ok(());
            };
            if self.pending.is_empty() {
                return Ok(());
            }
            let batch = events_to_batch(&self.pending)
                .map_err(|e| SinkError::Response(format!("building audit events: {e}")))?;
            lake.write_source(SOURCE, &batch, &Ack::detached()).await?;
            self.written += self.pending.len() as u64;
            self.pending.clear();
            Ok(())
        })
    }

    /// Commits files that are due.
    pub fn roll_due(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            self.flush().await?;
            if let Some(lake) = &mut self.lake {
                lake.roll_due().await?;
            }
            Ok(())
        })
    }

    /// Commits everything and sends the alerts still queued.
    pub fn close(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            if let Some(alerts) = self.alerts.take() {
                alerts.close().await;
            }
            self.flush().await?;
            if let Some(lake) = &mut self.lake {
                lake.close_all().await?;
            }
            Ok(())
        })
    }

    /// Audit events handed to the lake.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Files committed to the lake.
    pub fn files(&self) -> u64 {
        self.lake.as_ref().map_or(0, |l| l.stats().files)
    }
}
