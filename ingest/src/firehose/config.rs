//! `[[source]] type = "firehose"`: the keys and what is checked before
//! anything is opened.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::Format;
use crate::source::KeyError;

/// The most `max_body_bytes` may be: record offsets in a batch are 32-bit.
const MAX_BODY_LIMIT: usize = 1 << 30;

/// An Amazon Data Firehose HTTP endpoint destination: deliveries are stored
/// in an fsynced on-disk buffer before the 200, then drained into the sinks.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirehoseConfig {
    /// Format of every record: `waf`, `falco`, `app` or `guardduty`.
    pub format: Format,
    /// Address and port to listen on, e.g. `0.0.0.0:8443`.
    pub listen: String,
    /// The Firehose stream's access key; requests without it get 401. When
    /// unset every request is accepted (a warning at start says so).
    pub access_key: Option<String>,
    /// Directory of the delivery buffer; created if missing. Deliveries left
    /// by an earlier run are drained first.
    pub buffer_dir: PathBuf,
    /// The buffer's size limit; past it the endpoint answers 503 until the
    /// sinks catch up (default 1 GiB).
    #[serde(default = "default_buffer_max_bytes")]
    pub buffer_max_bytes: u64,
    /// Largest request body, compressed or not (default 128 MiB: Firehose
    /// buffers at most 64 MiB, which base64 makes about 86 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// PEM certificate chain for HTTPS; with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS; with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Longest record accepted (default 1 MiB); longer ones go to the
    /// dead-letter output holding their first `max_record_bytes`.
    #[serde(default = "crate::file::default_max_record_bytes")]
    pub max_record_bytes: usize,
}

impl std::fmt::Debug for FirehoseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirehoseConfig")
            .field("format", &self.format)
            .field("listen", &self.listen)
            .field(
                "access_key",
                &self.access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("buffer_dir", &self.buffer_dir)
            .field("buffer_max_bytes", &self.buffer_max_bytes)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("max_record_bytes", &self.max_record_bytes)
            .finish()
    }
}

fn default_buffer_max_bytes() -> u64 {
    1 << 30
}

fn default_max_body_bytes() -> usize {
    128 << 20
}

impl FirehoseConfig {
    /// Checks what serde cannot; opens and binds nothing.
    pub fn check(&self) -> Result<(), KeyError> {
        self.listen_addr()?;
        if let Some(key) = &self.access_key {
            if key.is_empty() {
                return Err(KeyError::new(
                    "access_key",
                    "is empty: set the Firehose stream's access key, or remove the key to accept every request",
                ));
            }
            // Firehose's own limit on the key it sends.
            if key.len() > 4096 {
                return Err(KeyError::new(
                    "access_key",
                    "longer than the 4,096 bytes Firehose sends",
                ));
            }
        }
        if self.buffer_dir.as_os_str().is_empty() {
            return Err(KeyError::new("buffer_dir", "must not be empty"));
        }
        if !(1..=MAX_BODY_LIMIT).contains(&self.max_body_bytes) {
            return Err(KeyError::new(
                "max_body_bytes",
                format!("must be between 1 and {MAX_BODY_LIMIT}"),
            ));
        }
        if self.buffer_max_bytes < self.max_body_bytes as u64 {
            return Err(KeyError::new(
                "buffer_max_bytes",
                format!(
                    "must be at least max_body_bytes ({}), or the largest delivery could never be stored",
                    self.max_body_bytes
                ),
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(KeyError::new("tls_key", "tls_cert is set: set its key too"));
            }
            (None, Some(_)) => {
                return Err(KeyError::new(
                    "tls_cert",
                    "tls_key is set: set the certificate too",
                ));
            }
            _ => {}
        }
        if self.max_record_bytes == 0 {
            return Err(KeyError::new("max_record_bytes", "must be at least 1"));
        }
        Ok(())
    }

    /// `listen`, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr, KeyError> {
        self.listen.parse().map_err(|_| {
            KeyError::new(
                "listen",
                format!(
                    "{:?} is not an address and port, e.g. \"0.0.0.0:8443\"",
                    self.listen
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<FirehoseConfig, toml::de::Error> {
        toml::from_str(&format!(
            "format = \"waf\"\nlisten = \"127.0.0.1:8443\"\nbuffer_dir = \"/tmp/fh\"\n{extra}"
        ))
    }

    fn key_of(extra: &str) -> String {
        config(extra)
            .expect("parses")
            .check()
            .expect_err("refused")
            .key
    }

    #[test]
    fn the_issue_keys_parse_with_their_defaults() {
        let c = config("access_key = \"secret\"\nbuffer_max_bytes = 2147483648").expect("parses");
        c.check().expect("valid");
        assert_eq!(c.max_body_bytes, 128 << 20);
        assert_eq!(c.buffer_max_bytes, 2 << 30);
        assert!(!format!("{c:?}").contains("secret"), "the key is redacted");
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(key_of("access_key = \"\""), "access_key");
        assert_eq!(key_of("tls_cert = \"/c.pem\""), "tls_key");
        assert_eq!(key_of("tls_key = \"/k.pem\""), "tls_cert");
        assert_eq!(key_of("max_body_bytes = 0"), "max_body_bytes");
        assert_eq!(key_of("buffer_max_bytes = 1024"), "buffer_max_bytes");
        let bad_listen = toml::from_str::<FirehoseConfig>(
            "format = \"waf\"\nlisten = \"8443\"\nbuffer_dir = \"/tmp/fh\"",
        )
        .expect("parses");
        assert_eq!(bad_listen.check().expect_err("refused").key, "listen");
    }
}
