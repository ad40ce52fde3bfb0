//! The report day: a calendar date in a time zone, its UTC bounds, and the
//! lake partitions that overlap it.

use chrono::{DateTime, Duration, DurationRound, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::QueryError;

/// Days of history the "new attackers" section compares against.
pub const HISTORY_DAYS: i64 = 7;

/// A report day: `[start, end)` in UTC is the calendar day `date` in `tz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportDay {
    pub date: NaiveDate,
    pub tz: Tz,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl ReportDay {
    /// The day `date` in the IANA zone `tz` (`UTC`, `Asia/Seoul`, …). A day
    /// with a daylight-saving change is 23 or 25 hours long.
    pub fn new(date: NaiveDate, tz: &str) -> Result<ReportDay, QueryError> {
        let tz: Tz = tz.parse().map_err(|_| QueryError::Config {
            key: "tz",
            why: format!("{tz:?} is not an IANA time zone name (e.g. UTC, Asia/Seoul)"),
        })?;
        let start = local_midnight(tz, date)?;
        let next = date.succ_opt().ok_or_else(|| QueryError::Config {
            key: "date",
            why: format!("{date} has no next day"),
        })?;
        let end = local_midnight(tz, next)?;
        Ok(ReportDay {
            date,
            tz,
            start,
            end,
        })
    }

    /// Parses `YYYY-MM-DD`, `today` or `yesterday` (in `tz`, at `now`).
    pub fn parse(date: &str, tz: &str, now: DateTime<Utc>) -> Result<ReportDay, QueryError> {
        let zone: Tz = tz.parse().map_err(|_| QueryError::Config {
            key: "tz",
            why: format!("{tz:?} is not an IANA time zone name (e.g. UTC, Asia/Seoul)"),
        })?;
        let today = now.with_timezone(&zone).date_naive();
        let date = match date {
            "today" => today,
            "yesterday" => today - Duration::days(1),
            text => {
                NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| QueryError::Config {
                    key: "date",
                    why: format!("{text:?} is not YYYY-MM-DD, today or yesterday: {e}"),
                })?
            }
        };
        ReportDay::new(date, tz)
    }

    /// The SQL parameters of this day, as literals.
    pub fn params(&self, top: usize, critical_limit: usize) -> Params {
        let last = self.end - Duration::microseconds(1);
        let history = self.start - Duration::days(HISTORY_DAYS);
        let quote = |s: String| format!("'{s}'");
        let ts = |t: DateTime<Utc>| format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S"));
        Params(vec![
            (
                ":first_dt",
                quote(self.start.format("%Y-%m-%d").to_string()),
            ),
            (":last_dt", quote(last.format("%Y-%m-%d").to_string())),
            (
                ":first_hour",
                quote(self.start.format("%Y-%m-%dT%H").to_string()),
            ),
            (":last_hour", quote(last.format("%Y-%m-%dT%H").to_string())),
            (":start_ts", ts(self.start)),
            (":end_ts", ts(self.end)),
            (
                ":history_first_dt",
                quote(history.format("%Y-%m-%d").to_string()),
            ),
            (":history_start_ts", ts(history)),
            (":tz", quote(self.tz.name().to_owned())),
            (":top", top.to_string()),
            (":critical_limit", critical_limit.to_string()),
        ])
    }

    /// The `dt=…/hour=…` partitions the day overlaps, oldest first.
    pub fn partitions(&self) -> Vec<String> {
        let mut hour = self
            .start
            .duration_trunc(Duration::hours(1))
            .unwrap_or(self.start);
        let mut out = Vec::new();
        while hour < self.end {
            out.push(hour.format("dt=%Y-%m-%d/hour=%H").to_string());
            hour += Duration::hours(1);
        }
        out
    }
}

