//! Explainable threat scoring: every point of a score comes with a reason
//! naming the rule that gave it (see `docs/threat-scoring.md`).
//!
//! The work is split the way the pipeline runs it: [`ThreatEngine::assess`]
//! is stateless and runs on parallel workers; [`WindowState::observe`] keeps
//! per-IP sliding windows and runs in one sequential stage in input order;
//! [`ThreatEngine::combine`] merges the two into the final [`Assessment`].

mod intel;
mod matcher;
mod rules;
mod window;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use seclake_format::Format;
use serde::Deserialize;

use intel::IntelList;
use matcher::KeyScanner;
use rules::{Rule, Rules};

pub use window::{Lookup, WindowFindings, WindowState};

/// The `[threat]` section of the seclake config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreatConfig {
    /// A rules file merged over (or, with `replace_defaults = true`, replacing)
    /// the shipped rules; `None` uses the shipped rules as they are.
    pub rules: Option<PathBuf>,
    /// IP intel lists; an IP on a list fires the rule `intel.<name>`.
    #[serde(default)]
    pub intel: Vec<IntelListConfig>,
}

/// One IP intel list: a file of IPs, CIDRs or ranges (FireHOL, Spamhaus DROP).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntelListConfig {
    /// Rule name suffix: a hit fires `intel.<name>` (ASCII letters, digits, `_`, `-`).
    pub name: String,
    /// The list file.
    pub path: PathBuf,
    /// Points for a hit (0..=100); `None` takes `intel.default_points` from the rules.
    pub points: Option<u8>,
}

/// Why threat rules or intel lists could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ThreatError {
    /// A rules or intel file could not be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A rules file is not valid TOML.
    #[error("rules file {file}: {source}")]
    RulesSyntax {
        /// The file (or the built-in defaults).
        file: String,
        /// The parse error, with line and column.
        source: Box<toml::de::Error>,
    },
    /// A rules file key has a wrong value, is missing or is unknown.
    #[error("rules file {file}: key `{key}`: {problem}")]
    Rule {
        /// The file (or the built-in defaults).
        file: String,
        /// The dotted key path, e.g. `waf.action.block`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An intel list entry in the `[threat]` config is invalid.
    #[error("threat.intel[{index}] ({name:?}): {problem}")]
    IntelConfig {
        /// Position in the `intel` array.
        index: usize,
        /// The list's configured name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A line of an intel list file is not an IP, CIDR or range.
    #[error("intel list `{list}` ({}) line {line}: {problem}", path.display())]
    IntelLine {
        /// The list's name.
        list: String,
        /// The list file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
}

/// Everything the stateless rules look at, borrowed from the parsed record.
/// `Default` is an empty WAF event, which scores 0.
#[derive(Debug, Clone, Copy)]
pub struct Signals<'a> {
    /// What the record is; only app records are scanned for leaked keys and
    /// scored by status.
    pub format: Format,
    /// The client address, matched against intel lists.
    pub client_ip: Option<IpAddr>,
    /// WAF final action, e.g. `BLOCK` (case-insensitive).
    pub waf_action: Option<&'a str>,
    /// WAF terminating rule id, searched for managed group names.
    pub terminating_rule_id: Option<&'a str>,
    /// WAF terminating rule type; `RATE_BASED` counts as a rate-based hit.
    pub terminating_rule_type: Option<&'a str>,
    /// `ruleGroupId`s of the rule groups that matched, e.g. `AWS#AWSManagedRulesSQLiRuleSet`.
    pub rule_groups: &'a [&'a str],
    /// WAF labels, e.g. `awswaf:managed:aws:sql-database:SQLi_QueryArguments`.
    pub labels: &'a [&'a str],
    /// A rate-based rule matched.
    pub rate_based_hit: bool,
    /// The HTTP `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// Falco priority, e.g. `Critical` (case-insensitive).
    pub falco_priority: Option<&'a str>,
    /// Falco rule tags, e.g. `mitre_privilege_escalation`.
    pub falco_tags: &'a [&'a str],
    /// GuardDuty's severity label of a finding: `low`, `medium`, `high` or `critical`.
    pub guardduty_severity: Option<&'a str>,
    /// HTTP status returned (app logs).
    pub status: Option<u16>,
    /// The raw app record, scanned for leaked AWS access key ids (app only).
    pub text: &'a [u8],
}

