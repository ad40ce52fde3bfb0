//! The report by email, through SES v2's `SendEmail`.

use std::str::FromStr;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use email_address::EmailAddress;
use serde::Deserialize;

use super::{Channel, Delivered, DeliveryError, ReportFile, check_endpoint, check_region};

const FROM_KEY: &str = "report.deliver.email.from";
const TO_KEY: &str = "report.deliver.email.to";
const REGION_KEY: &str = "report.deliver.email.region";
const ENDPOINT_KEY: &str = "report.deliver.email.endpoint";

/// SES takes at most this many recipients in one message.
const MAX_RECIPIENTS: usize = 50;

/// How long one `SendEmail` may take, retries included.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// `[report.deliver.email]`: who sends the report to whom, through SES v2
/// with the AWS credential chain.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTarget {
    /// The sender, an identity verified in SES: `reports@example.com` or
    /// `seclake <reports@example.com>`.
    pub from: String,
    /// The recipients, 1 to 50.
    pub to: Vec<String>,
    /// The SES region; default from the AWS chain (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// A custom endpoint (moto, LocalStack), e.g. `http://127.0.0.1:5000`.
    pub endpoint: Option<String>,
    /// Put before the subject, e.g. `[prod]`.
    pub subject_prefix: Option<String>,
}

impl EmailTarget {
    /// Checks the settings without touching the network.
    pub fn check(&self) -> Result<(), DeliveryError> {
        let bad = |key, why| DeliveryError::Config {
            channel: Channel::Email,
            key,
            why,
        };
        if let Err(e) = EmailAddress::from_str(&self.from) {
            return Err(bad(
                FROM_KEY,
                format!("{:?} is not an email address: {e}", self.from),
            ));
        }
        if self.to.is_empty() {
            return Err(bad(TO_KEY, "names no recipient".to_owned()));
        }
        if self.to.len() > MAX_RECIPIENTS {
            return Err(bad(
                TO_KEY,
                format!(
                    "names {} recipients; SES takes at most {MAX_RECIPIENTS} (use a mailing list)",
                    self.to.len()
                ),
            ));
        }
        for address in &self.to {
            if let Err(e) = EmailAddress::from_str(address) {
                return Err(bad(
                    TO_KEY,
                    format!("{address:?} is not an email address: {e}"),
                ));
            }
        }
        check_region(Channel::Email, REGION_KEY, self.region.as_deref())?;
        check_endpoint(Channel::Email, ENDPOINT_KEY, self.endpoint.as_deref())
    }

    /// The subject line: `subject` after the prefix, if any.
    fn subject(&self, subject: &str) -> String {
        match self.subject_prefix.as_deref().map(str::trim) {
            Some(prefix) if !prefix.is_empty() => format!("{prefix} {subject}"),
            _ => subject.to_owned(),
        }
    }
}

/// Sends the report: the `.html` file as the HTML body and the `.md` file as
/// the plain-text part (at least one of them must be there).
pub(super) async fn send(
    target: &EmailTarget,
    subject: &str,
    files: &[ReportFile],
) -> Result<Delivered, DeliveryError> {
    target.check()?;
    let html = body(files, "html")?;
    let text = body(files, "md")?;
    if html.is_none() && text.is_none() {
        return Err(DeliveryError::Report {
            channel: Channel::Email,
            why: "the report has no .html or .md file to send".to_owned(),
        });
    }
    let message = Message::builder()
        .subject(content(&target.subject(subject))?)
        .body(
            Body::builder()
                .set_html(html.map(content).transpose()?)
                .set_text(text.map(content).transpose()?)
                .build(),
        )
        .build();

    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .operation_timeout(SEND_TIMEOUT)
            .build(),
    );
    if let Some(region) = &target.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(endpoint) = &target.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let sdk_config = loader.load().await;
    if sdk_config.region().is_none() {
        return Err(DeliveryError::Config {
            channel: Channel::Email,
            key: REGION_KEY,
            why: "no AWS region: set this key, AWS_REGION or a profile's region".to_owned(),
        });
    }
    let output = aws_sdk_sesv2::Client::new(&sdk_config)
        .send_email()
        .from_email_address(&target.from)
        .destination(
            Destination::builder()
                .set_to_addresses(Some(target.to.clone()))
                .build(),
        )
        .content(EmailContent::builder().simple(message).build())
        .send()
        .await
        .map_err(|error| DeliveryError::Ses {
            error: Box::new(error),
        })?;
    Ok(Delivered::Email {
        message_id: output.message_id().unwrap_or_default().to_owned(),
        to: target.to.clone(),
    })
}

/// The text of the first file ending in `.{extension}`, if any.
fn body<'a>(files: &'a [ReportFile], extension: &str) -> Result<Option<&'a str>, DeliveryError> {
    ReportFile::find(files, extension)
        .map(|file| {
            std::str::from_utf8(&file.bytes).map_err(|e| DeliveryError::Report {
                channel: Channel::Email,
                why: format!("{} is not UTF-8: {e}", file.name),
            })
        })
        .transpose()
}

/// UTF-8 content for SES.
fn content(data: &str) -> Result<Content, DeliveryError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| DeliveryError::Report {
            channel: Channel::Email,
            why: format!("building the message: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> EmailTarget {
        EmailTarget {
            from: "seclake <reports@example.com>".to_owned(),
            to: vec!["soc@example.com".to_owned()],
            region: None,
            endpoint: None,
            subject_prefix: None,
        }
    }

    #[test]
    fn the_prefix_goes_before_the_subject() {
        let subject = "seclake security report 2026-11-29";
        assert_eq!(target().subject(subject), subject);
        let prefixed = EmailTarget {
            subject_prefix: Some("[prod]".to_owned()),
            ..target()
        };
        assert_eq!(
            prefixed.subject(subject),
            "[prod] seclake security report 2026-11-29"
        );
    }

    #[test]
    fn a_display_name_in_from_is_accepted() {
        target().check().unwrap();
    }
}
