//! Byte-level matchers: multi-substring search (user agents, WAF labels) and
//! the AWS access key id scanner (app records).

use aho_corasick::AhoCorasick;
use memchr::memmem::Finder;

/// Case-insensitive (ASCII) search for any of a set of substrings, e.g.
/// scanner names in a `User-Agent`. aho-corasick scans once for all patterns,
/// with a SIMD prefilter.
#[derive(Debug)]
pub(crate) struct CiMatcher {
    automaton: Option<AhoCorasick>,
}

impl CiMatcher {
    /// Builds the automaton; empty patterns are ignored.
    pub(crate) fn new(patterns: &[String]) -> CiMatcher {
        let patterns: Vec<&str> = patterns
            .iter()
            .map(String::as_str)
            .filter(|p| !p.is_empty())
            .collect();
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&patterns)
            .ok()
            .filter(|_| !patterns.is_empty());
        CiMatcher { automaton }
    }

    /// True if any pattern occurs in `hay`, ignoring ASCII case.
    pub(crate) fn is_match(&self, hay: &[u8]) -> bool {
        self.automaton.as_ref().is_some_and(|a| a.is_match(hay))
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