impl Default for Signals<'_> {
    fn default() -> Self {
        Signals {
            format: Format::Waf,
            client_ip: None,
            waf_action: None,
            terminating_rule_id: None,
            terminating_rule_type: None,
            rule_groups: &[],
            labels: &[],
            rate_based_hit: false,
            user_agent: None,
            falco_priority: None,
            falco_tags: &[],
            guardduty_severity: None,
            status: None,
            text: &[],
        }
    }
}

/// Severity bucket of a score; ordered `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ThreatLevel {
    /// Below the `levels.medium` score.
    #[default]
    Low,
    /// At least `levels.medium`.
    Medium,
    /// At least `levels.high`.
    High,
    /// At least `levels.critical`, or forced by a rule's `min_level`.
    Critical,
}

impl ThreatLevel {
    /// Lower-case name: `"low"`, `"medium"`, `"high"` or `"critical"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ThreatLevel::Low => "low",
            ThreatLevel::Medium => "medium",
            ThreatLevel::High => "high",
            ThreatLevel::Critical => "critical",
        }
    }

    /// The level named `"low"`, `"medium"`, `"high"` or `"critical"`.
    pub fn from_name(name: &str) -> Option<ThreatLevel> {
        [
            ThreatLevel::Low,
            ThreatLevel::Medium,
            ThreatLevel::High,
            ThreatLevel::Critical,
        ]
        .into_iter()
        .find(|l| l.as_str() == name)
    }
}

impl fmt::Display for ThreatLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One fired rule: its id (the rules-file key path, e.g. `waf.group.sqli`)
/// and the points it gave. Displays as `waf.group.sqli +25`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason {
    /// Rule id; interned for the life of the process.
    pub rule: &'static str,
    /// Points added to the score.
    pub points: u8,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} +{}", self.rule, self.points)
    }
}

/// A score (0..=100), its level and the reasons, in rule order.
/// A benign event's assessment holds an empty, unallocated `reasons`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assessment {
    /// Sum of the reasons' points, capped at 100.
    pub score: u8,
    /// Level of the score, raised to any fired rule's `min_level`.
    pub level: ThreatLevel,
    /// Fired rules in evaluation order.
    pub reasons: Vec<Reason>,
}

/// Which `[ua.*]` rules recent user agents matched: a direct-mapped table
/// keyed by a seeded hash of the user agent, one per worker.
pub struct UaVerdicts {
    seed: u64,
    /// `(hash, mask of matching rules | VALID)`.
    slots: Box<[(u64, u64)]>,
}

impl UaVerdicts {
    const SLOTS: usize = 1024;
    const VALID: u64 = 1 << 63;
    /// Rules a mask can hold beside the valid bit.
    const MAX_RULES: usize = 63;

    /// An empty table. The hash seed is random, so nobody can choose a user
    /// agent that collides with another and inherits its verdict.
    pub fn new() -> UaVerdicts {
        use std::hash::BuildHasher as _;
        UaVerdicts {
            seed: std::hash::RandomState::new().hash_one(0u8),
            slots: vec![(0, 0); Self::SLOTS].into_boxed_slice(),
        }
    }

    fn get_or_insert(&mut self, ua: &str, matching: impl FnOnce(&str) -> u64) -> u64 {
        let hash = xxhash_rust::xxh3::xxh3_64_with_seed(ua.as_bytes(), self.seed);
        let slot = &mut self.slots[hash as usize % Self::SLOTS];
        if slot.0 == hash && slot.1 & Self::VALID != 0 {
            return slot.1 & !Self::VALID;
        }
        let mask = matching(ua);
        *slot = (hash, mask | Self::VALID);
        mask
    }
}

impl Default for UaVerdicts {
    fn default() -> UaVerdicts {
        UaVerdicts::new()
    }
}

impl fmt::Debug for UaVerdicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UaVerdicts").finish_non_exhaustive()
    }
}

/// Compiled rules and intel lists; `Send + Sync`, built once and shared.
#[derive(Debug)]
pub struct ThreatEngine {
    rules: Rules,
    intel: Vec<IntelList>,
    keys: KeyScanner,
}

