//! Block decisions: which client addresses to block, and why, from the scored
//! events as they flow. An address is blocked at once by an event at
//! `block_level` (critical by default), or by `sustained_events` events at
//! `sustained_level` (high) or above within `sustained_window` of event time.
//! Every block carries an expiry; the allow-list and a budget of new blocks
//! per minute come before any block.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use seclake_enrich::threat::ThreatLevel;

use super::AllowList;

/// Addresses whose recent high events are remembered; past it the stale
/// ones are forgotten first.
const MAX_TRACKED: usize = 65_536;

/// When an address is blocked, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockPolicy {
    /// An event at this level or above blocks its address at once.
    pub block_level: ThreatLevel,
    /// Events at this level or above count towards a sustained block.
    pub sustained_level: ThreatLevel,
    /// How many of them, within `sustained_window`, block the address.
    pub sustained_events: usize,
    /// The window, in event time.
    pub sustained_window: Duration,
    /// How long a block lasts.
    pub ttl: Duration,
    /// New blocks allowed per wall-clock minute.
    pub max_per_minute: u32,
    /// A GuardDuty finding of this severity or above blocks its remote
    /// address at once.
    pub finding_level: ThreatLevel,
}

impl Default for BlockPolicy {
    fn default() -> BlockPolicy {
        BlockPolicy {
            block_level: ThreatLevel::Critical,
            sustained_level: ThreatLevel::High,
            sustained_events: 5,
            sustained_window: Duration::from_secs(60),
            ttl: Duration::from_secs(24 * 3600),
            max_per_minute: 60,
            finding_level: ThreatLevel::High,
        }
    }
}

/// One scored event, as far as blocking goes.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// The client address.
    pub ip: IpAddr,
    /// Event time, microseconds since the epoch.
    pub ts_micros: i64,
    /// The threat score.
    pub score: i32,
    /// The threat level.
    pub level: ThreatLevel,
    /// The reasons (`rule +points`).
    pub reasons: &'a [String],
    /// A GuardDuty finding at or above the policy's `finding_level`: its
    /// type. Such an event blocks its address at once, whatever its score.
    pub finding: Option<&'a str>,
}

/// What made an address blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// One event at `block_level` or above.
    Level(ThreatLevel),
    /// A GuardDuty finding of this type (at or above `finding_level`).
    Finding(String),
    /// `events` events at `sustained_level` or above within `window`.
    Sustained {
        /// Events counted.
        events: usize,
        /// The window.
        window: Duration,
    },
}

/// A decision to block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The address.
    pub ip: IpAddr,
    /// What goes into the IP set: its /32 or /128.
    pub net: IpNet,
    /// Why.
    pub trigger: Trigger,
    /// The deciding event's score, level and reasons.
    pub score: i32,
    /// See `score`.
    pub level: ThreatLevel,
    /// See `score`.
    pub reasons: Vec<String>,
    /// Unblocked at this wall-clock time (ms since the epoch).
    pub until_ms: i64,
}

/// What [`Decider::observe`] concluded about an event that met the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Block the address.
    Block(Block),
    /// The allow-list covers the address (reported once per `ttl`).
    Allowed {
        /// The address.
        ip: IpAddr,
        /// The allow-list entry that covers it.
        entry: IpNet,
    },
    /// This minute's budget of new blocks is spent; a later event from the
    /// address is decided again.
    Throttled {
        /// The address.
        ip: IpAddr,
    },
}

/// Decides blocks event by event; keeps who is blocked until when.
#[derive(Debug)]
pub struct Decider {
    policy: BlockPolicy,
    allow: AllowList,
    /// Event times (µs) of recent events at `sustained_level` per address.
    recent: HashMap<IpAddr, VecDeque<i64>>,
    /// Blocked (or reported as allowed) addresses and when that ends (ms).
    until: HashMap<IpAddr, i64>,
    /// The wall-clock minute and the blocks made in it.
    budget: (i64, u32),
}

impl Decider {
    /// A decider with nobody blocked.
    pub fn new(policy: BlockPolicy, allow: AllowList) -> Decider {
        Decider {
            policy,
            allow,
            recent: HashMap::new(),
            until: HashMap::new(),
            budget: (i64::MIN, 0),
        }
    }

    /// Takes a block made earlier (a restart), so that it is not made again
    /// and expires when it should.
    pub fn restore(&mut self, ip: IpAddr, until_ms: i64) {
        self.until.insert(ip, until_ms);
    }

