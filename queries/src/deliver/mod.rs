//! Delivering a written report: an upload to S3, an email through SES v2 and
//! a Slack incoming-webhook summary, each optional.
//!
//! [`deliver`] runs the configured channels in the order S3 → email → Slack
//! and goes on after a failure, so one broken channel never silences the
//! others; it returns every outcome, and the caller reports the failures and
//! exits non-zero. Slack links the HTML page that the S3 upload wrote.

mod email;
mod s3;
mod slack;

use std::fmt;

use aws_sdk_sesv2::error::SdkError;
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::NaiveDate;
use serde::Deserialize;

pub use email::EmailTarget;
pub use s3::S3Target;
pub use slack::SlackTarget;

/// Where a report goes: the `[report.deliver]` config section, or the
/// command line's flags. Every channel is optional; none configured delivers
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Upload the report files to an S3 prefix.
    pub s3: Option<S3Target>,
    /// Email the report through SES v2.
    pub email: Option<EmailTarget>,
    /// Post a summary to a Slack incoming webhook.
    pub slack: Option<SlackTarget>,
}

impl DeliveryConfig {
    /// Checks every configured channel's settings without touching the
    /// network; the error names the key, e.g. `report.deliver.email.to`.
    pub fn check(&self) -> Result<(), DeliveryError> {
        if let Some(s3) = &self.s3 {
            s3.check()?;
        }
        if let Some(email) = &self.email {
            email.check()?;
        }
        if let Some(slack) = &self.slack {
            slack.check()?;
        }
        Ok(())
    }

    /// True when no channel is configured.
    pub fn is_empty(&self) -> bool {
        self.s3.is_none() && self.email.is_none() && self.slack.is_none()
    }
}

/// One rendered file of the report, e.g. `report.html`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFile {
    /// The file name, without a directory: `report.html`, `report.md`, `report.json`.
    pub name: String,
    /// Its MIME type, stored with the S3 object, e.g. `text/html; charset=utf-8`.
    pub content_type: &'static str,
    /// The content.
    pub bytes: Vec<u8>,
}

impl ReportFile {
    /// The first file whose name ends in `.{extension}`.
    fn find<'a>(files: &'a [ReportFile], extension: &str) -> Option<&'a ReportFile> {
        files.iter().find(|file| {
            file.name
                .rsplit_once('.')
                .is_some_and(|(_, ext)| ext.eq_ignore_ascii_case(extension))
        })
    }
}

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The upload to S3.
    S3,
    /// The email through SES v2.
    Email,
    /// The Slack incoming webhook.
    Slack,
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Channel::S3 => "S3",
            Channel::Email => "email",
            Channel::Slack => "Slack",
        })
    }
}

/// What one successful delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The files were uploaded; their `s3://` URLs, in the order given.
    S3 { urls: Vec<String> },
    /// SES accepted the message.
    Email { message_id: String, to: Vec<String> },
    /// The webhook accepted the summary.
    Slack,
}

impl fmt::Display for Delivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delivered::S3 { urls } => write!(f, "uploaded {}", urls.join(", ")),
            Delivered::Email { message_id, to } => {
                write!(f, "sent message {message_id} to {}", to.join(", "))
            }
            Delivered::Slack => f.write_str("posted the summary"),
        }
    }
}

/// Why a delivery failed. Every message names the channel and the cause.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// A setting is unusable: names the key and says why.
    #[error("{channel}: config key `{key}`: {why}")]
    Config {
        channel: Channel,
        /// The key, e.g. `report.deliver.email.to`.
        key: &'static str,
        why: String,
    },
    /// The report lacks what the channel needs, e.g. an email body.
    #[error("{channel}: {why}")]
    Report { channel: Channel, why: String },
    /// Uploading a file to S3 failed.
    #[error("S3: uploading {url}: {source}")]
    Upload {
        /// The object's `s3://` URL.
        url: String,
        source: object_store::Error,
    },
    /// SES refused the message or could not be reached.
    #[error("email: SES SendEmail: {}", ses_cause(error))]
    Ses {
        // Not `#[source]`: the message already says everything the chain does.
        error: Box<SdkError<SendEmailError>>,
    },
    /// The Slack webhook could not be reached or did not answer in time. The
    /// webhook URL, a secret, is left out.
    #[error("Slack: posting to the webhook: {source}")]
    SlackRequest { source: reqwest::Error },
    /// The Slack webhook answered with an error status.
    #[error("Slack: the webhook answered {status}: {body}")]
    SlackStatus {
        status: reqwest::StatusCode,
        /// The start of the answer, e.g. `invalid_token` or `no_service`.
        body: String,
    },
}