fn local_midnight(tz: Tz, date: NaiveDate) -> Result<DateTime<Utc>, QueryError> {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    // Where midnight is skipped by a DST change, the day starts at the first
    // instant after the gap.
    (0..=2 * 60)
        .find_map(|minutes| {
            tz.from_local_datetime(&(midnight + Duration::minutes(minutes)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| QueryError::Config {
            key: "date",
            why: format!("{date} has no midnight in {tz}"),
        })
}

/// SQL parameters (`:name`) and the literals that replace them.
#[derive(Debug, Clone)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    /// `sql` with every `:name` parameter replaced by its literal. Names are
    /// matched whole (`:top` does not touch `:topx`); text inside `'…'`
    /// literals and `--` comments is left alone.
    pub fn bind(&self, sql: &str) -> String {
        let mut out = String::with_capacity(sql.len() + 64);
        let mut rest = sql;
        while let Some(c) = rest.chars().next() {
            if c == '\'' {
                let end = rest[1..].find('\'').map_or(rest.len(), |i| i + 2);
                out.push_str(&rest[..end]);
                rest = &rest[end..];
            } else if rest.starts_with("--") {
                let end = rest.find('\n').map_or(rest.len(), |i| i + 1);
                out.push_str(&rest[..end]);
                rest = &rest[end..];
            } else if c == ':' {
                let name_len = rest[1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(rest.len(), |i| i + 1);
                let name = &rest[..name_len];
                match self.0.iter().find(|(n, _)| *n == name) {
                    Some((_, value)) => out.push_str(value),
                    None => out.push_str(name),
                }
                rest = &rest[name_len..];
            } else {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        out
    }

    /// The literal of parameter `name` (with its colon).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(date: &str, tz: &str) -> ReportDay {
        ReportDay::new(NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap(), tz).unwrap()
    }

    #[test]
    fn a_utc_day_is_24_hour_partitions_of_its_own_date() {
        let d = day("2026-11-29", "UTC");
        let parts = d.partitions();
        assert_eq!(parts.len(), 24);
        assert_eq!(parts[0], "dt=2026-11-29/hour=00");
        assert_eq!(parts[23], "dt=2026-11-29/hour=23");
        let p = d.params(10, 50);
        assert_eq!(p.get(":first_hour"), Some("'2026-11-29T00'"));
        assert_eq!(p.get(":last_hour"), Some("'2026-11-29T23'"));
        assert_eq!(p.get(":end_ts"), Some("TIMESTAMP '2026-11-30 00:00:00'"));
    }

    #[test]
    fn seoul_shifts_the_day_into_two_utc_dates() {
        let d = day("2026-11-29", "Asia/Seoul");
        assert_eq!(d.start.to_rfc3339(), "2026-11-28T15:00:00+00:00");
        let parts = d.partitions();
        assert_eq!(parts.first().unwrap(), "dt=2026-11-28/hour=15");
        assert_eq!(parts.last().unwrap(), "dt=2026-11-29/hour=14");
        let p = d.params(10, 50);
        assert_eq!(p.get(":first_dt"), Some("'2026-11-28'"));
        assert_eq!(p.get(":last_dt"), Some("'2026-11-29'"));
    }

    #[test]
    fn half_hour_zones_and_dst_days_keep_every_instant() {
        let kolkata = day("2026-11-29", "Asia/Kolkata");
        assert_eq!(kolkata.start.to_rfc3339(), "2026-11-28T18:30:00+00:00");
        assert_eq!(kolkata.partitions().len(), 25, "a half hour at each end");
        let spring = day("2026-03-08", "America/New_York");
        assert_eq!((spring.end - spring.start).num_hours(), 23);
        let fall = day("2026-11-01", "America/New_York");
        assert_eq!((fall.end - fall.start).num_hours(), 25);
    }

    #[test]
    fn bind_replaces_whole_names_outside_literals_and_comments() {
        let p = day("2026-11-29", "UTC").params(10, 50);
        let sql = "-- :top rows\nSELECT ':top', x FROM t WHERE a < :top AND b = :topx LIMIT :top";
        assert_eq!(
            p.bind(sql),
            "-- :top rows\nSELECT ':top', x FROM t WHERE a < 10 AND b = :topx LIMIT 10"
        );
    }

    #[test]
    fn bad_dates_and_zones_name_their_key() {
        let now = Utc::now();
        let e = ReportDay::parse("29/11/2026", "UTC", now).unwrap_err();
        assert!(e.to_string().starts_with("date: "), "{e}");
        let e = ReportDay::parse("2026-11-29", "Mars/Olympus", now).unwrap_err();
        assert!(e.to_string().starts_with("tz: "), "{e}");
        let y = ReportDay::parse("yesterday", "UTC", now).unwrap();
        assert_eq!(y.date, now.date_naive() - Duration::days(1));
    }
}
