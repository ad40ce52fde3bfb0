//! The rules file: the shipped defaults, a user file merged over them, and
//! compiling the merged TOML tree into [`Rules`] with errors naming the key.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use toml::{Table, Value};

use super::matcher::{AnySubstring, CiMatcher};
use super::window::{BlockRatioRule, RateRule, ScannerRule, WindowRules};
use super::{ThreatError, ThreatLevel};

const DEFAULT_RULES: &str = include_str!("default_rules.toml");
const BUILTIN: &str = "<built-in default_rules.toml>";

const WAF_ACTIONS: &[&str] = &["allow", "block", "count", "captcha", "challenge"];
const FALCO_PRIORITIES: &[&str] = &[
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "informational",
    "debug",
];
/// GuardDuty's severity labels (`guardduty.severity.*` keys).
const GUARDDUTY_SEVERITIES: &[&str] = &["low", "medium", "high", "critical"];
/// Used when a rules file with `replace_defaults = true` sets no `window.max_ips`.
const DEFAULT_MAX_IPS: usize = 65_536;
/// Used when a rules file with `replace_defaults = true` sets no `intel.default_points`.
const DEFAULT_INTEL_POINTS: u8 = 30;

/// One compiled rule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub id: &'static str,
    pub points: u8,
    pub min_level: ThreatLevel,
}

impl Rule {
    /// A rule with no points and no forced level would only add noise.
    fn enabled(&self) -> bool {
        self.points > 0 || self.min_level > ThreatLevel::Low
    }
}

/// A rule that fires when any of its patterns matches.
#[derive(Debug)]
pub(crate) struct MatchRule {
    pub rule: Rule,
    pub patterns: Vec<String>,
}

/// Minimum scores of the levels above low.
#[derive(Debug)]
pub(crate) struct Levels {
    pub medium: u8,
    pub high: u8,
    pub critical: u8,
}

/// The compiled rules; disabled rules are left out.
#[derive(Debug)]
pub(crate) struct Rules {
    pub levels: Levels,
    /// Lower-case action name and its rule.
    pub waf_actions: Vec<(String, Rule)>,
    pub waf_groups: Vec<Rule>,
    /// Each group name of `waf_groups` with the bitmask of the rules naming it.
    pub waf_group_names: Vec<(String, u64)>,
    pub waf_labels: Vec<(Rule, AnySubstring)>,
    pub waf_rate_based: Option<Rule>,
    pub ua: Vec<(Rule, CiMatcher)>,
    pub falco_priority: Vec<(String, Rule)>,
    pub falco_tags: Vec<(String, Rule)>,
    /// GuardDuty severity label and its rule.
    pub guardduty_severity: Vec<(String, Rule)>,
    pub app_status: Vec<(u16, Rule)>,
    pub app_leaked_key: Option<Rule>,
    pub intel_default_points: u8,
    pub window: WindowRules,
}

/// The shipped rules.
pub(crate) fn shipped() -> Rules {
    // The embedded file is part of the build and covered by a test.
    load(None).expect("embedded default_rules.toml is valid")
}

/// Loads the shipped rules, with `user` (path, contents) merged over them.
pub(crate) fn load(user: Option<(&Path, &str)>) -> Result<Rules, ThreatError> {
    let mut tree = parse(BUILTIN, DEFAULT_RULES)?;
    let mut file = BUILTIN.to_owned();
    if let Some((path, text)) = user {
        file = path.display().to_string();
        let mut over = parse(&file, text)?;
        let replace = match over.remove("replace_defaults") {
            None => false,
            Some(Value::Boolean(b)) => b,
            Some(v) => {
                return Err(Cx { file: &file }.err(
                    "replace_defaults",
                    format!("expected true or false, got {}", describe(&v)),
                ));
            }
        };
        if replace {
            tree = over;
        } else {
            merge(&mut tree, over);
        }
    }
    Cx { file: &file }.rules(&tree)
}

fn parse(file: &str, text: &str) -> Result<Table, ThreatError> {
    toml::from_str(text).map_err(|e| ThreatError::RulesSyntax {
        file: file.to_owned(),
        source: Box::new(e),
    })
}

/// Deep-merges tables; any other value in `over` replaces the one in `base`.
fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// True for a name usable as the last part of a rule id.
pub(crate) fn is_rule_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Returns a `'static` copy of `s`, leaking each distinct string once per
/// process, so that [`super::Reason`] is `Copy` and never allocates.
pub(crate) fn intern(s: &str) -> &'static str {
    static SET: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut set = SET.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(&known) = set.get(s) {
        return known;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A section's entries by name, so that rule order doesn't depend on whether
/// `toml` was built with `preserve_order`.
fn sorted(t: Option<&Table>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = t.into_iter().flatten().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

/// A value for an error message.
fn describe(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::String(s) if s.len() <= 40 => format!("{s:?}"),
        other => format!("a {}", other.type_str()),
    }
}

/// Compiles one rules tree; `file` names it in errors.
struct Cx<'f> {
    file: &'f str,
}