    /// The verdict on `event` at wall-clock `now_ms`, when it meets the
    /// policy and its address is not already blocked.
    pub fn observe(&mut self, event: &Observed<'_>, now_ms: i64) -> Option<Verdict> {
        if self.until.get(&event.ip).is_some_and(|&t| t > now_ms) {
            return None;
        }
        let trigger = if let Some(finding) = event.finding {
            Trigger::Finding(finding.to_owned())
        } else if event.level >= self.policy.block_level {
            Trigger::Level(event.level)
        } else if event.level >= self.policy.sustained_level {
            let events = self.count(event);
            if events < self.policy.sustained_events {
                return None;
            }
            Trigger::Sustained {
                events,
                window: self.policy.sustained_window,
            }
        } else {
            return None;
        };
        let until_ms = now_ms.saturating_add(self.policy.ttl.as_millis() as i64);
        if let Some(entry) = self.allow.holding(event.ip) {
            self.until.insert(event.ip, until_ms);
            return Some(Verdict::Allowed {
                ip: event.ip,
                entry,
            });
        }
        let minute = now_ms.div_euclid(60_000);
        if self.budget.0 != minute {
            self.budget = (minute, 0);
        }
        if self.budget.1 >= self.policy.max_per_minute {
            return Some(Verdict::Throttled { ip: event.ip });
        }
        self.budget.1 += 1;
        self.recent.remove(&event.ip);
        self.until.insert(event.ip, until_ms);
        Some(Verdict::Block(Block {
            ip: event.ip,
            net: IpNet::from(event.ip),
            trigger,
            score: event.score,
            level: event.level,
            reasons: event.reasons.to_vec(),
            until_ms,
        }))
    }

    /// The lowest level an event must have to count for anything.
    pub fn floor(&self) -> ThreatLevel {
        self.policy.sustained_level.min(self.policy.block_level)
    }

    /// The lowest severity of a GuardDuty finding that blocks.
    pub fn finding_level(&self) -> ThreatLevel {
        self.policy.finding_level
    }

    /// Forgets `ip`'s block: its next events decide it afresh.
    pub fn forget(&mut self, ip: IpAddr) {
        self.until.remove(&ip);
    }

    /// Addresses whose block (or allow-list report) ended by `now_ms`; they
    /// are forgotten, so a new event decides them afresh.
    pub fn expired(&mut self, now_ms: i64) -> Vec<IpAddr> {
        let mut gone: Vec<IpAddr> = self
            .until
            .iter()
            .filter(|&(_, &t)| t <= now_ms)
            .map(|(&ip, _)| ip)
            .collect();
        gone.sort();
        for ip in &gone {
            self.until.remove(ip);
        }
        gone
    }

