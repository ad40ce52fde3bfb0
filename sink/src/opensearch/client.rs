//! The connection (TLS, basic auth, SigV4), the templates installed at start,
//! and index retention.

use std::time::{Duration, Instant};

use opensearch::OpenSearch;
use opensearch::auth::Credentials;
use opensearch::cert::{Certificate, CertificateValidation};
use opensearch::http::Method;
use opensearch::http::headers::HeaderMap;
use opensearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use serde::Deserialize;
use serde_json::{Value, json};

use super::template;
use super::{Mode, OpenSearchConfig};
use crate::SinkError;

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    /// No credentials (a private cluster, or one behind a proxy).
    #[default]
    None,
    /// HTTP basic auth with `username` and `password`.
    Basic,
    /// AWS Signature Version 4 with the standard AWS credential chain, for
    /// Amazon OpenSearch Service (`service = "es"`) and Serverless (`"aoss"`).
    Sigv4,
}

fn bad(key: &'static str, why: String) -> SinkError {
    SinkError::Config { key, why }
}

/// The URL is `http(s)://host[:port]`.
pub(super) fn check_url(url: &str) -> Result<url::Url, SinkError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| bad("opensearch.url", format!("{url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(bad(
            "opensearch.url",
            format!("{url:?}: use http://host:port or https://host"),
        ));
    }
    Ok(parsed)
}

/// Auth settings are complete and used only with their mode.
pub(super) fn check_auth(cfg: &OpenSearchConfig) -> Result<(), SinkError> {
    match cfg.auth {
        Auth::Basic if cfg.username.is_none() => Err(bad(
            "opensearch.username",
            "auth = \"basic\" needs a username (and a password)".into(),
        )),
        Auth::Basic if cfg.password.is_none() => Err(bad(
            "opensearch.password",
            "auth = \"basic\" needs a password".into(),
        )),
        Auth::Sigv4 if !matches!(cfg.service.as_str(), "es" | "aoss") => Err(bad(
            "opensearch.service",
            format!(
                "{:?}: \"es\" (OpenSearch Service) or \"aoss\" (Serverless)",
                cfg.service
            ),
        )),
        Auth::None | Auth::Sigv4 if cfg.username.is_some() || cfg.password.is_some() => Err(bad(
            "opensearch.auth",
            "username and password are set but auth is not \"basic\"".into(),
        )),
        _ => match &cfg.ca_file {
            Some(path) if !path.is_file() => Err(bad(
                "opensearch.ca_file",
                format!("{} is not a readable file", path.display()),
            )),
            _ => Ok(()),
        },
    }
}

/// A client for the configured cluster.
pub(super) async fn connect(cfg: &OpenSearchConfig) -> Result<OpenSearch, SinkError> {
    let url = check_url(&cfg.url)?;
    let pool = SingleNodeConnectionPool::new(url);
    let mut builder =
        TransportBuilder::new(pool).timeout(Duration::from_secs(cfg.request_timeout_secs));
    match cfg.auth {
        Auth::None => {}
        Auth::Basic => {
            let user = cfg.username.clone().unwrap_or_default();
            let password = cfg.password.clone().unwrap_or_default();
            builder = builder.auth(Credentials::Basic(user, password));
        }
        Auth::Sigv4 => {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(region) = &cfg.region {
                loader = loader.region(aws_config::Region::new(region.clone()));
            }
            let sdk = loader.load().await;
            let credentials = Credentials::try_from(&sdk).map_err(|e| {
                bad(
                    "opensearch.region",
                    format!("SigV4 needs AWS credentials and a region (set opensearch.region or AWS_REGION): {e}"),
                )
            })?;
            builder = builder.auth(credentials).service_name(&cfg.service);
        }
    }
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| bad("opensearch.ca_file", format!("{}: {e}", path.display())))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            bad(
                "opensearch.ca_file",
                format!("{}: not a PEM certificate: {e}", path.display()),
            )
        })?;
        builder = builder.cert_validation(CertificateValidation::Full(cert));
    }
    let transport = builder
        .build()
        .map_err(|e| bad("opensearch.url", format!("cannot build the client: {e}")))?;
    Ok(OpenSearch::new(transport))
}

/// Sends one JSON request; the parsed answer, or an error naming the path.
pub(super) async fn request(
    client: &OpenSearch,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), SinkError> {
    let body = body.map(|b| bytes::Bytes::from(b.to_string()));
    let response = client
        .transport()
        .send(method, path, HeaderMap::new(), None::<&()>, body, None)
        .await
        .map_err(|e| SinkError::OpenSearch(format!("{path}: {e}")))?;
    let status = response.status_code().as_u16();
    let text = response
        .bytes()
        .await
        .map_err(|e| SinkError::OpenSearch(format!("{path}: {e}")))?;
    let value = serde_json::from_slice(&text).unwrap_or(Value::Null);
    Ok((status, value))
}