impl Cx<'_> {
    fn err(&self, key: &str, problem: impl Into<String>) -> ThreatError {
        ThreatError::Rule {
            file: self.file.to_owned(),
            key: key.to_owned(),
            problem: problem.into(),
        }
    }

    fn keys(&self, t: &Table, path: &str, allowed: &[&str]) -> Result<(), ThreatError> {
        match t.keys().filter(|k| !allowed.contains(&k.as_str())).min() {
            Some(k) => Err(self.err(
                &join(path, k),
                format!("unknown key (expected one of: {})", allowed.join(", ")),
            )),
            None => Ok(()),
        }
    }

    fn table<'t>(&self, v: &'t Value, key: &str) -> Result<&'t Table, ThreatError> {
        match v {
            Value::Table(t) => Ok(t),
            other => Err(self.err(key, format!("expected a table, got {}", describe(other)))),
        }
    }

    fn opt_table<'t>(
        &self,
        t: &'t Table,
        path: &str,
        key: &str,
    ) -> Result<Option<&'t Table>, ThreatError> {
        t.get(key)
            .map(|v| self.table(v, &join(path, key)))
            .transpose()
    }

    fn req<'t>(&self, t: &'t Table, path: &str, key: &str) -> Result<&'t Value, ThreatError> {
        t.get(key)
            .ok_or_else(|| self.err(&join(path, key), "missing"))
    }

    fn int(&self, v: &Value, key: &str, min: i64, max: i64) -> Result<i64, ThreatError> {
        match v {
            Value::Integer(i) if (min..=max).contains(i) => Ok(*i),
            other => Err(self.err(
                key,
                format!("expected an integer {min}..={max}, got {}", describe(other)),
            )),
        }
    }

    fn points(&self, v: &Value, key: &str) -> Result<u8, ThreatError> {
        match v {
            Value::Integer(i) if (0..=100).contains(i) => Ok(*i as u8),
            other => Err(self.err(
                key,
                format!(
                    "expected points (an integer 0..=100) or a table {{ points, min_level }}, got {}",
                    describe(other)
                ),
            )),
        }
    }

    fn level(&self, v: &Value, key: &str) -> Result<ThreatLevel, ThreatError> {
        v.as_str().and_then(ThreatLevel::from_name).ok_or_else(|| {
            self.err(
                key,
                format!(
                    "expected \"low\", \"medium\", \"high\" or \"critical\", got {}",
                    describe(v)
                ),
            )
        })
    }

    /// A rule written as points or as `{ points, min_level }`.
    fn rule(&self, v: &Value, id: &str) -> Result<Rule, ThreatError> {
        match v {
            Value::Table(t) => self.rule_fields(t, id, &[]),
            other => Ok(Rule {
                id: intern(id),
                points: self.points(other, id)?,
                min_level: ThreatLevel::Low,
            }),
        }
    }

    /// The `points` and `min_level` of a rule table that may also hold `extra` keys.
    fn rule_fields(&self, t: &Table, id: &str, extra: &[&str]) -> Result<Rule, ThreatError> {
        let allowed: Vec<&str> = ["points", "min_level"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        self.keys(t, id, &allowed)?;
        let points = self.req(t, id, "points")?;
        let min_level = match t.get("min_level") {
            Some(v) => self.level(v, &join(id, "min_level"))?,
            None => ThreatLevel::Low,
        };
        Ok(Rule {
            id: intern(id),
            points: self.points(points, &join(id, "points"))?,
            min_level,
        })
    }

    /// A rule table `{ points, min_level, match = [..] }`.
    fn match_rule(&self, v: &Value, id: &str) -> Result<MatchRule, ThreatError> {
        let t = self.table(v, id)?;
        let rule = self.rule_fields(t, id, &["match"])?;
        let key = join(id, "match");
        let Value::Array(items) = self.req(t, id, "match")? else {
            return Err(self.err(&key, "expected an array of strings"));
        };
        if items.is_empty() {
            return Err(self.err(&key, "must not be empty"));
        }
        let patterns = items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                other => Err(self.err(
                    &format!("{key}[{i}]"),
                    format!("expected a non-empty string, got {}", describe(other)),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MatchRule { rule, patterns })
    }

    /// The match rules of a section whose keys name them, e.g. `[waf.group]`.
    fn match_rules(
        &self,
        section: Option<&Table>,
        path: &str,
    ) -> Result<Vec<MatchRule>, ThreatError> {
        let mut out = Vec::new();
        for (name, v) in sorted(section) {
            let id = self.rule_id(path, name)?;
            let m = self.match_rule(v, &id)?;
            if m.rule.enabled() {
                out.push(m);
            }
        }
        Ok(out)
    }

    fn rule_id(&self, path: &str, name: &str) -> Result<String, ThreatError> {
        let id = join(path, name);
        if is_rule_name(name) {
            Ok(id)
        } else {
            Err(self.err(&id, "rule names are 1-64 ASCII letters, digits, `_` or `-`"))
        }
    }

    fn rules(&self, t: &Table) -> Result<Rules, ThreatError> {
        self.keys(
            t,
            "",
            &[
                "levels",
                "waf",
                "ua",
                "falco",
                "guardduty",
                "app",
                "intel",
                "window",
            ],
        )?;
        let levels = self.levels(t)?;

        let waf = self.opt_table(t, "", "waf")?;
        let mut waf_actions = Vec::new();
        let mut waf_rate_based = None;
        let (mut waf_groups, mut waf_group_names, mut waf_labels) =
            (Vec::new(), Vec::<(String, u64)>::new(), Vec::new());
        if let Some(waf) = waf {
            self.keys(waf, "waf", &["action", "group", "label", "rate_based"])?;
            for (name, v) in sorted(self.opt_table(waf, "waf", "action")?) {
                let id = join("waf.action", name);
                if !WAF_ACTIONS.contains(&name.as_str()) {
                    return Err(self.err(
                        &id,
                        format!(
                            "unknown WAF action (expected one of: {})",
                            WAF_ACTIONS.join(", ")
                        ),
                    ));
                }
                let rule = self.rule(v, &id)?;
                if rule.enabled() {
                    waf_actions.push((name.clone(), rule));
                }
            }
            let groups = self.match_rules(self.opt_table(waf, "waf", "group")?, "waf.group")?;
            if groups.len() > 64 {
                return Err(self.err("waf.group", "at most 64 rules"));
            }
            for (i, m) in groups.into_iter().enumerate() {
                for name in m.patterns {
                    match waf_group_names.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, mask)) => *mask |= 1 << i,
                        None => waf_group_names.push((name, 1 << i)),
                    }
                }
                waf_groups.push(m.rule);
            }
            waf_labels = self
                .match_rules(self.opt_table(waf, "waf", "label")?, "waf.label")?
                .into_iter()
                .map(|m| (m.rule, AnySubstring::new(&m.patterns)))
                .collect();
            if let Some(v) = waf.get("rate_based") {
                waf_rate_based = Some(self.rule(v, "waf.rate_based")?).filter(Rule::enabled);
            }
        }

        let mut ua = Vec::new();
        for m in self.match_rules(self.opt_table(t, "", "ua")?, "ua")? {
            for (i, p) in m.patterns.iter().enumerate() {
                if p.len() < 2 || !p.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                    return Err(self.err(
                        &format!("{}.match[{i}]", m.rule.id),
                        "user-agent patterns are at least 2 printable ASCII characters",
                    ));
                }
            }
            ua.push((m.rule, CiMatcher::new(&m.patterns)));
        }

        let (mut falco_priority, mut falco_tags) = (Vec::new(), Vec::new());
        if let Some(falco) = self.opt_table(t, "", "falco")? {
            self.keys(falco, "falco", &["priority", "tag"])?;
            for (name, v) in sorted(self.opt_table(falco, "falco", "priority")?) {
                let id = join("falco.priority", name);
                if !FALCO_PRIORITIES.contains(&name.as_str()) {
                    return Err(self.err(
                        &id,
                        format!(
                            "unknown Falco priority (expected one of: {})",
                            FALCO_PRIORITIES.join(", ")
                        ),
                    ));
                }
                let rule = self.rule(v, &id)?;
                if rule.enabled() {
                    falco_priority.push((name.clone(), rule));
                }
            }
            for (name, v) in sorted(self.opt_table(falco, "falco", "tag")?) {
                let rule = self.rule(v, &self.rule_id("falco.tag", name)?)?;
                if rule.enabled() {
                    falco_tags.push((name.clone(), rule));
                }
            }
        }

        let mut guardduty_severity = Vec::new();
        if let Some(guardduty) = self.opt_table(t, "", "guardduty")? {
            self.keys(guardduty, "guardduty", &["severity"])?;
            for (name, v) in sorted(self.opt_table(guardduty, "guardduty", "severity")?) {
                let id = join("guardduty.severity", name);
                if !GUARDDUTY_SEVERITIES.contains(&name.as_str()) {
                    return Err(self.err(
                        &id,
                        format!(
                            "unknown GuardDuty severity (expected one of: {})",
                            GUARDDUTY_SEVERITIES.join(", ")
                        ),
                    ));
                }
                let rule = self.rule(v, &id)?;
                if rule.enabled() {
                    guardduty_severity.push((name.clone(), rule));
                }
            }
        }

        let mut app_status = Vec::new();
        let mut app_leaked_key = None;
        if let Some(app) = self.opt_table(t, "", "app")? {
            self.keys(app, "app", &["status", "leaked_aws_key"])?;
            for (code, v) in sorted(self.opt_table(app, "app", "status")?) {
                let id = join("app.status", code);
                let status = code
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (100..=599).contains(c))
                    .ok_or_else(|| self.err(&id, "expected an HTTP status code 100..=599"))?;
                let rule = self.rule(v, &id)?;
                if rule.enabled() {
                    app_status.push((status, rule));
                }
            }
            if let Some(v) = app.get("leaked_aws_key") {
                app_leaked_key = Some(self.rule(v, "app.leaked_aws_key")?).filter(Rule::enabled);
            }
        }

        let mut intel_default_points = DEFAULT_INTEL_POINTS;
        if let Some(intel) = self.opt_table(t, "", "intel")? {
            self.keys(intel, "intel", &["default_points"])?;
            if let Some(v) = intel.get("default_points") {
                intel_default_points = self.int(v, "intel.default_points", 0, 100)? as u8;
            }
        }

        Ok(Rules {
            levels,
            waf_actions,
            waf_groups,
            waf_group_names,
            waf_labels,
            waf_rate_based,
            ua,
            falco_priority,
            falco_tags,
            guardduty_severity,
            app_status,
            app_leaked_key,
            intel_default_points,
            window: self.window(t)?,
        })
    }

    fn levels(&self, t: &Table) -> Result<Levels, ThreatError> {
        let lv = self.table(self.req(t, "", "levels")?, "levels")?;
        self.keys(lv, "levels", &["medium", "high", "critical"])?;
        let get = |k: &str| -> Result<u8, ThreatError> {
            let key = join("levels", k);
            Ok(self.int(self.req(lv, "levels", k)?, &key, 1, 100)? as u8)
        };
        let levels = Levels {
            medium: get("medium")?,
            high: get("high")?,
            critical: get("critical")?,
        };
        if !(levels.medium < levels.high && levels.high < levels.critical) {
            return Err(self.err("levels", "expected medium < high < critical"));
        }
        Ok(levels)
    }

    fn window(&self, t: &Table) -> Result<WindowRules, ThreatError> {
        let mut out = WindowRules {
            max_ips: DEFAULT_MAX_IPS,
            rate: None,
            block_ratio: None,
            scanner: None,
        };
        let Some(w) = self.opt_table(t, "", "window")? else {
            return Ok(out);
        };
        self.keys(w, "window", &["max_ips", "rate", "block_ratio", "scanner"])?;
        if let Some(v) = w.get("max_ips") {
            out.max_ips = self.int(v, "window.max_ips", 1, 10_000_000)? as usize;
        }
        if let Some(r) = self.opt_table(w, "window", "rate")? {
            let id = "window.rate";
            let rule = self.rule_fields(r, id, &["max_per_minute"])?;
            let max = self.int(
                self.req(r, id, "max_per_minute")?,
                "window.rate.max_per_minute",
                1,
                1_000_000,
            )?;
            out.rate = Some(RateRule {
                rule,
                max_per_minute: max as u32,
            })
            .filter(|r| r.rule.enabled());
        }
        if let Some(r) = self.opt_table(w, "window", "block_ratio")? {
            let id = "window.block_ratio";
            let rule = self.rule_fields(r, id, &["ratio", "min_requests"])?;
            let ratio_key = "window.block_ratio.ratio";
            let ratio = match self.req(r, id, "ratio")? {
                Value::Float(f) if (0.0..1.0).contains(f) => *f,
                Value::Integer(0) => 0.0,
                other => {
                    return Err(self.err(
                        ratio_key,
                        format!("expected a number 0 <= ratio < 1, got {}", describe(other)),
                    ));
                }
            };
            let min = self.int(
                self.req(r, id, "min_requests")?,
                "window.block_ratio.min_requests",
                1,
                1_000_000,
            )?;
            out.block_ratio = Some(BlockRatioRule {
                rule,
                ratio_permille: (ratio * 1000.0).round() as u32,
                min_requests: min as u32,
            })
            .filter(|r| r.rule.enabled());
        }
        if let Some(r) = self.opt_table(w, "window", "scanner")? {
            let id = "window.scanner";
            let rule = self.rule_fields(r, id, &["max_distinct_uris"])?;
            let max = self.int(
                self.req(r, id, "max_distinct_uris")?,
                "window.scanner.max_distinct_uris",
                1,
                500,
            )?;
            out.scanner = Some(ScannerRule::new(rule, max as u32)).filter(|r| r.rule.enabled());
        }
        Ok(out)
    }
}
