//! The seclake TOML config: one section per component, each owned by the
//! crate that uses it. `${VAR}` and `${VAR:-default}` in string values expand
//! from the environment.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use seclake_enrich::geoip::GeoIpConfig;
use seclake_enrich::threat::ThreatConfig;
use seclake_enrich::time_window::{self, TimeWindow};
pub use seclake_ingest::SourceConfig;
use seclake_sink::{
    AlertOutputs, AlertRule, AlertSinkConfig, DeadLetterConfig, LakeConfig, OpenSearchConfig,
    SinkSpec,
};
use serde::Deserialize;

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[[source]]` entries: where records come from.
    #[serde(rename = "source", default)]
    pub sources: Vec<SourceConfig>,
    /// `[geoip]`: databases for country, city and ASN.
    #[serde(default)]
    pub geoip: GeoIpConfig,
    /// `[threat]`: scoring rules and IP intel lists.
    #[serde(default)]
    pub threat: ThreatConfig,
    /// `[lake]`: the Parquet lake.
    pub lake: LakeConfig,
    /// `[dlq]`: the dead-letter output.
    pub dlq: DeadLetterConfig,
    /// `[opensearch]`: index every event into OpenSearch.
    #[serde(default)]
    pub opensearch: Option<OpenSearchConfig>,
    /// `[metrics]`: the Prometheus and health endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[pipeline]`: worker threads and queue sizes.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// `[response]`: block attacking addresses in an AWS WAF IP set.
    #[serde(default)]
    pub response: Option<seclake_sink::ResponseConfig>,
    /// `[report]`: the daily report (`report run`); the pipeline ignores it.
    #[serde(default)]
    pub report: Option<seclake_queries::config::ReportConfig>,
    /// `[alerts]`: where alerts go (Slack, SNS).
    #[serde(default)]
    pub alerts: Option<AlertOutputs>,
    /// `[[alert]]` entries: which events and response decisions are alerted.
    #[serde(default)]
    pub alert: Vec<AlertRule>,
    /// The alert sink's spec: `alerts` and `alert` together, filled in by
    /// the loader.
    #[serde(skip)]
    pub alerting: AlertSinkConfig,
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` (Prometheus text) and `/healthz` here, e.g.
    /// `127.0.0.1:9898`. Off when unset.
    pub address: Option<SocketAddr>,
}

/// `[pipeline]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Parse/enrich worker threads (default: the number of cores).
    pub workers: Option<usize>,
    /// Batches queued between stages (default 4 per worker); bounds memory.
    pub queue: Option<usize>,
    /// How much lower than the process the workers are scheduled (Linux nice
    /// increment, 0-19, default 5), so that the ordered stages after them
    /// (window scoring, the lake) run as soon as a batch is ready. 0 turns it off.
    pub worker_nice: Option<i32>,
    /// How far after its ingest time an event may be, e.g. `"1h"` (the
    /// default); later ones are dead letters.
    #[serde(default, deserialize_with = "time_window::config::duration")]
    pub max_future_skew: Option<Duration>,
    /// How far before its ingest time an event may be, e.g. `"7d"`; older
    /// ones are dead letters. `"off"` (the default) keeps every age.
    #[serde(default, deserialize_with = "time_window::config::duration_or_off")]
    pub max_age: Option<Duration>,
}

impl PipelineConfig {
    /// Which event times the workers keep.
    pub fn time_window(&self) -> TimeWindow {
        TimeWindow {
            max_future_skew: self
                .max_future_skew
                .unwrap_or(TimeWindow::DEFAULT_MAX_FUTURE_SKEW),
            max_age: self.max_age,
        }
    }
}

/// A config problem, naming the key or the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML.
    #[error("{path}: {message}")]
    Syntax {
        /// The config file.
        path: String,
        /// toml's message, with line and column.
        message: String,
    },
    /// A key has the wrong type, is unknown or missing.
    #[error("{path}: key `{key}`: {message}")]
    Key {
        /// The config file.
        path: String,
        /// The dotted key, e.g. `lake.zstd_level`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// `${VAR}` names an unset variable.
    #[error(
        "{path}: key `{key}`: environment variable {var} is not set (use ${{{var}:-default}} for a default)"
    )]
    Env {
        /// The config file.
        path: String,
        /// The key whose value names it.
        key: String,
        /// The variable.
        var: String,
    },
    /// The config parsed but does not make sense.
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        /// The config file.
        path: String,
        /// The key.
        key: String,
        /// Why, and what to do.
        message: String,
    },
}

