//! Settings: built-in defaults, then a TOML file, then `COMMERCE_API_*`
//! environment variables, then command-line flags, each overriding the last.
//!
//! An environment variable names a key in upper case, with `__` between a
//! table and its key: `COMMERCE_API_ACCESS_LOG__STDOUT=false` sets
//! `access_log.stdout`. Its value is read as a TOML value where it is one
//! (`false`, `64`, `["10.0.0.0/8"]`) and as a string otherwise.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// The prefix of the environment variables that set config keys.
pub const ENV_PREFIX: &str = "COMMERCE_API_";

/// A config that cannot be used; the message names the key and says why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not TOML.
    #[error("the config file {path} is not valid TOML: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A key has a value of the wrong kind, or is unknown.
    #[error("config key `{key}`: {reason}")]
    Key {
        /// The dotted key.
        key: String,
        /// Why.
        reason: String,
    },
}

impl ConfigError {
    fn key(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Key {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Everything `commerce-api` reads at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to serve HTTP on.
    pub listen: SocketAddr,
    /// The SQLite database file; created, migrated and seeded if new.
    pub db: PathBuf,
    /// The `service` field of every access-log line.
    pub service: String,
    /// Longest time a request may take before it is answered 408.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// On SIGTERM or Ctrl-C, how long in-flight requests may take to finish.
    #[serde(deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit: usize,
    /// Peers whose `X-Forwarded-For` is believed (load balancers, ingress).
    pub trusted_proxies: Vec<IpNet>,
    /// The access log.
    pub access_log: AccessLogConfig,
    /// Kafka output of the access log.
    pub kafka: KafkaConfig,
    /// The order store.
    pub storage: StorageConfig,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            db: PathBuf::from("commerce.db"),
            service: "commerce-api".to_owned(),
            request_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            body_limit: 64 * 1024,
            trusted_proxies: Vec::new(),
            access_log: AccessLogConfig::default(),
            kafka: KafkaConfig::default(),
            storage: StorageConfig::default(),
        }
    }
}

/// `[access_log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Write each line to stdout.
    pub stdout: bool,
    /// Lines waiting for stdout before new ones are dropped (and counted).
    pub queue: usize,
}

impl Default for AccessLogConfig {
    fn default() -> AccessLogConfig {
        AccessLogConfig {
            stdout: true,
            queue: 65_536,
        }
    }
}

/// `[kafka]`: off unless `brokers` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: Option<String>,
    /// The topic access-log lines go to.
    pub topic: String,
    /// Lines waiting in the producer before new ones are dropped (and counted).
    pub queue: usize,
    /// More librdkafka producer properties (`security.protocol`, `sasl.*`, …).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> KafkaConfig {
        KafkaConfig {
            brokers: None,
            topic: "app-logs".to_owned(),
            queue: 100_000,
            properties: BTreeMap::new(),
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Most orders written in one transaction (one fsync).
    pub max_batch: usize,
    /// Read-only connections for the GET routes.
    pub read_connections: usize,
    /// Orders waiting for the writer before new ones are answered 503.
    pub queue: usize,
    /// Under load (the last batch held more than one order), how long the
    /// writer lets orders gather before it commits: fewer, larger commits,
    /// each at most this much later. `"0s"` turns it off.
    #[serde(deserialize_with = "duration")]
    pub commit_delay: Duration,
    /// `full`: every commit is synced to the disk before its orders are
    /// answered (survives power loss). `normal`: commits reach the OS, not
    /// the disk (survive a crash of the process, not of the machine).
    pub synchronous: Synchronous,
    /// Under sustained load, the log is folded into the database file only
    /// once it is this large (MiB); otherwise whenever orders pause for a
    /// second. See `store/checkpoint.rs`.
    pub wal_limit_mb: u64,
    /// How long a write or read waits for a lock another process holds on
    /// the file (a backup, an operator's `sqlite3`) before it fails.
    #[serde(deserialize_with = "duration")]
    pub busy_timeout: Duration,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            max_batch: 2048,
            read_connections: 4,
            queue: 16_384,
            commit_delay: Duration::from_millis(4),
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Full,
            wal_limit_mb: 1024,
        }
    }
}

/// `storage.synchronous`: SQLite's `synchronous` in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Sync the log at every commit.
    Full,
    /// Sync only at checkpoints.
    Normal,
}

impl Synchronous {
    /// The pragma's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Full => "full",
            Synchronous::Normal => "normal",
        }
    }
}

/// Values given on the command line; they override everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--db`.
    pub db: Option<PathBuf>,
    /// `--kafka-brokers`.
    pub kafka_brokers: Option<String>,
    /// `--kafka-topic`.
    pub kafka_topic: Option<String>,
}

