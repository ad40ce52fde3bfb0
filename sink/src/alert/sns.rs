//! Publishing to an SNS topic. The SDK retries throttling and transient
//! errors itself (its standard retry policy); what it gives up on is
//! reported as failed.

use aws_sdk_sns::operation::publish::PublishError;
use aws_smithy_types::error::display::DisplayErrorContext;

use super::alerter::DeliveryError;
use super::config::SnsOutput;
use super::message::SnsMessage;
use crate::SinkError;

/// An SNS topic.
pub(crate) struct Sns {
    client: aws_sdk_sns::Client,
    topic_arn: String,
    fifo: bool,
}

impl Sns {
    /// Credentials from the AWS chain, the topic's region, the configured
    /// endpoint; no request is made.
    pub(crate) async fn connect(cfg: &SnsOutput) -> Result<Sns, SinkError> {
        let region = cfg.region()?;
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region))
            .load()
            .await;
        let mut sns = aws_sdk_sns::config::Builder::from(&shared);
        if let Some(endpoint) = &cfg.endpoint {
            sns = sns.endpoint_url(endpoint);
        }
        Ok(Sns {
            client: aws_sdk_sns::Client::from_conf(sns.build()),
            topic_arn: cfg.topic_arn.clone(),
            fifo: cfg.is_fifo(),
        })
    }

    /// Publishes one message; the bytes sent.
    pub(crate) async fn publish(&self, message: SnsMessage) -> Result<u64, DeliveryError> {
        let bytes = message.message.len() as u64;
        let mut publish = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(message.subject)
            .message_structure("json")
            .message(message.message);
        if self.fifo {
            // A FIFO topic orders per group and needs an id to drop
            // duplicates by; every alert message is new.
            publish = publish
                .message_group_id("seclake-alerts")
                .message_deduplication_id(uuid::Uuid::new_v4().simple().to_string());
        }
        publish.send().await.map(|_| bytes).map_err(|e| {
            let e = e.into_service_error();
            DeliveryError::Sns(match &e {
                PublishError::NotFoundException(_) => {
                    format!("no topic {} ({})", self.topic_arn, DisplayErrorContext(&e))
                }
                _ => DisplayErrorContext(&e).to_string(),
            })
        })
    }
}