impl ThreatEngine {
    /// Loads the rules (shipped defaults merged with `cfg.rules`) and intel lists.
    pub fn from_config(cfg: &ThreatConfig) -> Result<ThreatEngine, ThreatError> {
        let rules = match &cfg.rules {
            None => rules::load(None)?,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ThreatError::Io {
                    path: path.clone(),
                    source,
                })?;
                rules::load(Some((path, &text)))?
            }
        };
        let intel = load_intel(&cfg.intel, &rules)?;
        Ok(ThreatEngine {
            rules,
            intel,
            keys: KeyScanner::new(),
        })
    }

    /// The shipped rules with no intel lists.
    pub fn defaults() -> ThreatEngine {
        ThreatEngine {
            rules: rules::shipped(),
            intel: Vec::new(),
            keys: KeyScanner::new(),
        }
    }

    /// Scores one event with the stateless rules (everything but the windows).
    pub fn assess(&self, s: &Signals<'_>) -> Assessment {
        self.assess_with(s, None)
    }

    /// [`ThreatEngine::assess`], remembering user-agent verdicts in `ua`: a
    /// worker sees the same few user agents over and over.
    pub fn assess_cached(&self, s: &Signals<'_>, ua: &mut UaVerdicts) -> Assessment {
        self.assess_with(s, Some(ua))
    }

    fn assess_with(&self, s: &Signals<'_>, cache: Option<&mut UaVerdicts>) -> Assessment {
        let r = &self.rules;
        let mut acc = Acc::default();

        if let Some(action) = s.waf_action
            && let Some((_, rule)) = r
                .waf_actions
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(action))
        {
            acc.fire(rule);
        }
        let groups = matched_groups(&r.waf_group_names, s.rule_groups, s.terminating_rule_id);
        if groups != 0 {
            for (i, rule) in r.waf_groups.iter().enumerate() {
                if groups & (1 << i) != 0 {
                    acc.fire(rule);
                }
            }
        }
        if !s.labels.is_empty() {
            for (rule, m) in &r.waf_labels {
                if s.labels.iter().any(|l| m.is_match(l.as_bytes())) {
                    acc.fire(rule);
                }
            }
        }
        let rate_based = s.rate_based_hit
            || s.terminating_rule_type
                .is_some_and(|t| t.eq_ignore_ascii_case("RATE_BASED"));
        if rate_based && let Some(rule) = &r.waf_rate_based {
            acc.fire(rule);
        }

        if let Some(ua) = s.user_agent {
            let matching = |ua: &str| {
                r.ua.iter()
                    .enumerate()
                    .filter(|(_, (_, m))| m.is_match(ua.as_bytes()))
                    .fold(0u64, |mask, (i, _)| mask | 1 << i)
            };
            let mask = match cache {
                Some(cache) if r.ua.len() <= UaVerdicts::MAX_RULES => {
                    cache.get_or_insert(ua, matching)
                }
                _ => matching(ua),
            };
            for (i, (rule, _)) in r.ua.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    acc.fire(rule);
                }
            }
        }

        if let Some(p) = s.falco_priority {
            let p = if p.eq_ignore_ascii_case("info") {
                "informational"
            } else {
                p
            };
            if let Some((_, rule)) = r
                .falco_priority
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(p))
            {
                acc.fire(rule);
            }
        }
        if !s.falco_tags.is_empty() {
            for (tag, rule) in &r.falco_tags {
                if s.falco_tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
                    acc.fire(rule);
                }
            }
        }

        if let Some(label) = s.guardduty_severity
            && let Some((_, rule)) = r
                .guardduty_severity
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(label))
        {
            acc.fire(rule);
        }

        if let Some(ip) = s.client_ip
            && !self.intel.is_empty()
        {
            let ip = ip.to_canonical();
            for list in &self.intel {
                if list.contains(ip) {
                    acc.fire(&list.rule);
                }
            }
        }

        if s.format == Format::App {
            if let Some(status) = s.status
                && let Some((_, rule)) = r.app_status.iter().find(|(code, _)| *code == status)
            {
                acc.fire(rule);
            }
            if let Some(rule) = &r.app_leaked_key
                && self.keys.contains_key(s.text)
            {
                acc.fire(rule);
            }
        }

        acc.finish(self)
    }

    /// A fresh, empty per-IP window state using the rules' `[window]` settings.
    pub fn windows(&self) -> WindowState {
        WindowState::new(self.rules.window.clone())
    }

    /// The level of a score by the rules' `[levels]` thresholds.
    pub fn level_for(&self, score: u8) -> ThreatLevel {
        let l = &self.rules.levels;
        if score >= l.critical {
            ThreatLevel::Critical
        } else if score >= l.high {
            ThreatLevel::High
        } else if score >= l.medium {
            ThreatLevel::Medium
        } else {
            ThreatLevel::Low
        }
    }

    /// Adds an event's window findings to its stateless assessment: points
    /// (capped at 100), level and reasons (window reasons last).
    pub fn combine(&self, mut assessment: Assessment, findings: &WindowFindings) -> Assessment {
        if findings.is_empty() {
            return assessment;
        }
        let sum = u16::from(assessment.score) + u16::from(findings.points());
        assessment.score = sum.min(100) as u8;
        assessment.level = assessment
            .level
            .max(findings.min_level())
            .max(self.level_for(assessment.score));
        assessment.reasons.extend_from_slice(findings.reasons());
        assessment
    }

    /// Number of loaded intel lists.
    pub fn intel_lists(&self) -> usize {
        self.intel.len()
    }
}