/// A request that must succeed.
async fn must(
    client: &OpenSearch,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, SinkError> {
    let (status, value) = request(client, method, path, body).await?;
    if (200..300).contains(&status) {
        Ok(value)
    } else {
        Err(SinkError::OpenSearch(format!(
            "{path}: HTTP {status}: {value}"
        )))
    }
}

/// Puts the component templates and the index template (every start, so
/// an upgrade's mapping applies to the next new index).
pub(super) async fn install_templates(
    client: &OpenSearch,
    cfg: &OpenSearchConfig,
) -> Result<(), SinkError> {
    let prefix = &cfg.index_prefix;
    let reach = |e: SinkError| match e {
        SinkError::OpenSearch(why) => bad(
            "opensearch.url",
            format!("cannot install the index templates on {}: {why}", cfg.url),
        ),
        other => other,
    };
    must(
        client,
        Method::Put,
        &format!("/_component_template/{prefix}-mappings"),
        Some(&json!({"template": {"mappings": template::mappings()}})),
    )
    .await
    .map_err(reach)?;
    must(
        client,
        Method::Put,
        &format!("/_component_template/{prefix}-settings"),
        Some(&json!({"template": {"settings": template::settings(cfg.replicas, cfg.shards)}})),
    )
    .await
    .map_err(reach)?;
    must(
        client,
        Method::Put,
        &format!("/_index_template/{prefix}-events"),
        Some(&template::index_template(
            prefix,
            cfg.mode == Mode::DataStream,
        )),
    )
    .await
    .map_err(reach)?;
    Ok(())
}

/// Deletes what is older than the retention: an ISM policy when the cluster
/// has Index State Management, else seclake deletes expired daily indices
/// itself, at start and every hour.
pub(super) struct Retention {
    prefix: String,
    days: u32,
    /// Set when seclake deletes indices itself.
    next_sweep: Option<Instant>,
}

const SWEEP_EVERY: Duration = Duration::from_secs(3600);

impl Retention {
    pub async fn install(
        client: &OpenSearch,
        cfg: &OpenSearchConfig,
        days: u32,
    ) -> Result<Retention, SinkError> {
        let prefix = cfg.index_prefix.clone();
        let path = format!("/_plugins/_ism/policies/{prefix}-retention");
        let (status, existing) = request(client, Method::Get, &path, None).await?;
        // Without the plugin the path has no handler (HTTP 400); with it, a
        // missing policy is a 404.
        if !matches!(status, 200 | 404) {
            tracing::info!(
                "opensearch: no Index State Management plugin; seclake deletes {prefix}-* daily indices older than {days} days itself"
            );
            let mut retention = Retention {
                prefix,
                days,
                next_sweep: Some(Instant::now()),
            };
            retention.run_due(client).await;
            return Ok(retention);
        }
        let policy = json!({"policy": {
            "description": format!("seclake: delete {prefix}-* indices {days} days after creation"),
            "default_state": "hot",
            "states": [
                {"name": "hot", "actions": [],
                 "transitions": [{"state_name": "delete", "conditions": {"min_index_age": format!("{days}d")}}]},
                {"name": "delete", "actions": [{"delete": {}}], "transitions": []}
            ],
            "ism_template": [{"index_patterns": [format!("{prefix}-*")], "priority": 100}]
        }});
        let path = match (
            existing["_seq_no"].as_u64(),
            existing["_primary_term"].as_u64(),
        ) {
            (Some(seq), Some(term)) => format!("{path}?if_seq_no={seq}&if_primary_term={term}"),
            _ => path,
        };
        must(client, Method::Put, &path, Some(&policy)).await?;
        Ok(Retention {
            prefix,
            days,
            next_sweep: None,
        })
    }

    /// Deletes expired daily indices when a sweep is due (seclake-managed
    /// retention only). Failures are logged and tried again next time.
    pub async fn run_due(&mut self, client: &OpenSearch) {
        let Some(due) = self.next_sweep else { return };
        if Instant::now() < due {
            return;
        }
        self.next_sweep = Some(Instant::now() + SWEEP_EVERY);
        let today = chrono::Utc::now().date_naive();
        match self.expired(client, today).await {
            Ok(expired) => {
                for index in expired {
                    match must(client, Method::Delete, &format!("/{index}"), None).await {
                        Ok(_) => tracing::info!("opensearch retention: deleted {index}"),
                        Err(e) => tracing::warn!("opensearch retention: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("opensearch retention: {e}"),
        }
    }

    /// The `<prefix>-<format>-YYYY.MM.DD` indices whose day is more than
    /// `days` before `today`.
    async fn expired(
        &self,
        client: &OpenSearch,
        today: chrono::NaiveDate,
    ) -> Result<Vec<String>, SinkError> {
        let listing = must(
            client,
            Method::Get,
            &format!(
                "/_cat/indices/{}-*?format=json&h=index&expand_wildcards=open,closed",
                self.prefix
            ),
            None,
        )
        .await?;
        let oldest_kept = today - chrono::Days::new(u64::from(self.days));
        Ok(listing
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| row["index"].as_str())
            .filter(|index| index_day(&self.prefix, index).is_some_and(|day| day < oldest_kept))
            .map(str::to_owned)
            .collect())
    }
}

/// The day of a `<prefix>-<format>-YYYY.MM.DD` index.
fn index_day(prefix: &str, index: &str) -> Option<chrono::NaiveDate> {
    let rest = index.strip_prefix(prefix)?.strip_prefix('-')?;
    let (format, date) = rest.rsplit_once('-')?;
    format.parse::<seclake_ingest::Format>().ok()?;
    chrono::NaiveDate::parse_from_str(date, "%Y.%m.%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_seclakes_daily_indices_have_a_day() {
        let day = |i| index_day("seclake", i);
        assert_eq!(
            day("seclake-waf-2026.11.24"),
            chrono::NaiveDate::from_ymd_opt(2026, 11, 24)
        );
        assert_eq!(
            day("seclake-guardduty-2026.11.24"),
            chrono::NaiveDate::from_ymd_opt(2026, 11, 24)
        );
        assert_eq!(day("seclake-other-2026.11.24"), None);
        assert_eq!(day("seclake-waf"), None);
        assert_eq!(day("seclakex-waf-2026.11.24"), None);
        assert_eq!(day("seclake-waf-2026.13.01"), None);
    }
}
