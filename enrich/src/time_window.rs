//! Which event times are believable: a window around the time a record was
//! ingested. A clock-skewed or forged timestamp outside it would land the
//! event in a partition nobody queries (`dt=3000-01-01`), so such records are
//! dead letters instead.

use std::fmt;
use std::time::Duration;

/// How far an event's time may lie from its ingest time; the `[pipeline]`
/// keys `max_future_skew` and `max_age`. An event exactly at a limit is
/// accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// How far after ingest an event may be (clocks of the logging hosts
    /// running ahead); `pipeline.max_future_skew`.
    pub max_future_skew: Duration,
    /// How far before ingest an event may be; `None` accepts any age
    /// (replays of old logs); `pipeline.max_age`.
    pub max_age: Option<Duration>,
}

impl TimeWindow {
    /// The default `pipeline.max_future_skew`: an hour.
    pub const DEFAULT_MAX_FUTURE_SKEW: Duration = Duration::from_secs(3600);

    /// Accepts every event time. For tests and benches that parse committed
    /// samples with a made-up ingest time; a pipeline uses [`TimeWindow::default`]
    /// or its config.
    pub const UNBOUNDED: TimeWindow = TimeWindow {
        max_future_skew: Duration::MAX,
        max_age: None,
    };

    /// Whether an event at `ts` (µs since the epoch) ingested at `ingest_ts`
    /// (µs) is inside the window; if not, which limit it breaks.
    pub fn check(&self, ts: i64, ingest_ts: i64) -> Result<(), OutOfWindow> {
        // i128: the difference of two i64 always fits, and so does any
        // Duration in µs (Duration::MAX is about 1.8e25 µs).
        let ahead = i128::from(ts) - i128::from(ingest_ts);
        let limit = if ahead > 0 && ahead.unsigned_abs() > self.max_future_skew.as_micros() {
            TimeLimit::MaxFutureSkew(self.max_future_skew)
        } else if let Some(max_age) = self.max_age
            && ahead < 0
            && ahead.unsigned_abs() > max_age.as_micros()
        {
            TimeLimit::MaxAge(max_age)
        } else {
            return Ok(());
        };
        Err(OutOfWindow {
            ts,
            ingest_ts,
            limit,
        })
    }
}

impl Default for TimeWindow {
    /// `max_future_skew` an hour, no `max_age`.
    fn default() -> TimeWindow {
        TimeWindow {
            max_future_skew: TimeWindow::DEFAULT_MAX_FUTURE_SKEW,
            max_age: None,
        }
    }
}

/// The limit of a [`TimeWindow`] an event broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeLimit {
    /// The event is further ahead of its ingest time than this.
    MaxFutureSkew(Duration),
    /// The event is older than this at ingest.
    MaxAge(Duration),
}

/// An event time outside the [`TimeWindow`]. Displays as, e.g., `event time
/// 3000-01-01T00:00:00Z is 355408d 3h after ingest (2026-12-04T21:00:00Z);
/// the limit is pipeline.max_future_skew = 1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfWindow {
    /// The event time, µs since the epoch.
    pub ts: i64,
    /// The ingest time, µs since the epoch.
    pub ingest_ts: i64,
    /// The limit it broke.
    pub limit: TimeLimit,
}

impl fmt::Display for OutOfWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let apart = (i128::from(self.ts) - i128::from(self.ingest_ts)).unsigned_abs();
        let (side, key, limit) = match self.limit {
            TimeLimit::MaxFutureSkew(d) => ("after", "max_future_skew", d),
            TimeLimit::MaxAge(d) => ("before", "max_age", d),
        };
        write!(
            f,
            "event time {} is {} {side} ingest ({}); the limit is pipeline.{key} = {}",
            Instant(self.ts),
            Span(apart, 2),
            Instant(self.ingest_ts),
            Span(limit.as_micros(), usize::MAX),
        )
    }
}

/// µs since the epoch as RFC 3339 UTC; as a number beyond chrono's years.
struct Instant(i64);

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match chrono::DateTime::from_timestamp_micros(self.0) {
            Some(t) => write!(
                f,
                "{}",
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ),
            None => write!(f, "{} µs since the epoch", self.0),
        }
    }
}