impl DeliveryError {
    /// The channel that failed.
    pub fn channel(&self) -> Channel {
        match self {
            DeliveryError::Config { channel, .. } | DeliveryError::Report { channel, .. } => {
                *channel
            }
            DeliveryError::Upload { .. } => Channel::S3,
            DeliveryError::Ses { .. } => Channel::Email,
            DeliveryError::SlackRequest { .. } | DeliveryError::SlackStatus { .. } => {
                Channel::Slack
            }
        }
    }
}

/// What SES said when it answered (its error code, message and request id),
/// else the SDK's whole chain: a timeout, a connection or credentials failure.
fn ses_cause(error: &SdkError<SendEmailError>) -> String {
    use aws_sdk_sesv2::error::ProvideErrorMetadata;
    use aws_sdk_sesv2::operation::RequestId;

    let Some(refusal) = error.as_service_error() else {
        return DisplayErrorContext(error).to_string();
    };
    let mut cause = format!(
        "{}: {}",
        refusal.code().unwrap_or("unknown error"),
        refusal.message().unwrap_or("(no message)")
    );
    if let Some(id) = refusal.request_id() {
        cause.push_str(&format!(" (request id {id})"));
    }
    cause
}

/// Delivers the report of `date` through every configured channel, in the
/// order S3 → email → Slack, going on after a failure, and returns each
/// channel's outcome in that order.
///
/// S3 gets every file, under `<prefix>/reports/dt=YYYY-MM-DD/`. The email's
/// subject is `subject` (after the target's `subject_prefix`), its HTML body
/// the `.html` file and its plain-text part the `.md` file. Slack gets
/// `summary` and, when the S3 upload worked, a link to the uploaded `.html`
/// file (see [`S3Target`] for which link).
pub async fn deliver(
    date: NaiveDate,
    files: &[ReportFile],
    subject: &str,
    summary: &str,
    config: &DeliveryConfig,
) -> Vec<(Channel, Result<Delivered, DeliveryError>)> {
    let mut outcomes = Vec::new();
    let mut link = slack::Link::NotUploaded;
    if let Some(target) = &config.s3 {
        let outcome = s3::upload(target, date, files).await;
        link = match &outcome {
            Ok(uploaded) => uploaded
                .page
                .clone()
                .map_or(slack::Link::NotUploaded, slack::Link::Page),
            Err(_) => slack::Link::UploadFailed,
        };
        outcomes.push((Channel::S3, outcome.map(|uploaded| uploaded.delivered)));
    }
    if let Some(target) = &config.email {
        outcomes.push((Channel::Email, email::send(target, subject, files).await));
    }
    if let Some(target) = &config.slack {
        let text = slack::message(summary, &link);
        outcomes.push((Channel::Slack, slack::post(target, &text).await));
    }
    outcomes
}

/// Checks an optional endpoint URL (`http://` or `https://`).
fn check_endpoint(
    channel: Channel,
    key: &'static str,
    endpoint: Option<&str>,
) -> Result<(), DeliveryError> {
    let Some(endpoint) = endpoint else {
        return Ok(());
    };
    let usable = url::Url::parse(endpoint)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some());
    if usable {
        return Ok(());
    }
    Err(DeliveryError::Config {
        channel,
        key,
        why: format!(
            "{endpoint:?} is not an http:// or https:// URL with a host, e.g. http://127.0.0.1:5000"
        ),
    })
}

/// Checks an optional region name: not blank.
fn check_region(
    channel: Channel,
    key: &'static str,
    region: Option<&str>,
) -> Result<(), DeliveryError> {
    match region {
        Some(region) if region.trim().is_empty() => Err(DeliveryError::Config {
            channel,
            key,
            why:
                "is empty: name a region such as us-east-1, or leave the key out to use AWS_REGION"
                    .to_owned(),
        }),
        _ => Ok(()),
    }
}
