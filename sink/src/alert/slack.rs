//! Posting to a Slack incoming webhook, with retries: a 429 waits as long
//! as its `Retry-After` says, a 5xx or a failed connection waits a jittered,
//! growing pause, for at most [`MAX_RETRY`] in all. Any other answer is
//! final.

use std::time::Duration;

use backon::BackoffBuilder as _;
use reqwest::StatusCode;
use tokio::time::Instant;
use url::Url;

use super::alerter::DeliveryError;
use super::config::SlackOutput;
use crate::SinkError;

/// How long a message is retried before it is given up.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(60);

/// How long one request may take, and connecting alone.
const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of a refusal's answer goes into the warning.
const BODY_SNIPPET: usize = 200;

/// A Slack incoming webhook.
pub(crate) struct Slack {
    url: Url,
    client: reqwest::Client,
}

impl Slack {
    /// Checks the webhook URL and builds the client; no request is made.
    pub(crate) fn new(cfg: &SlackOutput) -> Result<Slack, SinkError> {
        let url = cfg.url()?;
        // No redirects: the message goes to the configured host or nowhere.
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SinkError::Config {
                key: "alerts.slack.webhook_url",
                why: format!("cannot build an HTTP client: {}", e.without_url()),
            })?;
        Ok(Slack { url, client })
    }

    /// Posts `payload`, retrying as the module says; the bytes sent.
    pub(crate) async fn post(&self, payload: &serde_json::Value) -> Result<u64, DeliveryError> {
        let body = payload.to_string();
        let started = Instant::now();
        let mut pauses = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(10))
            .with_jitter()
            .without_max_times()
            .build();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let sent = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let (pause, why) = match sent {
                Ok(answer) if answer.status().is_success() => return Ok(body.len() as u64),
                Ok(answer) if answer.status() == StatusCode::TOO_MANY_REQUESTS => {
                    let pause = retry_after(answer.headers())
                        .unwrap_or_else(|| pauses.next().unwrap_or(MAX_RETRY));
                    (pause, "HTTP 429 Too Many Requests".to_owned())
                }
                Ok(answer) if answer.status().is_server_error() => (
                    pauses.next().unwrap_or(MAX_RETRY),
                    format!("HTTP {}", answer.status()),
                ),
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    let body = answer.text().await.unwrap_or_default();
                    return Err(DeliveryError::Refused {
                        status,
                        body: super::rules::clip(body.trim(), BODY_SNIPPET),
                    });
                }
                // The URL holds the webhook's secret: never in a message.
                Err(e) => (
                    pauses.next().unwrap_or(MAX_RETRY),
                    e.without_url().to_string(),
                ),
            };
            if started.elapsed() + pause > MAX_RETRY {
                return Err(DeliveryError::GaveUp {
                    attempts,
                    last: why,
                });
            }
            tracing::debug!("alerts: Slack answered {why}; retrying in {pause:?}");
            tokio::time::sleep(pause).await;
        }
    }
}

/// A `Retry-After` in seconds (what Slack sends); `None` for a date or
/// anything else, which then gets the usual pause.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_only() {
        let headers = |value: &str| {
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(
                reqwest::header::RETRY_AFTER,
                value.parse().expect("a header value"),
            );
            h
        };
        assert_eq!(retry_after(&headers("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&headers("Wed, 21 Oct 2026 07:28:00 GMT")), None);
        assert_eq!(retry_after(&reqwest::header::HeaderMap::new()), None);
    }
}