/// A span of µs in the units the config accepts (`1d 2h`, `30m`, `90s`):
/// `Span(us, n)` shows its `n` largest non-zero units, whole seconds at the
/// finest unless it is under a second.
struct Span(u128, usize);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u128, &str); 6] = [
            (86_400_000_000, "d"),
            (3_600_000_000, "h"),
            (60_000_000, "m"),
            (1_000_000, "s"),
            (1_000, "ms"),
            (1, "µs"),
        ];
        let Span(mut rest, most) = *self;
        if rest == 0 {
            return f.write_str("0s");
        }
        let seconds_or_more = rest >= 1_000_000;
        let mut shown = 0;
        for (size, unit) in UNITS {
            if seconds_or_more && size < 1_000_000 {
                break;
            }
            let n = rest / size;
            if n > 0 && shown < most {
                if shown > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{n}{unit}")?;
                shown += 1;
            }
            rest %= size;
        }
        Ok(())
    }
}

/// The window's limits as the config writes them: human durations (`"90s"`,
/// `"30m"`, `"1h"`, `"7d"`, `"1h 30m"`), for `serde(deserialize_with)` on
/// `Option<Duration>` fields that also take `serde(default)`.
pub mod config {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer};

    /// A duration.
    pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        parse(&String::deserialize(d)?).map(Some)
    }

    /// A duration, or `"off"` for none.
    pub fn duration_or_off<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match String::deserialize(d)?.as_str() {
            "off" => Ok(None),
            text => parse(text).map(Some),
        }
    }

    fn parse<E: serde::de::Error>(text: &str) -> Result<Duration, E> {
        humantime::parse_duration(text).map_err(|e| {
            E::custom(format!(
                "{text:?} is not a duration ({e}); write e.g. \"90s\", \"30m\", \"1h\" or \"7d\""
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Limits {
        #[serde(default, deserialize_with = "config::duration")]
        skew: Option<Duration>,
        #[serde(default, deserialize_with = "config::duration_or_off")]
        age: Option<Duration>,
    }

    fn limits(text: &str) -> Result<Limits, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn config_durations_are_human_and_max_age_may_be_off() {
        let l = limits("skew = \"90s\"\nage = \"7d\"").unwrap();
        assert_eq!(
            (l.skew, l.age),
            (
                Some(Duration::from_secs(90)),
                Some(Duration::from_secs(7 * 86_400))
            )
        );
        let l = limits("skew = \"1h 30m\"\nage = \"off\"").unwrap();
        assert_eq!((l.skew, l.age), (Some(Duration::from_secs(5400)), None));
        let l = limits("").unwrap();
        assert_eq!((l.skew, l.age), (None, None));
    }

    #[test]
    fn a_bad_config_duration_says_what_it_read_and_what_to_write() {
        let err = limits("skew = \"soon\"").unwrap_err().to_string();
        assert!(
            err.contains("\"soon\" is not a duration") && err.contains("\"1h\""),
            "{err}"
        );
        assert!(limits("skew = \"off\"").is_err(), "only max_age may be off");
    }

    const HOUR_US: i64 = 3_600_000_000;

    #[test]
    fn spans_print_in_config_units() {
        let us = |d: Duration| Span(d.as_micros(), usize::MAX).to_string();
        assert_eq!(us(Duration::from_secs(3600)), "1h");
        assert_eq!(us(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(us(Duration::from_secs(90)), "1m 30s");
        assert_eq!(us(Duration::from_millis(1500)), "1s");
        assert_eq!(us(Duration::from_millis(15)), "15ms");
        assert_eq!(us(Duration::ZERO), "0s");
        assert_eq!(Span(90_061_000_000, 2).to_string(), "1d 1h");
    }

    #[test]
    fn an_event_after_the_skew_names_both_times_and_the_limit() {
        let ingest = 1_795_000_000_000_000; // 2026-11-18T11:06:40Z
        let err = TimeWindow::default()
            .check(ingest + HOUR_US + 1, ingest)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "event time 2026-11-18T12:06:40.000001Z is 1h after ingest \
             (2026-11-18T11:06:40Z); the limit is pipeline.max_future_skew = 1h"
        );
    }

    #[test]
    fn times_beyond_chrono_print_as_numbers() {
        let err = TimeWindow::default().check(i64::MAX, 0).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("event time 9223372036854775807 µs since the epoch is "),
            "{err}"
        );
    }

    #[test]
    fn the_unbounded_window_accepts_the_extremes() {
        assert_eq!(TimeWindow::UNBOUNDED.check(i64::MAX, i64::MIN), Ok(()));
        assert_eq!(TimeWindow::UNBOUNDED.check(i64::MIN, i64::MAX), Ok(()));
    }
}
