//! IP intel lists (FireHOL netsets, Spamhaus DROP, plain IP lists): parsed
//! into sorted, merged address ranges searched by binary search.

use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use ipnet::IpNet;

use super::ThreatError;
use super::rules::Rule;

/// One loaded list.
pub(crate) struct IntelList {
    pub rule: Rule,
    entries: usize,
    /// Sorted, non-overlapping, non-adjacent inclusive ranges.
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IntelList {
    /// Reads and parses the list file at `path`.
    pub(crate) fn load(name: &str, path: &Path, rule: Rule) -> Result<IntelList, ThreatError> {
        let bytes = std::fs::read(path).map_err(|source| ThreatError::Io {
            path: path.to_owned(),
            source,
        })?;
        IntelList::parse(name, path, &bytes, rule)
    }

    /// Parses list contents; `path` only names the file in errors.
    pub(crate) fn parse(
        name: &str,
        path: &Path,
        bytes: &[u8],
        rule: Rule,
    ) -> Result<IntelList, ThreatError> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut entries = 0;
        for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line_err = |problem: String| ThreatError::IntelLine {
                list: name.to_owned(),
                path: path.to_owned(),
                line: n + 1,
                problem,
            };
            let line = raw.trim_ascii();
            let entry = if line.starts_with(b"{") {
                match json_cidr(line).map_err(|p| line_err(p.to_owned()))? {
                    Some(cidr) => cidr,
                    None => continue,
                }
            } else {
                let end = memchr::memchr2(b'#', b';', line).unwrap_or(line.len());
                line[..end].trim_ascii()
            };
            if entry.is_empty() {
                continue;
            }
            let text =
                std::str::from_utf8(entry).map_err(|_| line_err("not valid UTF-8".to_owned()))?;
            match parse_entry(text) {
                Some(Range::V4(lo, hi)) => v4.push((lo, hi)),
                Some(Range::V6(lo, hi)) => v6.push((lo, hi)),
                None => {
                    let shown: String = text.chars().take(60).collect();
                    return Err(line_err(format!(
                        "`{shown}` is not an IP address, CIDR or range"
                    )));
                }
            }
            entries += 1;
        }
        Ok(IntelList {
            rule,
            entries,
            v4: merge(v4),
            v6: merge(v6),
        })
    }

    /// True if `ip` (canonical: IPv4-mapped IPv6 already converted) is listed.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => in_ranges(&self.v4, u32::from(a)),
            IpAddr::V6(a) => in_ranges(&self.v6, u128::from(a)),
        }
    }

    /// Entries read from the file.
    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    /// Ranges left after merging overlapping and adjacent entries.
    pub(crate) fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

impl std::fmt::Debug for IntelList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntelList")
            .field("rule", &self.rule)
            .field("entries", &self.entries)
            .field("ranges", &self.ranges())
            .finish_non_exhaustive()
    }
}

enum Range {
    V4(u32, u32),
    V6(u128, u128),
}

/// An address, a CIDR (host bits ignored) or an inclusive `a-b` range.
fn parse_entry(s: &str) -> Option<Range> {
    if let Some((a, b)) = s.split_once('-') {
        return match (
            IpAddr::from_str(a.trim()).ok()?,
            IpAddr::from_str(b.trim()).ok()?,
        ) {
            (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => Some(Range::V4(a.into(), b.into())),
            (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => Some(Range::V6(a.into(), b.into())),
            _ => None,
        };
    }
    if s.contains('/') {
        return match IpNet::from_str(s).ok()? {
            IpNet::V4(n) => Some(Range::V4(n.network().into(), n.broadcast().into())),
            IpNet::V6(n) => Some(Range::V6(n.network().into(), n.broadcast().into())),
        };
    }
    match IpAddr::from_str(s).ok()?.to_canonical() {
        IpAddr::V4(a) => Some(Range::V4(a.into(), a.into())),
        IpAddr::V6(a) => Some(Range::V6(a.into(), a.into())),
    }
}

/// The `cidr` value of a Spamhaus DROP JSON line; `None` for a line without
/// one (the trailing metadata record).
fn json_cidr(line: &[u8]) -> Result<Option<&[u8]>, &'static str> {
    let Some(at) = memchr::memmem::find(line, b"\"cidr\"") else {
        return Ok(None);
    };
    let rest = line[at + 6..].trim_ascii_start();
    let rest = rest
        .strip_prefix(b":")
        .ok_or("expected `:` after \"cidr\"")?
        .trim_ascii_start();
    let rest = rest
        .strip_prefix(b"\"")
        .ok_or("expected a string value for \"cidr\"")?;
    let end = memchr::memchr(b'"', rest).ok_or("unterminated \"cidr\" string")?;
    Ok(Some(&rest[..end]))
}

trait Addr: Copy + Ord {
    fn next(self) -> Option<Self>;
}

impl Addr for u32 {
    fn next(self) -> Option<u32> {
        self.checked_add(1)
    }
}

impl Addr for u128 {
    fn next(self) -> Option<u128> {
        self.checked_add(1)
    }
}

/// Sorts and merges overlapping or adjacent inclusive ranges.
fn merge<T: Addr>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if last.1.next().is_none_or(|after| lo <= after) => {
                last.1 = last.1.max(hi);
            }
            _ => out.push((lo, hi)),
        }
    }
    out.shrink_to_fit();
    out
}

fn in_ranges<T: Addr>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|&(lo, _)| lo <= x);
    i > 0 && ranges[i - 1].1 >= x
}
