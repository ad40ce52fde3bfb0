//! Alerts as a sink: it reads every scored event, matches the rules on the
//! sink's thread and queues the alerts; the [`Alerter`]'s tasks send them.
//! It takes no part in acknowledgement: an alert never holds the lake's
//! commits, and when the sink falls behind batches are skipped for it.

use super::{AlertRules, AlertSinkConfig, AlertStats, Alerter, Routed};
use crate::{Sink, SinkBatch, SinkError, SinkStats};

/// The running alert sink.
pub struct AlertSink {
    rules: AlertRules,
    alerter: Option<Alerter>,
    closed: AlertStats,
}

impl AlertSink {
    /// Compiles the rules and starts the outputs' delivery tasks on the
    /// current tokio runtime.
    pub fn open(cfg: &AlertSinkConfig) -> Result<AlertSink, SinkError> {
        Ok(AlertSink {
            rules: AlertRules::new(cfg)?,
            alerter: Some(Alerter::start(&cfg.outputs)?),
            closed: AlertStats::default(),
        })
    }
}

#[async_trait::async_trait]
impl Sink for AlertSink {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        let Some(alerter) = &self.alerter else {
            return Err(SinkError::Task("the alert sink is closed".into()));
        };
        let routed = self
            .rules
            .events(batch.format, &batch.events, super::rules::now_ms())?;
        for Routed { alert, outputs } in routed {
            alerter.send(alert, &outputs);
        }
        Ok(())
    }

    async fn roll_due(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        if let Some(alerter) = self.alerter.take() {
            self.closed = alerter.close().await;
        }
        Ok(())
    }

    /// Rows: alerts sent; files: messages; bytes: their bytes.
    fn stats(&self) -> SinkStats {
        let stats = self.alerter.as_ref().map_or(self.closed, Alerter::stats);
        SinkStats {
            rows: stats.sent,
            files: stats.messages,
            bytes: stats.bytes,
            ..SinkStats::default()
        }
    }
}

#[async_trait::async_trait]
impl crate::SinkSpec for AlertSinkConfig {
    fn name(&self) -> &'static str {
        "alert"
    }

    fn takes(&self) -> crate::Takes {
        crate::Takes::Events
    }

    /// Alerts act on events; the lake never waits for Slack.
    fn acknowledges(&self) -> bool {
        false
    }

    fn check(&self) -> Result<(), SinkError> {
        AlertSinkConfig::check(self)
    }

    async fn open(&self) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(AlertSink::open(self)?))
    }
}
