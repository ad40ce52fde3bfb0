//! ASN range CSVs in the ip-location-db layout:
//! `ip_range_start,ip_range_end,autonomous_system_number,autonomous_system_organization`,
//! inclusive ranges, addresses either dotted/colon text or integers (the
//! `-num` files). Loaded into sorted, non-overlapping ranges searched by
//! binary search; organisation names are interned.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;

use super::GeoIpError;

const NO_ORG: u32 = u32::MAX;

/// One inclusive address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range<K> {
    start: K,
    end: K,
    asn: u32,
    org: u32,
}

/// An address type ranges can be built over.
trait Key: Copy + Ord {
    fn next(self) -> Option<Self>;
    fn prev(self) -> Option<Self>;
}

impl Key for u32 {
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn prev(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

impl Key for u128 {
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn prev(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

/// The ranges of one ASN CSV file.
#[derive(Debug)]
pub(crate) struct AsnTable {
    v4: Vec<Range<u32>>,
    v6: Vec<Range<u128>>,
    orgs: Vec<Arc<str>>,
}

impl AsnTable {
    /// Reads and indexes a CSV file; errors name the file and line.
    pub(crate) fn load(path: &Path) -> Result<Self, GeoIpError> {
        let io_err = |error| GeoIpError::Io {
            path: path.to_owned(),
            error,
        };
        let mut reader = BufReader::with_capacity(1 << 16, File::open(path).map_err(io_err)?);
        let numeric_v6 = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .is_some_and(|n| n.contains("ipv6") || n.contains("v6"));
        let mut builder = Builder::default();
        let mut line = String::new();
        let mut line_no = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line).map_err(io_err)? == 0 {
                break;
            }
            line_no += 1;
            let text = line.trim_start_matches('\u{feff}').trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            match builder.add_row(text, numeric_v6) {
                Ok(()) => {}
                // A first line that is not a range is a header.
                Err(_) if builder.rows == 0 && line_no == 1 => {}
                Err(message) => {
                    return Err(GeoIpError::Csv {
                        path: path.to_owned(),
                        line: line_no,
                        message,
                    });
                }
            }
        }
        if builder.rows == 0 {
            return Err(GeoIpError::EmptyCsv {
                path: path.to_owned(),
            });
        }
        Ok(AsnTable {
            v4: flatten(builder.v4),
            v6: flatten(builder.v6),
            orgs: builder.orgs,
        })
    }

    /// AS number and organisation of the range holding `ip`.
    pub(crate) fn lookup(&self, ip: IpAddr) -> Option<(u32, Option<&Arc<str>>)> {
        let (asn, org) = match ip {
            IpAddr::V4(v4) => find(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => find(&self.v6, u128::from(v6)),
        }?;
        Some((asn, self.orgs.get(org as usize)))
    }

    /// Number of (non-overlapping) ranges after loading.
    pub(crate) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

fn find<K: Key>(ranges: &[Range<K>], key: K) -> Option<(u32, u32)> {
    let i = ranges.partition_point(|r| r.start <= key);
    let r = ranges.get(i.checked_sub(1)?)?;
    (key <= r.end).then_some((r.asn, r.org))
}

#[derive(Default)]
struct Builder {
    v4: Vec<Range<u32>>,
    v6: Vec<Range<u128>>,
    orgs: Vec<Arc<str>>,
    org_ids: HashMap<Arc<str>, u32>,
    rows: usize,
}

impl Builder {
    fn add_row(&mut self, line: &str, numeric_v6: bool) -> Result<(), String> {
        let mut fields = CsvFields { rest: Some(line) };
        let mut required = |what: &str| match fields.next() {
            Some(field) => field,
            None => Err(format!("missing {what}")),
        };
        let start = required("ip_range_start")?;
        let end = required("ip_range_end")?;
        let asn = parse_asn(&required("autonomous_system_number")?)?;
        let org = fields.next().transpose()?.unwrap_or_default();
        let org = self.intern(org.trim());
        match (
            parse_addr(&start, numeric_v6)?,
            parse_addr(&end, numeric_v6)?,
        ) {
            (Addr::V4(start), Addr::V4(end)) => push(&mut self.v4, start, end, asn, org)?,
            (Addr::V6(start), Addr::V6(end)) => push(&mut self.v6, start, end, asn, org)?,
            _ => return Err(format!("range {start} - {end} mixes IPv4 and IPv6")),
        }
        self.rows += 1;
        Ok(())
    }

    fn intern(&mut self, org: &str) -> u32 {
        if org.is_empty() {
            return NO_ORG;
        }
        if let Some(&id) = self.org_ids.get(org) {
            return id;
        }
        let id = u32::try_from(self.orgs.len()).unwrap_or(NO_ORG);
        if id != NO_ORG {
            let org: Arc<str> = Arc::from(org);
            self.orgs.push(org.clone());
            self.org_ids.insert(org, id);
        }
        id
    }
}

fn push<K: Key>(
    ranges: &mut Vec<Range<K>>,
    start: K,
    end: K,
    asn: Option<u32>,
    org: u32,
) -> Result<(), String> {
    if end < start {
        return Err("ip_range_end is before ip_range_start".to_owned());
    }
    // AS0 means "not routed" (RFC 7607): the range is known to have no AS.
    if let Some(asn) = asn {
        ranges.push(Range {
            start,
            end,
            asn,
            org,
        });
    }
    Ok(())
}

enum Addr {
    V4(u32),
    V6(u128),
}

fn parse_addr(field: &str, numeric_v6: bool) -> Result<Addr, String> {
    let field = field.trim();
    if let Ok(v4) = field.parse::<Ipv4Addr>() {
        return Ok(Addr::V4(u32::from(v4)));
    }
    if let Ok(v6) = field.parse::<Ipv6Addr>() {
        return Ok(Addr::V6(u128::from(v6)));
    }
    let n: u128 = field
        .parse()
        .map_err(|_| format!("{field:?} is not an IP address or integer"))?;
    if numeric_v6 {
        Ok(Addr::V6(n))
    } else {
        u32::try_from(n).map(Addr::V4).map_err(|_| {
            format!("{n} is beyond the IPv4 range (numeric IPv6 files need \"ipv6\" in their name)")
        })
    }
}

/// `Some(n)` for AS n, `None` for AS0.
fn parse_asn(field: &str) -> Result<Option<u32>, String> {
    let field = field.trim();
    let digits = match field.get(..2) {
        Some(p) if p.eq_ignore_ascii_case("as") => &field[2..],
        _ => field,
    };
    let asn: u32 = digits
        .parse()
        .map_err(|_| format!("{field:?} is not an AS number"))?;
    Ok((asn != 0).then_some(asn))
}

/// Splits one CSV line (RFC 4180 quoting, `""` for a quote inside quotes).
struct CsvFields<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for CsvFields<'a> {
    type Item = Result<Cow<'a, str>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest?;
        let Some(quoted) = s.strip_prefix('"') else {
            return Some(Ok(match s.split_once(',') {
                Some((field, rest)) => {
                    self.rest = Some(rest);
                    Cow::Borrowed(field)
                }
                None => {
                    self.rest = None;
                    Cow::Borrowed(s)
                }
            }));
        };
        let mut value: Option<String> = None;
        let mut chunk_start = 0;
        let bytes = quoted.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'"' {
                if bytes.get(i + 1) == Some(&b'"') {
                    value
                        .get_or_insert_with(String::new)
                        .push_str(&quoted[chunk_start..=i]);
                    i += 2;
                    chunk_start = i;
                    continue;
                }
                let field = match value {
                    Some(mut v) => {
                        v.push_str(&quoted[chunk_start..i]);
                        Cow::Owned(v)
                    }
                    None => Cow::Borrowed(&quoted[..i]),
                };
                let after = &quoted[i + 1..];
                self.rest = match after.split_once(',') {
                    Some((junk, rest)) if junk.trim().is_empty() => Some(rest),
                    None if after.trim().is_empty() => None,
                    _ => return Some(Err("text after a closing quote".to_owned())),
                };
                return Some(Ok(field));
            }
            i += 1;
        }
        self.rest = None;
        Some(Err("unterminated quoted field".to_owned()))
    }
}

/// Sorts ranges and resolves overlaps: where ranges overlap, the one that
/// starts later (or, at the same start, the narrower one) wins, and the
/// wider one keeps the addresses on either side.
fn flatten<K: Key>(mut ranges: Vec<Range<K>>) -> Vec<Range<K>> {
    ranges.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    if ranges.windows(2).all(|w| w[0].end < w[1].start) {
        ranges.shrink_to_fit();
        return ranges;
    }
    let mut out: Vec<Range<K>> = Vec::with_capacity(ranges.len() + 16);
    let mut emit = |start: K, end: K, r: &Range<K>| {
        out.push(Range { start, end, ..*r });
    };
    // `cursor` is the lowest address not yet emitted; `open` holds the ranges
    // that may still cover addresses at or after it, innermost last.
    let mut open: Vec<Range<K>> = Vec::new();
    let mut cursor: Option<K> = ranges.first().map(|r| r.start);
    for r in &ranges {
        while let (Some(top), Some(cur)) = (open.last().copied(), cursor) {
            if top.end < cur {
                open.pop();
            } else if top.end < r.start {
                emit(cur, top.end, &top);
                cursor = top.end.next();
                open.pop();
            } else {
                if let Some(before) = r.start.prev().filter(|&b| cur <= b) {
                    emit(cur, before, &top);
                }
                break;
            }
        }
        cursor = Some(r.start);
        open.push(*r);
    }
    while let (Some(top), Some(cur)) = (open.pop(), cursor) {
        if top.end >= cur {
            emit(cur, top.end, &top);
            cursor = top.end.next();
        }
    }
    out.shrink_to_fit();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str) -> Vec<String> {
        CsvFields { rest: Some(line) }
            .map(|f| f.map(Cow::into_owned))
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(fields("a,b,1,Org"), ["a", "b", "1", "Org"]);
        assert_eq!(
            fields(r#"a,b,1,"Cloudflare, Inc.""#),
            ["a", "b", "1", "Cloudflare, Inc."]
        );
        assert_eq!(
            fields(r#"a,b,1,"LLC ""SPUTNIK""""#),
            ["a", "b", "1", r#"LLC "SPUTNIK""#]
        );
        assert_eq!(fields(r#""a",b,,"#), ["a", "b", "", ""]);
        assert!(
            CsvFields {
                rest: Some(r#"a,"open"#)
            }
            .any(|f| f.is_err())
        );
    }

    fn r(start: u32, end: u32, asn: u32) -> Range<u32> {
        Range {
            start,
            end,
            asn,
            org: NO_ORG,
        }
    }

    #[test]
    fn flatten_keeps_disjoint_ranges() {
        let got = flatten(vec![r(10, 20, 2), r(0, 9, 1), r(21, u32::MAX, 3)]);
        assert_eq!(got, [r(0, 9, 1), r(10, 20, 2), r(21, u32::MAX, 3)]);
    }

    #[test]
    fn flatten_resolves_nesting_and_partial_overlap() {
        let got = flatten(vec![r(0, 100, 1), r(10, 20, 2), r(15, 30, 3), r(50, 60, 4)]);
        assert_eq!(
            got,
            [
                r(0, 9, 1),
                r(10, 14, 2),
                r(15, 30, 3),
                r(31, 49, 1),
                r(50, 60, 4),
                r(61, 100, 1)
            ]
        );
        // The overlap found in the real ip-location-db asn-ipv4.csv.
        let got = flatten(vec![r(5, 10, 749), r(8, 12, 721)]);
        assert_eq!(got, [r(5, 7, 749), r(8, 12, 721)]);
        let got = flatten(vec![
            r(0, u32::MAX, 1),
            r(0, 5, 2),
            r(u32::MAX, u32::MAX, 3),
        ]);
        assert_eq!(
            got,
            [r(0, 5, 2), r(6, u32::MAX - 1, 1), r(u32::MAX, u32::MAX, 3)]
        );
        let got = flatten(vec![r(3, 3, 1), r(3, 3, 2)]);
        assert_eq!(got, [r(3, 3, 2)]);
    }

    #[test]
    fn find_edges() {
        let t = [r(10, 20, 1), r(30, 30, 2)];
        assert_eq!(find(&t, 9), None);
        assert_eq!(find(&t, 10), Some((1, NO_ORG)));
        assert_eq!(find(&t, 20), Some((1, NO_ORG)));
        assert_eq!(find(&t, 21), None);
        assert_eq!(find(&t, 30), Some((2, NO_ORG)));
        assert_eq!(find(&t, 31), None);
        assert_eq!(find::<u32>(&[], 1), None);
    }

    #[test]
    fn field_parsers() {
        assert!(matches!(
            parse_addr("1.0.0.0", false),
            Ok(Addr::V4(0x0100_0000))
        ));
        assert!(matches!(
            parse_addr("16777216", false),
            Ok(Addr::V4(0x0100_0000))
        ));
        assert!(matches!(
            parse_addr("16777216", true),
            Ok(Addr::V6(0x0100_0000))
        ));
        assert!(parse_addr("4294967296", false).is_err());
        assert!(matches!(parse_addr("2001::", false), Ok(Addr::V6(_))));
        assert!(parse_addr("nope", false).is_err());
        assert_eq!(parse_asn("13335"), Ok(Some(13335)));
        assert_eq!(parse_asn("AS13335"), Ok(Some(13335)));
        assert_eq!(parse_asn("0"), Ok(None));
        assert!(parse_asn("-1").is_err());
    }
}