impl Config {
    /// Reads, expands and deserialises a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Config::parse(&text, &shown)
    }

    /// Parses config text; `path` only names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let table = expanded_table(text, path)?;
        let mut config: Config = section(&table, path)?;
        if let Some(opensearch) = &mut config.opensearch {
            opensearch.dead_letters = Some(config.dlq.clone());
        }
        if let Some(response) = &mut config.response {
            response.lake = Some(config.lake.clone());
        }
        config.alerting = AlertSinkConfig {
            outputs: config.alerts.clone().unwrap_or_default(),
            rules: config.alert.clone(),
        };
        if let Some(response) = &mut config.response {
            response.alerts = Some(config.alerting.clone());
        }
        config.check(path)?;
        Ok(config)
    }

    /// Checks what serde cannot: there is something to read, and values are sane.
    fn check(&self, path: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.to_owned(),
        };
        if self.sources.is_empty() {
            return Err(invalid("source", "no [[source]] entry: add at least one"));
        }
        // A resource only one source may hold: stdin, a Kafka static member id.
        let mut claimed: Vec<(String, usize)> = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            let spec = source.spec();
            spec.check()
                .map_err(|e| invalid(&format!("source[{i}].{}", e.key), &e.message))?;
            if let Some(claim) = spec.exclusive() {
                if let Some((_, first)) = claimed.iter().find(|(r, _)| *r == claim.resource) {
                    return Err(invalid(
                        &format!("source[{i}].{}", claim.key),
                        &format!("source[{first}] already uses {}", claim.resource),
                    ));
                }
                claimed.push((claim.resource, i));
            }
        }
        if self.pipeline.workers == Some(0) {
            return Err(invalid("pipeline.workers", "must be at least 1"));
        }
        if self.pipeline.queue == Some(0) {
            return Err(invalid("pipeline.queue", "must be at least 1"));
        }
        if self
            .pipeline
            .worker_nice
            .is_some_and(|n| !(0..=19).contains(&n))
        {
            return Err(invalid("pipeline.worker_nice", "must be from 0 to 19"));
        }
        let from_sink = |section: &str, e: seclake_sink::SinkError| match e {
            seclake_sink::SinkError::Config { key, why } => invalid(key, &why),
            seclake_sink::SinkError::ConfigEntry { key, why } => invalid(&key, &why),
            other => invalid(section, &other.to_string()),
        };
        for sink in self.sinks() {
            sink.check().map_err(|e| from_sink(sink.name(), e))?;
        }
        // Rules only for the response's decisions make no sink to check them.
        if !self.alerting.watches_events() {
            self.alerting.check().map_err(|e| from_sink("alert", e))?;
        }
        Ok(())
    }

    /// Every configured sink, in the order batches are handed to them. A new
    /// sink is a config section above and one entry here.
    pub fn sinks(&self) -> Vec<&dyn SinkSpec> {
        let mut sinks: Vec<&dyn SinkSpec> = vec![&self.lake, &self.dlq];
        if let Some(opensearch) = &self.opensearch {
            sinks.push(opensearch);
        }
        if let Some(response) = &self.response {
            sinks.push(response);
        }
        if self.alerting.watches_events() {
            sinks.push(&self.alerting);
        }
        sinks
    }
}

/// Parses config text into a table with `${VAR}` expanded; `path` only
/// names it in errors.
pub fn expanded_table(text: &str, path: &str) -> Result<toml::Table, ConfigError> {
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
    for (key, value) in table.iter_mut() {
        expand_env(value, key, &|var, key| ConfigError::Env {
            path: path.to_owned(),
            key: key.to_owned(),
            var: var.to_owned(),
        })?;
    }
    Ok(table)
}

/// Deserialises `T` (the whole config, or a view of some of its sections)
/// from an expanded table, naming the failing key.
pub fn section<T: serde::de::DeserializeOwned>(
    table: &toml::Table,
    path: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
        let (key, message) = source_key(table, &e.path().to_string())
            .unwrap_or_else(|| (e.path().to_string(), e.inner().to_string()));
        ConfigError::Key {
            path: path.to_owned(),
            key,
            message,
        }
    })
}

/// serde stops at `source[N]` inside an entry chosen by its `type`; the
/// source's config reads the entry again to name the key within it, e.g.
/// `source[0].start`.
fn source_key(table: &toml::Table, failed_at: &str) -> Option<(String, String)> {
    let index: usize = failed_at
        .strip_prefix("source[")?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    let mut entry = table
        .get("source")?
        .as_array()?
        .get(index)?
        .as_table()?
        .clone();
    let kind = entry.remove("type")?;
    let (key, message) = SourceConfig::locate_error(kind.as_str()?, toml::Value::Table(entry))?;
    Some((format!("source[{index}].{key}"), message))
}