    /// Counts `event` and the address's other recent ones within the window.
    fn count(&mut self, event: &Observed<'_>) -> usize {
        let window = self.policy.sustained_window.as_micros() as i64;
        if !self.recent.contains_key(&event.ip) && self.recent.len() >= MAX_TRACKED {
            let horizon = event.ts_micros.saturating_sub(window);
            self.recent
                .retain(|_, times| times.back().is_some_and(|&t| t >= horizon));
            if self.recent.len() >= MAX_TRACKED {
                self.recent.clear();
            }
        }
        let times = self.recent.entry(event.ip).or_default();
        let newest = times
            .back()
            .copied()
            .unwrap_or(i64::MIN)
            .max(event.ts_micros);
        times.push_back(event.ts_micros);
        let horizon = newest.saturating_sub(window);
        while times.front().is_some_and(|&t| t < horizon) {
            times.pop_front();
        }
        times.iter().filter(|&&t| t >= horizon).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::ResponseConfig;

    const MINUTE_MS: i64 = 60_000;

    fn decider(policy: BlockPolicy) -> Decider {
        let cfg: ResponseConfig =
            toml::from_str("ip_set_name = \"s\"\nip_set_id = \"i\"\nallow = [\"10.0.0.0/8\"]")
                .expect("config");
        Decider::new(policy, cfg.allow_list().expect("allow list"))
    }

    fn event<'a>(ip: &str, second: i64, level: ThreatLevel, reasons: &'a [String]) -> Observed<'a> {
        Observed {
            ip: ip.parse().expect("ip"),
            ts_micros: second * 1_000_000,
            score: match level {
                ThreatLevel::Critical => 100,
                ThreatLevel::High => 55,
                _ => 10,
            },
            level,
            reasons,
            finding: None,
        }
    }

    #[test]
    fn a_guardduty_finding_blocks_at_once_whatever_its_score() {
        let mut d = decider(BlockPolicy::default());
        let reasons = vec!["guardduty.severity.high +60".to_owned()];
        let finding = Observed {
            finding: Some("UnauthorizedAccess:EC2/SSHBruteForce"),
            ..event("198.51.100.9", 0, ThreatLevel::High, &reasons)
        };
        let Some(Verdict::Block(block)) = d.observe(&finding, 1_000 * MINUTE_MS) else {
            panic!("a high finding blocks");
        };
        assert_eq!(
            block.trigger,
            Trigger::Finding("UnauthorizedAccess:EC2/SSHBruteForce".into())
        );
    }

    #[test]
    fn a_critical_event_blocks_its_address_once_until_the_block_expires() {
        let mut d = decider(BlockPolicy::default());
        let reasons = vec!["waf.label.log4j +30".to_owned()];
        let now = 1_000 * MINUTE_MS;
        let Some(Verdict::Block(block)) = d.observe(
            &event("198.51.100.7", 0, ThreatLevel::Critical, &reasons),
            now,
        ) else {
            panic!("not blocked");
        };
        assert_eq!(block.net.to_string(), "198.51.100.7/32");
        assert_eq!(block.trigger, Trigger::Level(ThreatLevel::Critical));
        assert_eq!(block.reasons, reasons);
        assert_eq!(block.until_ms, now + 24 * 60 * MINUTE_MS);
        assert_eq!(
            d.observe(
                &event("198.51.100.7", 1, ThreatLevel::Critical, &reasons),
                now + 1
            ),
            None
        );
        assert!(d.expired(block.until_ms - 1).is_empty());
        assert_eq!(d.expired(block.until_ms), vec![block.ip]);
        let again = d.observe(
            &event("198.51.100.7", 2, ThreatLevel::Critical, &reasons),
            block.until_ms,
        );
        assert!(matches!(again, Some(Verdict::Block(_))));
    }

    #[test]
    fn high_events_block_only_when_sustained_within_the_window() {
        let mut d = decider(BlockPolicy::default());
        let now = 5 * MINUTE_MS;
        // Five high events, but never five within 60 s of each other.
        for second in [0, 20, 40, 70, 95] {
            let v = d.observe(&event("203.0.113.9", second, ThreatLevel::High, &[]), now);
            assert_eq!(v, None, "at {second} s");
        }
        assert_eq!(
            d.observe(&event("203.0.113.9", 100, ThreatLevel::High, &[]), now),
            None
        );
        assert_eq!(
            d.observe(&event("203.0.113.9", 110, ThreatLevel::High, &[]), now),
            None
        );
        // 70, 95, 100, 110, 120: five within 60 s.
        let v = d.observe(&event("203.0.113.9", 120, ThreatLevel::High, &[]), now);
        let Some(Verdict::Block(block)) = v else {
            panic!("{v:?}");
        };
        assert_eq!(
            block.trigger,
            Trigger::Sustained {
                events: 5,
                window: Duration::from_secs(60)
            }
        );
        // Medium and low events never count.
        for second in 0..100 {
            assert_eq!(
                d.observe(
                    &event("203.0.113.10", second, ThreatLevel::Medium, &[]),
                    now
                ),
                None
            );
        }
    }

    #[test]
    fn allowed_addresses_are_reported_once_and_never_blocked() {
        let mut d = decider(BlockPolicy::default());
        let v = d.observe(&event("10.1.2.3", 0, ThreatLevel::Critical, &[]), 0);
        assert_eq!(
            v,
            Some(Verdict::Allowed {
                ip: "10.1.2.3".parse().expect("ip"),
                entry: "10.0.0.0/8".parse().expect("net"),
            })
        );
        assert_eq!(
            d.observe(&event("10.1.2.3", 1, ThreatLevel::Critical, &[]), 1),
            None
        );
    }

    #[test]
    fn new_blocks_per_minute_are_capped_and_the_rest_decided_again_later() {
        let mut d = decider(BlockPolicy {
            max_per_minute: 2,
            ..BlockPolicy::default()
        });
        let now = 7 * MINUTE_MS;
        let critical = |d: &mut Decider, ip: &str, at: i64| {
            d.observe(&event(ip, 0, ThreatLevel::Critical, &[]), at)
        };
        assert!(matches!(
            critical(&mut d, "192.0.2.1", now),
            Some(Verdict::Block(_))
        ));
        assert!(matches!(
            critical(&mut d, "192.0.2.2", now),
            Some(Verdict::Block(_))
        ));
        assert!(matches!(
            critical(&mut d, "192.0.2.3", now + 59_999),
            Some(Verdict::Throttled { .. })
        ));
        assert!(matches!(
            critical(&mut d, "192.0.2.3", now + MINUTE_MS),
            Some(Verdict::Block(_))
        ));
    }

    #[test]
    fn ipv6_addresses_block_their_128_bit_host() {
        let mut d = decider(BlockPolicy::default());
        let v = d.observe(&event("2001:db8::7", 0, ThreatLevel::Critical, &[]), 0);
        let Some(Verdict::Block(block)) = v else {
            panic!("{v:?}");
        };
        assert_eq!(block.net.to_string(), "2001:db8::7/128");
    }

    #[test]
    fn a_restored_block_is_not_made_again_and_expires_on_time() {
        let mut d = decider(BlockPolicy::default());
        let ip: IpAddr = "198.51.100.1".parse().expect("ip");
        d.restore(ip, 10 * MINUTE_MS);
        assert_eq!(
            d.observe(
                &event("198.51.100.1", 0, ThreatLevel::Critical, &[]),
                MINUTE_MS
            ),
            None
        );
        assert_eq!(d.expired(10 * MINUTE_MS), vec![ip]);
    }
}
