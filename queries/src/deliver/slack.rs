//! The report's summary, posted to a Slack incoming webhook.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::s3::Page;
use super::{Channel, Delivered, DeliveryError};

const WEBHOOK_KEY: &str = "report.deliver.slack.webhook_url";

/// How long the whole request may take, and connecting alone.
const TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an error answer goes into the error.
const BODY_SNIPPET: usize = 300;

/// `[report.deliver.slack]`: a Slack incoming webhook.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackTarget {
    /// `https://hooks.slack.com/services/…`. A secret: write it as
    /// `${VAR}` in the config; it is never logged or put in errors. Plain
    /// `http://` only to a loopback address.
    pub webhook_url: String,
}

impl fmt::Debug for SlackTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackTarget")
            .field("webhook_url", &"<redacted>")
            .finish()
    }
}

impl SlackTarget {
    /// Checks the webhook URL without touching the network.
    pub fn check(&self) -> Result<(), DeliveryError> {
        self.url().map(drop)
    }

    /// The webhook URL, refused unless `https://` (or `http://` to loopback),
    /// so the secret never crosses a network in clear text. Errors don't
    /// repeat the URL.
    fn url(&self) -> Result<Url, DeliveryError> {
        let bad = |why: String| DeliveryError::Config {
            channel: Channel::Slack,
            key: WEBHOOK_KEY,
            why,
        };
        seclake_sink::alert::webhook_url(&self.webhook_url).map_err(bad)
    }
}

/// What the message says about the report's page on S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Link {
    /// S3 isn't configured, or no `.html` file was uploaded.
    NotUploaded,
    /// The upload failed.
    UploadFailed,
    /// The uploaded page.
    Page(Page),
}

/// The message text: the summary and the link, escaped for Slack.
pub(super) fn message(summary: &str, link: &Link) -> String {
    let summary = escape(summary.trim_end());
    match link {
        Link::NotUploaded => summary,
        Link::UploadFailed => {
            format!(
                "{summary}\n\nFull report: not uploaded (the S3 upload failed, see the job's log)"
            )
        }
        Link::Page(Page {
            s3_url,
            web_url: Some(web_url),
        }) => format!("{summary}\n\nFull report: <{web_url}|{}>", escape(s3_url)),
        Link::Page(Page {
            s3_url,
            web_url: None,
        }) => format!("{summary}\n\nFull report: {}", escape(s3_url)),
    }
}

/// Escapes Slack's control characters, so the text shows as written.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Posts `{"text": text}` to the webhook; anything but a 2xx answer is an
/// error with the status and the start of the answer.
pub(super) async fn post(target: &SlackTarget, text: &str) -> Result<Delivered, DeliveryError> {
    let url = target.url()?;
    let request_failed = |e: reqwest::Error| DeliveryError::SlackRequest {
        source: e.without_url(),
    };
    // No redirects: the message goes to the configured host or nowhere.
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(request_failed)?;
    let response = client
        .post(url)
        .json(&serde_json::json!({ "text": text }))
        .send()
        .await
        .map_err(request_failed)?;
    let status = response.status();
    if status.is_success() {
        return Ok(Delivered::Slack);
    }
    let body = match response.text().await {
        Ok(body) => snippet(body.trim()),
        Err(e) => format!("(unreadable answer: {})", e.without_url()),
    };
    Err(DeliveryError::SlackStatus { status, body })
}

/// The first [`BODY_SNIPPET`] characters of `body`.
fn snippet(body: &str) -> String {
    match body.char_indices().nth(BODY_SNIPPET) {
        Some((end, _)) => format!("{}…", &body[..end]),
        None => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_escaped_and_the_page_linked() {
        let page = Page {
            s3_url: "s3://b/reports/dt=2026-11-29/report.html".to_owned(),
            web_url: Some("https://s3.console.aws.amazon.com/s3/object/b?prefix=x".to_owned()),
        };
        assert_eq!(
            message("3 <critical> alerts & 1 leak\n", &Link::Page(page)),
            "3 &lt;critical&gt; alerts &amp; 1 leak\n\nFull report: \
             <https://s3.console.aws.amazon.com/s3/object/b?prefix=x|s3://b/reports/dt=2026-11-29/report.html>"
        );
        assert_eq!(message("quiet day", &Link::NotUploaded), "quiet day");
        assert!(message("quiet day", &Link::UploadFailed).contains("upload failed"));
    }

    #[test]
    fn the_webhook_needs_https_except_on_loopback() {
        let target = |url: &str| SlackTarget {
            webhook_url: url.to_owned(),
        };
        target("https://hooks.slack.com/services/T0/B0/s3cr3tT0ken")
            .check()
            .unwrap();
        target("http://127.0.0.1:8080/hook").check().unwrap();
        target("http://[::1]:8080/hook").check().unwrap();
        let err = target("http://hooks.example.com/services/T0/B0/s3cr3tT0ken")
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(WEBHOOK_KEY) && err.contains("https://"),
            "{err}"
        );
        assert!(
            !err.contains("s3cr3tT0ken"),
            "the error shows the secret: {err}"
        );
    }

    #[test]
    fn debug_hides_the_webhook() {
        let target = SlackTarget {
            webhook_url: "https://hooks.slack.com/services/T0/B0/s3cr3tT0ken".to_owned(),
        };
        assert!(!format!("{target:?}").contains("s3cr3tT0ken"));
    }

    #[test]
    fn long_answers_are_cut_on_a_character_boundary() {
        let long = "é".repeat(BODY_SNIPPET + 10);
        let cut = snippet(&long);
        assert_eq!(cut.chars().count(), BODY_SNIPPET + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(snippet("no_service"), "no_service");
    }
}
