//! Byte-level matchers: multi-substring search (user agents, WAF labels) and
//! the AWS access key id scanner (app records).

use memchr::memmem::Finder;

/// Case-insensitive search for any of a set of ASCII patterns (at least 2
/// bytes each) in one pass: a table of pattern first bytes and, per first
/// byte, a bitset of second bytes picks the few positions worth comparing,
/// and only the patterns with that first byte are compared there.
#[derive(Debug)]
pub(crate) struct CiMatcher {
    /// 1 + index into `rows` for a pattern first byte (either case), else 0.
    first: [u8; 256],
    rows: Vec<Row>,
}

#[derive(Debug)]
struct Row {
    /// Second bytes (both cases) of the row's patterns, as a 256-bit set.
    second: [u64; 4],
    /// Lower-cased patterns starting with the row's byte.
    patterns: Vec<Box<[u8]>>,
}

impl CiMatcher {
    /// Builds the matcher; patterns must be ASCII and at least 2 bytes long.
    pub(crate) fn new(patterns: &[String]) -> CiMatcher {
        let mut m = CiMatcher {
            first: [0; 256],
            rows: Vec::new(),
        };
        for p in patterns {
            let lower: Box<[u8]> = p.as_bytes().to_ascii_lowercase().into();
            let (&a, &b) = match (lower.first(), lower.get(1)) {
                (Some(a), Some(b)) => (a, b),
                _ => continue,
            };
            let row = match m.first[usize::from(a)] {
                0 => {
                    m.rows.push(Row {
                        second: [0; 4],
                        patterns: Vec::new(),
                    });
                    let row = m.rows.len() as u8;
                    m.first[usize::from(a)] = row;
                    m.first[usize::from(a.to_ascii_uppercase())] = row;
                    row
                }
                row => row,
            };
            let row = &mut m.rows[usize::from(row - 1)];
            for c in [b, b.to_ascii_uppercase()] {
                row.second[usize::from(c >> 6)] |= 1 << (c & 63);
            }
            row.patterns.push(lower);
        }
        m
    }

    /// True if any pattern occurs in `hay`, ignoring ASCII case.
    pub(crate) fn is_match(&self, hay: &[u8]) -> bool {
        for (i, pair) in hay.windows(2).enumerate() {
            let row = self.first[usize::from(pair[0])];
            if row == 0 {
                continue;
            }
            let row = &self.rows[usize::from(row - 1)];
            let c = pair[1];
            if row.second[usize::from(c >> 6)] >> (c & 63) & 1 == 0 {
                continue;
            }
            let rest = &hay[i..];
            let hit = row.patterns.iter().any(|p| {
                rest.get(..p.len())
                    .is_some_and(|s| s.eq_ignore_ascii_case(p))
            });
            if hit {
                return true;
            }
        }
        false
    }
}

/// Case-sensitive search for any of a set of substrings, with the searchers
/// built once.
#[derive(Debug)]
pub(crate) struct AnySubstring {
    finders: Vec<Finder<'static>>,
}

impl AnySubstring {
    /// Builds one searcher per pattern.
    pub(crate) fn new(patterns: &[String]) -> AnySubstring {
        AnySubstring {
            finders: patterns
                .iter()
                .map(|p| Finder::new(p.as_bytes()).into_owned())
                .collect(),
        }
    }

    /// True if any pattern occurs in `hay`.
    pub(crate) fn is_match(&self, hay: &[u8]) -> bool {
        self.finders.iter().any(|f| f.find(hay).is_some())
    }
}

/// Finds AWS access key ids: `AKIA` or `ASIA` followed by 16 of `[A-Z0-9]`,
/// not preceded or followed by a word character `[A-Za-z0-9_]`.
#[derive(Debug)]
pub(crate) struct KeyScanner {
    finders: [Finder<'static>; 2],
}

const KEY_LEN: usize = 20;

impl KeyScanner {
    /// Builds the two prefix finders.
    pub(crate) fn new() -> KeyScanner {
        KeyScanner {
            finders: [
                Finder::new(b"AKIA").into_owned(),
                Finder::new(b"ASIA").into_owned(),
            ],
        }
    }

    /// True if `text` contains an access key id.
    pub(crate) fn contains_key(&self, text: &[u8]) -> bool {
        self.finders
            .iter()
            .any(|f| f.find_iter(text).any(|i| key_at(text, i)))
    }
}

fn key_at(text: &[u8], start: usize) -> bool {
    let end = start + KEY_LEN;
    let Some(body) = text.get(start + 4..end) else {
        return false;
    };
    body.iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && !text.get(end).is_some_and(|&b| is_word(b))
        && boundary_before(text, start)
}

/// A non-word byte before `start`, or a JSON escape like `\n` (the record is
/// usually JSON, where a key on a new line of a message follows `\n`).
fn boundary_before(text: &[u8], start: usize) -> bool {
    match start.checked_sub(1).map(|i| text[i]) {
        None => true,
        Some(b) if !is_word(b) => true,
        Some(b'n' | b't' | b'r') => start >= 2 && text[start - 2] == b'\\',
        Some(_) => false,
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}
