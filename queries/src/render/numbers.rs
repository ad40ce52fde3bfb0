//! Numbers as the report shows them. Every number in the HTML, the Markdown
//! and the summary goes through one of these, so each one can be traced back
//! to a field of the JSON.

use num_format::{Locale, ToFormattedString};

/// A count with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    n.to_formatted_string(&Locale::en)
}

/// A count and the noun it counts, singular for exactly one: `1 record`,
/// `0 records`, `1,204 records`. `one` and `many` are both given, so nouns
/// like `5xx response` or `client IP` need no rule of English plurals.
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// A signed integer with thousands separators: `-1,234`.
pub fn int(n: i64) -> String {
    n.to_formatted_string(&Locale::en)
}

/// A percentage with one decimal: `12.3%`.
pub fn pct(p: f64) -> String {
    if p.is_finite() {
        format!("{p:.1}%")
    } else {
        "–".to_owned()
    }
}

/// A latency in milliseconds: one decimal below 10 ms (`4.2 ms`), whole
/// milliseconds with separators above (`87 ms`, `1,204 ms`).
pub fn ms(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        "–".to_owned()
    } else if v < 10.0 {
        format!("{v:.1} ms")
    } else {
        // Saturates far beyond any real latency.
        format!("{} ms", count(v.round() as u64))
    }
}

/// A latency that may be missing (a route without timed requests).
pub fn ms_or_dash(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), ms)
}

/// An amount in Korean won: `12,345,678 KRW`.
pub fn krw(v: i64) -> String {
    format!("{} KRW", int(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_amounts_have_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(int(-1_234), "-1,234");
        assert_eq!(krw(12_345_678), "12,345,678 KRW");
    }

    #[test]
    fn a_count_of_one_takes_the_singular() {
        assert_eq!(counted(1, "record", "records"), "1 record");
        assert_eq!(counted(0, "record", "records"), "0 records");
        assert_eq!(counted(2, "record", "records"), "2 records");
        assert_eq!(
            counted(1_204, "client IP", "client IPs"),
            "1,204 client IPs"
        );
    }

    #[test]
    fn percentages_have_one_decimal() {
        assert_eq!(pct(12.345), "12.3%");
        assert_eq!(pct(0.0), "0.0%");
        assert_eq!(pct(100.0), "100.0%");
        assert_eq!(pct(f64::NAN), "–");
    }

    #[test]
    fn latencies_keep_a_decimal_only_when_small() {
        assert_eq!(ms(4.24), "4.2 ms");
        assert_eq!(ms(87.4), "87 ms");
        assert_eq!(ms(1_203.6), "1,204 ms");
        assert_eq!(ms_or_dash(None), "–");
    }
}