/// Expands `${VAR}` / `${VAR:-default}` in every string under `value`.
fn expand_env<E>(
    value: &mut toml::Value,
    key: &str,
    err: &dyn Fn(&str, &str) -> E,
) -> Result<(), E> {
    match value {
        toml::Value::String(s) if s.contains("${") => {
            *s = expand_str(s, |var| err(var, key))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(item, &format!("{key}[{i}]"), err)?;
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                expand_env(v, &format!("{key}.{k}"), err)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str<E>(s: &str, missing: impl Fn(&str) -> E) -> Result<String, E> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = &after[..end];
        let (var, default) = match inner.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (inner, None),
        };
        match (std::env::var(var), default) {
            (Ok(v), _) => out.push_str(&v),
            (Err(_), Some(d)) => out.push_str(d),
            (Err(_), None) => return Err(missing(var)),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[source]]
        type = "file"
        format = "waf"
        path = "logs/waf.ndjson"

        [geoip]
        city = "/path/GeoLite2-City.mmdb"
        asn = "/path/GeoLite2-ASN.mmdb"

        [lake]
        url = "file:///abs/path/lake"

        [dlq]
        url = "file:///abs/path/dlq"
    "#;

    #[test]
    fn the_documented_minimal_config_parses() {
        let cfg = Config::parse(MINIMAL, "seclake.toml").unwrap();
        assert_eq!(cfg.sources.len(), 1);
        assert_eq!(cfg.sources[0].format(), seclake_ingest::Format::Waf);
        assert_eq!(cfg.lake.url, "file:///abs/path/lake");
        assert_eq!(cfg.lake.max_file_bytes, 128 << 20);
    }

    #[test]
    fn env_vars_expand_with_defaults() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("SECLAKE_TEST_LAKE", "/tmp/x") };
        let text = MINIMAL
            .replace("file:///abs/path/lake", "file://${SECLAKE_TEST_LAKE}/lake")
            .replace(
                "file:///abs/path/dlq",
                "file://${SECLAKE_TEST_UNSET:-/tmp/d}/dlq",
            );
        let cfg = Config::parse(&text, "c.toml").unwrap();
        assert_eq!(cfg.lake.url, "file:///tmp/x/lake");
        assert_eq!(cfg.dlq.url, "file:///tmp/d/dlq");
    }

    #[test]
    fn an_unset_variable_names_the_key_and_the_variable() {
        let text = MINIMAL.replace("/abs/path/lake", "${SECLAKE_SURELY_UNSET}");
        let err = Config::parse(&text, "c.toml").unwrap_err().to_string();
        assert!(
            err.contains("lake.url") && err.contains("SECLAKE_SURELY_UNSET"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_type_names_the_dotted_key() {
        let text = format!("{MINIMAL}\n[pipeline]\nworkers = \"two\"\n");
        let err = Config::parse(&text, "c.toml").unwrap_err().to_string();
        assert!(err.contains("pipeline.workers"), "{err}");
    }

    #[test]
    fn worker_nice_out_of_range_names_the_key() {
        for bad in ["-1", "20"] {
            let text = format!("{MINIMAL}\n[pipeline]\nworker_nice = {bad}\n");
            let err = Config::parse(&text, "c.toml").unwrap_err().to_string();
            assert!(err.contains("pipeline.worker_nice"), "{err}");
        }
        let text = format!("{MINIMAL}\n[pipeline]\nworker_nice = 0\n");
        assert_eq!(
            Config::parse(&text, "c.toml").unwrap().pipeline.worker_nice,
            Some(0)
        );
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name() {
        let text = MINIMAL.replace("[lake]", "[lake]\nurll = \"x\"");
        let err = Config::parse(&text, "c.toml").unwrap_err().to_string();
        assert!(err.contains("urll"), "{err}");
    }

    #[test]
    fn an_unknown_source_type_is_refused() {
        let text = MINIMAL.replace("type = \"file\"", "type = \"carrier-pigeon\"");
        let err = Config::parse(&text, "c.toml").unwrap_err().to_string();
        assert!(
            err.contains("source") && err.contains("carrier-pigeon"),
            "{err}"
        );
    }

    const KAFKA: &str = r#"
        [[source]]
        type = "kafka"
        format = "falco"
        brokers = "127.0.0.1:9092"
        topic = "falco-events"
        group = "seclake"
    "#;

    #[test]
    fn the_documented_kafka_source_parses_with_its_defaults() {
        let text = format!("{KAFKA}\n[lake]\nurl = \"file:///l\"\n[dlq]\nurl = \"file:///d\"\n");
        let cfg = Config::parse(&text, "c.toml").unwrap();
        let SourceConfig::Kafka(k) = &cfg.sources[0] else {
            panic!("not a kafka source: {:?}", cfg.sources[0]);
        };
        assert_eq!(
            (k.format, k.topic.as_str(), k.group.as_str()),
            (seclake_ingest::Format::Falco, "falco-events", "seclake")
        );
        assert_eq!(k.start, seclake_ingest::kafka::StartAt::Earliest);
        assert!(k.kafka_options.is_empty());
    }

    #[test]
    fn kafka_options_pass_through_and_managed_ones_are_refused_by_name() {
        let tail = "[lake]\nurl = \"file:///l\"\n[dlq]\nurl = \"file:///d\"\n";
        let ok = format!(
            "{KAFKA}\n[source.kafka_options]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"session.timeout.ms\" = 6000\n{tail}"
        );
        Config::parse(&ok, "c.toml").unwrap();
        let bad = format!("{KAFKA}\n[source.kafka_options]\n\"group.id\" = \"other\"\n{tail}");
        let err = Config::parse(&bad, "c.toml").unwrap_err().to_string();
        assert!(
            err.contains("source[0].kafka_options.\"group.id\"") && err.contains("use `group`"),
            "{err}"
        );
        let typo = format!("{KAFKA}\n[source.kafka_options]\n\"fetch.max.bites\" = 1\n{tail}");
        let err = Config::parse(&typo, "c.toml").unwrap_err().to_string();
        assert!(err.contains("fetch.max.bites"), "{err}");
        let start = format!("{KAFKA}start = \"middle\"\n{tail}");
        let err = Config::parse(&start, "c.toml").unwrap_err().to_string();
        assert!(err.contains("key `source[0].start`"), "{err}");
    }

    #[test]
    fn instance_ids_are_checked_and_one_shared_by_two_sources_is_refused() {
        let tail = "[lake]\nurl = \"file:///l\"\n[dlq]\nurl = \"file:///d\"\n";
        let one = format!("{KAFKA}instance_id = \"pod-0.falco\"\n");
        let SourceConfig::Kafka(k) = &Config::parse(&format!("{one}{tail}"), "c.toml")
            .unwrap()
            .sources[0]
        else {
            panic!("not a kafka source");
        };
        assert_eq!(
            k.instance_id,
            seclake_ingest::kafka::InstanceId::Fixed("pod-0.falco".into())
        );
        let twice = format!("{one}{}{tail}", one.replace("falco-events", "other"));
        let err = Config::parse(&twice, "c.toml").unwrap_err().to_string();
        assert!(
            err.contains("source[1].instance_id") && err.contains("source[0]"),
            "{err}"
        );
        let spaced = format!("{KAFKA}instance_id = \"pod 0\"\n{tail}");
        let err = Config::parse(&spaced, "c.toml").unwrap_err().to_string();
        assert!(err.contains("source[0].instance_id"), "{err}");
        let passed =
            format!("{KAFKA}\n[source.kafka_options]\n\"group.instance.id\" = \"x\"\n{tail}");
        let err = Config::parse(&passed, "c.toml").unwrap_err().to_string();
        assert!(err.contains("use `instance_id`"), "{err}");
        let off = format!("{KAFKA}instance_id = false\n{tail}");
        Config::parse(&off, "c.toml").unwrap();
    }

    #[test]
    fn alert_rules_are_checked_by_key_and_run_a_sink_only_for_events() {
        let rule = |body: &str| {
            format!(
                "{MINIMAL}\n[alerts.slack]\nwebhook_url = \"https://hooks.slack.com/services/x\"\n\
                 [[alert]]\nname = \"r\"\noutput = \"slack\"\n{body}"
            )
        };
        let sinks = |body: &str| {
            let cfg = Config::parse(&rule(body), "c.toml").unwrap();
            cfg.sinks().iter().map(|s| s.name()).collect::<Vec<_>>()
        };
        assert!(sinks("format = \"falco\"\nmin_severity = \"critical\"\n").contains(&"alert"));
        assert!(!sinks("format = \"response\"\naction = \"blocked\"\n").contains(&"alert"));
        for (body, key) in [
            (
                "format = \"falco\"\nmin_severity = \"severe\"\n",
                "alert[0].min_severity",
            ),
            (
                "format = \"response\"\naction = \"banned\"\n",
                "alert[0].action",
            ),
            (
                "format = \"falco\"\nmin_severty = \"critical\"\n",
                "alert[0]",
            ),
        ] {
            let err = Config::parse(&rule(body), "c.toml")
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("key `{key}")), "{body}: {err}");
        }
    }

    #[test]
    fn a_bad_lake_url_is_refused_naming_the_key() {
        let text = MINIMAL.replace("file:///abs/path/lake", "ftp://x/y");
        let err = Config::parse(&text, "c.toml").unwrap_err().to_string();
        assert!(err.contains("lake.url") && err.contains("ftp"), "{err}");
    }
}