/// Accumulates fired rules; allocates only when the first rule fires.
#[derive(Default)]
struct Acc {
    sum: u16,
    min_level: ThreatLevel,
    reasons: Vec<Reason>,
}

impl Acc {
    fn fire(&mut self, rule: &Rule) {
        self.sum = self.sum.saturating_add(u16::from(rule.points));
        self.min_level = self.min_level.max(rule.min_level);
        self.reasons.push(Reason {
            rule: rule.id,
            points: rule.points,
        });
    }

    fn finish(self, engine: &ThreatEngine) -> Assessment {
        let score = self.sum.min(100) as u8;
        Assessment {
            score,
            level: engine.level_for(score).max(self.min_level),
            reasons: self.reasons,
        }
    }
}

/// The bitmask of the group rules whose names appear as a `#`-separated part
/// of a ruleGroupId (`AWS#AWSManagedRulesSQLiRuleSet#Version_2.0`) or a
/// `-`/`#`-separated part of the terminating rule id
/// (`AWS-AWSManagedRulesSQLiRuleSet`).
fn matched_groups(names: &[(String, u64)], groups: &[&str], terminating: Option<&str>) -> u64 {
    let mask = |part: &str| {
        names
            .iter()
            .filter(|(n, _)| n == part)
            .fold(0, |acc, (_, m)| acc | m)
    };
    let mut fired = 0;
    for g in groups {
        fired |= g.split('#').map(mask).fold(0, |a, b| a | b);
    }
    if let Some(t) = terminating {
        fired |= t.split(['-', '#']).map(mask).fold(0, |a, b| a | b);
    }
    fired
}

fn load_intel(lists: &[IntelListConfig], rules: &Rules) -> Result<Vec<IntelList>, ThreatError> {
    let mut out: Vec<IntelList> = Vec::with_capacity(lists.len());
    for (index, cfg) in lists.iter().enumerate() {
        let bad = |problem: String| ThreatError::IntelConfig {
            index,
            name: cfg.name.clone(),
            problem,
        };
        if !rules::is_rule_name(&cfg.name) {
            return Err(bad(
                "name must be non-empty ASCII letters, digits, `_` or `-`".into(),
            ));
        }
        if lists[..index].iter().any(|l| l.name == cfg.name) {
            return Err(bad("name is used by an earlier list".into()));
        }
        let points = cfg.points.unwrap_or(rules.intel_default_points);
        if points > 100 {
            return Err(bad(format!("points must be 0..=100, got {points}")));
        }
        let rule = Rule {
            id: rules::intern(&format!("intel.{}", cfg.name)),
            points,
            min_level: ThreatLevel::Low,
        };
        let list = IntelList::load(&cfg.name, &cfg.path, rule)?;
        tracing::info!(
            list = %cfg.name,
            path = %cfg.path.display(),
            entries = list.entries(),
            ranges = list.ranges(),
            "loaded threat intel list"
        );
        if list.ranges() == 0 {
            tracing::warn!(list = %cfg.name, path = %cfg.path.display(), "threat intel list is empty");
        }
        // Loaded even with 0 points so that a broken file is still reported.
        if rule.points > 0 {
            out.push(list);
        }
    }
    Ok(out)
}