impl Config {
    /// Reads `file` (if any), then the environment `env`, then `flags`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|source| ConfigError::Toml {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if key == "CONFIG" {
                continue;
            }
            let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
            set(&mut table, &path, env_value(&value), &name)?;
        }
        let flag_values = [
            ("listen", flags.listen.map(|a| a.to_string())),
            ("db", flags.db.as_ref().map(|p| p.display().to_string())),
            ("kafka.brokers", flags.kafka_brokers.clone()),
            ("kafka.topic", flags.kafka_topic.clone()),
        ];
        for (key, value) in flag_values {
            if let Some(value) = value {
                let path: Vec<String> = key.split('.').map(str::to_owned).collect();
                set(&mut table, &path, toml::Value::String(value), key)?;
            }
        }
        let config: Config = serde_path_to_error::deserialize(table).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::key(key, e.into_inner().to_string())
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let positive = [
            ("body_limit", self.body_limit),
            ("access_log.queue", self.access_log.queue),
            ("kafka.queue", self.kafka.queue),
            ("storage.max_batch", self.storage.max_batch),
            ("storage.read_connections", self.storage.read_connections),
            ("storage.queue", self.storage.queue),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::key(key, "must be at least 1"));
            }
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::key(
                "request_timeout",
                "must be longer than 0s",
            ));
        }
        if self
            .kafka
            .brokers
            .as_deref()
            .is_some_and(|b| b.trim().is_empty())
        {
            return Err(ConfigError::key(
                "kafka.brokers",
                "is empty: give host:port, or leave it out to turn Kafka off",
            ));
        }
        if self.kafka.topic.is_empty() {
            return Err(ConfigError::key("kafka.topic", "is empty"));
        }
        Ok(())
    }

    /// Whether `peer` is one of [`Config::trusted_proxies`].
    pub fn trusts(&self, peer: IpAddr) -> bool {
        is_trusted(&self.trusted_proxies, peer)
    }
}

/// Whether `peer` is in one of the networks `proxies`.
pub fn is_trusted(proxies: &[IpNet], peer: IpAddr) -> bool {
    proxies.iter().any(|net| net.contains(&peer))
}

fn env_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

fn set(
    table: &mut toml::Table,
    path: &[String],
    value: toml::Value,
    origin: &str,
) -> Result<(), ConfigError> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut at = table;
    for (depth, part) in parents.iter().enumerate() {
        let entry = at
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(ConfigError::key(
                    path[..=depth].join("."),
                    format!("is a value, so {origin} cannot set a key inside it"),
                ));
            }
        };
    }
    at.insert(last.clone(), value);
    Ok(())
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration ({e}); write e.g. \"500ms\", \"10s\" or \"1m\""
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn flags_override_env_which_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1\"\nrequest_timeout = \"2s\"\n[kafka]\ntopic = \"from-file\"\n[access_log]\nstdout = true\n",
        )
        .unwrap();
        let flags = Overrides {
            listen: Some("127.0.0.1:3".parse().unwrap()),
            ..Overrides::default()
        };
        let config = Config::load(
            Some(&file),
            env(&[
                ("COMMERCE_API_LISTEN", "127.0.0.1:2"),
                ("COMMERCE_API_KAFKA__TOPIC", "from-env"),
                ("COMMERCE_API_ACCESS_LOG__STDOUT", "false"),
                ("COMMERCE_API_TRUSTED_PROXIES", "[\"10.0.0.0/8\"]"),
                ("OTHER", "x"),
            ]),
            &flags,
        )
        .unwrap();
        assert_eq!(config.listen.port(), 3);
        assert_eq!(config.kafka.topic, "from-env");
        assert!(!config.access_log.stdout);
        assert_eq!(config.request_timeout, Duration::from_secs(2));
        assert!(config.trusts("10.1.2.3".parse().unwrap()));
        assert!(!config.trusts("192.0.2.1".parse().unwrap()));
        assert_eq!(config.kafka.brokers, None);
    }

    #[test]
    fn errors_name_the_key() {
        let none = Overrides::default();
        let err = |pairs: &[(&str, &str)]| {
            Config::load(None, env(pairs), &none)
                .unwrap_err()
                .to_string()
        };
        let e = err(&[("COMMERCE_API_STORAGE__MAX_BATCH", "many")]);
        assert!(e.contains("`storage.max_batch`"), "{e}");
        let e = err(&[("COMMERCE_API_STORAGE__MAX_BATCH", "0")]);
        assert!(
            e.contains("`storage.max_batch`") && e.contains("at least 1"),
            "{e}"
        );
        let e = err(&[("COMMERCE_API_REQUEST_TIMEOUT", "soon")]);
        assert!(
            e.contains("`request_timeout`") && e.contains("\"soon\""),
            "{e}"
        );
        let e = err(&[("COMMERCE_API_LISTEN_PORT", "1")]);
        assert!(e.contains("listen_port"), "{e}");
        let e = err(&[("COMMERCE_API_TRUSTED_PROXIES", "[\"nine\"]")]);
        assert!(e.contains("`trusted_proxies[0]`"), "{e}");
        let e = err(&[("COMMERCE_API_KAFKA__BROKERS", " ")]);
        assert!(e.contains("`kafka.brokers`"), "{e}");
    }

    #[test]
    fn the_two_documented_flags_are_enough() {
        let flags = Overrides {
            listen: Some("127.0.0.1:8081".parse().unwrap()),
            db: Some(PathBuf::from("/tmp/x.db")),
            ..Overrides::default()
        };
        let config = Config::load(None, Vec::new(), &flags).unwrap();
        assert_eq!(config.db, PathBuf::from("/tmp/x.db"));
        assert_eq!(config.kafka.topic, "app-logs");
        assert!(config.access_log.stdout);
    }

    #[test]
    fn the_readmes_config_reference_is_a_valid_config() {
        let readme = include_str!("../../README.md");
        let section = &readme[readme.find("## commerce-api").unwrap()..];
        let start = section.find("```toml\n").unwrap() + "```toml\n".len();
        let block = &section[start..start + section[start..].find("```").unwrap()];
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, block).unwrap();
        let config = Config::load(Some(&file), Vec::new(), &Overrides::default()).unwrap();
        let defaults = Config::default();
        assert_eq!(config.listen, defaults.listen);
        assert_eq!(config.storage.max_batch, defaults.storage.max_batch);
        assert_eq!(config.kafka.queue, defaults.kafka.queue);
        assert_eq!(config.access_log.queue, defaults.access_log.queue);
        assert_eq!(config.body_limit, defaults.body_limit);
    }
}
