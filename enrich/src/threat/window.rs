//! Per-IP sliding windows over event time: request rate, block ratio and
//! distinct URIs, with a bounded number of tracked IPs (LRU eviction).

use std::hash::{BuildHasher, Hasher};
use std::mem::offset_of;
use std::net::IpAddr;

use hashbrown::HashTable;

use super::rules::Rule;
use super::{Reason, ThreatLevel};

/// Seconds covered by the request-count window.
const SECS: usize = 60;
/// The distinct-URI window is `URI_SLOTS` slots of `URI_SLOT_SECS` seconds:
/// it covers the current slot and the 5 before it, i.e. the last 50-60 s.
const URI_SLOTS: usize = 6;
const URI_SLOT_SECS: i64 = 10;
/// Bits of one linear-counting sketch.
const SKETCH_BITS: u32 = 256;
const SKETCH_WORDS: usize = (SKETCH_BITS / 64) as usize;
const MICROS: i64 = 1_000_000;

/// `window.rate`: more than `max_per_minute` requests in the last 60 s.
#[derive(Debug, Clone)]
pub(crate) struct RateRule {
    pub rule: Rule,
    pub max_per_minute: u32,
}

/// `window.block_ratio`: blocked/total above the ratio with enough requests.
#[derive(Debug, Clone)]
pub(crate) struct BlockRatioRule {
    pub rule: Rule,
    pub ratio_permille: u32,
    pub min_requests: u32,
}

/// `window.scanner`: more than `max_distinct` distinct URIs.
#[derive(Debug, Clone)]
pub(crate) struct ScannerRule {
    pub rule: Rule,
    /// Fires when fewer sketch bits than this are still zero.
    fire_below_zeros: u32,
}

impl ScannerRule {
    /// Linear counting estimates `n = -m ln(z / m)` from `z` zero bits of `m`,
    /// so `n > max` exactly when `z < m e^(-max/m)`; that bound is computed once.
    pub(crate) fn new(rule: Rule, max_distinct: u32) -> ScannerRule {
        let m = f64::from(SKETCH_BITS);
        let bound = m * (-f64::from(max_distinct) / m).exp();
        ScannerRule {
            rule,
            fire_below_zeros: bound.ceil() as u32,
        }
    }
}

/// The compiled `[window]` section.
#[derive(Debug, Clone)]
pub(crate) struct WindowRules {
    pub max_ips: usize,
    pub rate: Option<RateRule>,
    pub block_ratio: Option<BlockRatioRule>,
    pub scanner: Option<ScannerRule>,
}

/// The window rules that fired for one request: at most one reason per rule,
/// stored inline (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowFindings {
    reasons: [Reason; 3],
    len: u8,
    points: u8,
    min_level: ThreatLevel,
}

impl Default for WindowFindings {
    fn default() -> WindowFindings {
        const UNUSED: Reason = Reason {
            rule: "",
            points: 0,
        };
        WindowFindings {
            reasons: [UNUSED; 3],
            len: 0,
            points: 0,
            min_level: ThreatLevel::Low,
        }
    }
}

impl WindowFindings {
    fn push(&mut self, rule: &Rule) {
        self.reasons[usize::from(self.len)] = Reason {
            rule: rule.id,
            points: rule.points,
        };
        self.len += 1;
        self.points = self.points.saturating_add(rule.points);
        self.min_level = self.min_level.max(rule.min_level);
    }

    /// True if no window rule fired.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sum of the fired rules' points.
    pub fn points(&self) -> u8 {
        self.points
    }

    /// Highest `min_level` of the fired rules (`Low` if none forces one).
    pub fn min_level(&self) -> ThreatLevel {
        self.min_level
    }

    /// The fired rules, in the order rate, block ratio, scanner.
    pub fn reasons(&self) -> &[Reason] {
        &self.reasons[..usize::from(self.len)]
    }
}

/// Per-IP sliding windows over event time, for the single sequential stage.
/// Deterministic for a given input sequence; memory is bounded by
/// `window.max_ips` times about 0.5 KiB.
pub struct WindowState {
    rules: WindowRules,
    /// Slot numbers by the hash of their window's key: 4 bytes an entry, so
    /// the index stays in cache while the windows themselves don't.
    index: HashTable<u32>,
    hasher: SeededState,
    slots: Vec<IpWindow>,
    /// Per slot, the tick of its latest request: kept apart from the
    /// windows so that eviction scans one dense array.
    last_seen: Vec<u64>,
    /// Slots freed by eviction, reused before the slab grows.
    free: Vec<u32>,
    /// Counts observed requests; `last_seen` orders eviction.
    tick: u64,
}

impl std::fmt::Debug for WindowState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowState")
            .field("tracked_ips", &self.tracked_ips())
            .field("max_ips", &self.rules.max_ips)
            .finish_non_exhaustive()
    }
}

/// One IP's windows, laid out so that a request touches few cache lines.
/// Second `s` lives in bucket `s mod 60` and URI slot `(s div 10) mod 6`;
/// buckets and slots older than the window are cleared as `newest` advances,
/// so the rings only ever hold the current window.
#[derive(Clone)]
#[repr(C, align(64))]
struct IpWindow {
    key: u128,
    /// Newest event second seen for this IP.
    newest: i64,
    /// False once evicted: a freed slot keeps its old key.
    live: bool,
    total: u32,
    blocked_total: u32,
    /// Per second: requests and blocked requests.
    buckets: [[u16; 2]; SECS],
    uris: [[u64; SKETCH_WORDS]; URI_SLOTS],
}

impl IpWindow {
    fn new(key: u128, sec: i64) -> IpWindow {
        IpWindow {
            key,
            newest: sec,
            live: true,
            total: 0,
            blocked_total: 0,
            buckets: [[0; 2]; SECS],
            uris: [[0; SKETCH_WORDS]; URI_SLOTS],
        }
    }

    /// Records a request; false (nothing recorded) if it is 60 s or more
    /// older than the newest request seen from this IP.
    fn record(&mut self, sec: i64, blocked: bool, uri_hash: u64) -> bool {
        if sec > self.newest {
            self.advance(sec);
        } else if self.newest - sec >= SECS as i64 {
            return false;
        }
        let bucket = &mut self.buckets[sec.rem_euclid(SECS as i64) as usize];
        // A saturated bucket drops the request from both counts alike.
        if bucket[0] < u16::MAX {
            bucket[0] += 1;
            self.total += 1;
            if blocked {
                bucket[1] += 1;
                self.blocked_total += 1;
            }
        }
        let epoch = sec.div_euclid(URI_SLOT_SECS);
        if self.newest.div_euclid(URI_SLOT_SECS) - epoch < URI_SLOTS as i64 {
            // Fibonacci hashing: the top byte of the product mixes all input bits.
            let bit = (uri_hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize;
            let slot = &mut self.uris[epoch.rem_euclid(URI_SLOTS as i64) as usize];
            slot[bit / 64] |= 1 << (bit % 64);
        }
        true
    }

    fn advance(&mut self, sec: i64) {
        if sec - self.newest >= SECS as i64 {
            self.buckets = [[0; 2]; SECS];
            self.total = 0;
            self.blocked_total = 0;
        } else {
            for s in self.newest + 1..=sec {
                let bucket = &mut self.buckets[s.rem_euclid(SECS as i64) as usize];
                self.total -= u32::from(bucket[0]);
                self.blocked_total -= u32::from(bucket[1]);
                *bucket = [0; 2];
            }
        }
        let (old, new) = (
            self.newest.div_euclid(URI_SLOT_SECS),
            sec.div_euclid(URI_SLOT_SECS),
        );
        if new - old >= URI_SLOTS as i64 {
            self.uris = [[0; SKETCH_WORDS]; URI_SLOTS];
        } else {
            for e in old + 1..=new {
                self.uris[e.rem_euclid(URI_SLOTS as i64) as usize] = [0; SKETCH_WORDS];
            }
        }
        self.newest = sec;
    }

    fn zero_uri_bits(&self) -> u32 {
        let mut ones = 0;
        for w in 0..SKETCH_WORDS {
            let word = self.uris.iter().fold(0u64, |acc, slot| acc | slot[w]);
            ones += word.count_ones();
        }
        SKETCH_BITS - ones
    }

    fn evaluate(&self, rules: &WindowRules) -> WindowFindings {
        let mut f = WindowFindings::default();
        if let Some(r) = &rules.rate
            && self.total > r.max_per_minute
        {
            f.push(&r.rule);
        }
        if let Some(r) = &rules.block_ratio
            && self.total >= r.min_requests
            && u64::from(self.blocked_total) * 1000
                > u64::from(r.ratio_permille) * u64::from(self.total)
        {
            f.push(&r.rule);
        }
        // Each recorded request sets at most one sketch bit, and the URI
        // slots never reach further back than the request buckets, so with
        // few requests the sketch has too many zero bits to fire: skip it.
        if let Some(r) = &rules.scanner
            && SKETCH_BITS.saturating_sub(self.total) < r.fire_below_zeros
            && self.zero_uri_bits() < r.fire_below_zeros
        {
            f.push(&r.rule);
        }
        f
    }
}

impl WindowState {
    pub(crate) fn new(rules: WindowRules) -> WindowState {
        WindowState {
            rules,
            index: HashTable::new(),
            hasher: SeededState::new(),
            slots: Vec::new(),
            last_seen: Vec::new(),
            free: Vec::new(),
            tick: 0,
        }
    }

    /// Records one request (`ts_us`: event time, µs since the epoch) and
    /// returns the window findings for it. Every request made while an IP is
    /// over a threshold gets that rule's reason. A request 60 s or more older
    /// than the newest one seen from its IP is not recorded and gets none.
    pub fn observe(
        &mut self,
        ip: IpAddr,
        ts_us: i64,
        blocked: bool,
        uri_hash: u64,
    ) -> WindowFindings {
        let lookup = self.lookup(ip, ts_us);
        self.observe_at(lookup, ts_us, blocked, uri_hash)
    }

    /// Starts [`WindowState::observe_at`] for a request a few requests ahead:
    /// finds the slot its IP probably has and starts loading the cache lines
    /// that request will touch. With tens of thousands of IPs tracked a
    /// window is rarely cached, so issuing this early overlaps the misses.
    pub fn lookup(&self, ip: IpAddr, ts_us: i64) -> Lookup {
        let key = ip_key(ip);
        let hash = self.hasher.hash_one(key);
        // The first slot whose hash tag matches: usually the IP's own. It is
        // only a hint, checked against the key when the request is observed.
        let slot = self.index.find(hash, |_| true).copied();
        if let Some(w) = slot.and_then(|i| self.slots.get(i as usize)) {
            let base = std::ptr::from_ref(w).cast::<u8>();
            let sec = ts_us.div_euclid(MICROS);
            let bucket = offset_of!(IpWindow, buckets)
                + sec.rem_euclid(SECS as i64) as usize * size_of::<[u16; 2]>();
            let uris = offset_of!(IpWindow, uris)
                + sec.div_euclid(URI_SLOT_SECS).rem_euclid(URI_SLOTS as i64) as usize
                    * size_of::<[u64; SKETCH_WORDS]>();
            for offset in [0, bucket, uris] {
                prefetch(base.wrapping_add(offset).cast());
            }
        }
        Lookup { key, hash, slot }
    }

    /// [`WindowState::observe`] with the IP looked up earlier by
    /// [`WindowState::lookup`]; requests observed since then are accounted for.
    pub fn observe_at(
        &mut self,
        lookup: Lookup,
        ts_us: i64,
        blocked: bool,
        uri_hash: u64,
    ) -> WindowFindings {
        let r = &self.rules;
        if r.rate.is_none() && r.block_ratio.is_none() && r.scanner.is_none() {
            return WindowFindings::default();
        }
        self.tick += 1;
        let sec = ts_us.div_euclid(MICROS);
        let Lookup { key, hash, slot } = lookup;
        let hinted = slot.filter(|&i| {
            self.slots
                .get(i as usize)
                .is_some_and(|w| w.live && w.key == key)
        });
        let slots = &self.slots;
        let idx = match hinted.or_else(|| {
            self.index
                .find(hash, |&i| slots[i as usize].key == key)
                .copied()
        }) {
            Some(i) => i,
            None => self.insert(key, hash, sec),
        };
        self.last_seen[idx as usize] = self.tick;
        let w = &mut self.slots[idx as usize];
        if !w.record(sec, blocked, uri_hash) {
            return WindowFindings::default();
        }
        w.evaluate(&self.rules)
    }

    /// Number of IPs currently tracked (at most `window.max_ips`).
    pub fn tracked_ips(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn insert(&mut self, key: u128, hash: u64, sec: i64) -> u32 {
        if self.free.is_empty() && self.slots.len() >= self.rules.max_ips {
            self.evict();
        }
        let fresh = IpWindow::new(key, sec);
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = fresh;
                i
            }
            None => {
                self.slots.push(fresh);
                self.last_seen.push(self.tick);
                (self.slots.len() - 1) as u32
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(slots[j as usize].key));
        i
    }

    /// Frees the least recently seen sixteenth of the slots at once, so that
    /// eviction costs O(1) amortized per new IP and a request touches no
    /// shared recency list.
    fn evict(&mut self) {
        let n = (self.slots.len() / 16).max(1);
        let mut by_age: Vec<(u64, u32)> = self
            .last_seen
            .iter()
            .enumerate()
            .map(|(i, &seen)| (seen, i as u32))
            .collect();
        if n < by_age.len() {
            by_age.select_nth_unstable(n);
        }
        by_age.truncate(n);
        // Ticks are unique, so the evicted set doesn't depend on the sort.
        by_age.sort_unstable();
        for &(_, i) in by_age.iter().rev() {
            let w = &mut self.slots[i as usize];
            w.live = false;
            let hash = self.hasher.hash_one(w.key);
            if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
                entry.remove();
            }
            self.free.push(i);
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn prefetch(p: *const i8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p) }
}

#[cfg(not(target_arch = "x86_64"))]
fn prefetch(_p: *const i8) {}

/// One key per address: IPv4 and IPv4-mapped IPv6 map to the same key.
fn ip_key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// A request's IP as found by [`WindowState::lookup`].
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    key: u128,
    hash: u64,
    /// The slot the IP probably has, if any.
    slot: Option<u32>,
}

/// xxh3 with a per-state random seed, so that attacker-chosen addresses can't
/// be picked to collide. Outputs don't depend on the seed: the index is only
/// looked up, never iterated.
#[derive(Clone)]
struct SeededState(u64);

impl SeededState {
    fn new() -> SeededState {
        SeededState(std::hash::RandomState::new().hash_one(0u8))
    }
}

impl BuildHasher for SeededState {
    type Hasher = SeededHasher;

    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.0)
    }
}

struct SeededHasher(u64);

impl Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u128(&mut self, v: u128) {
        self.write(&v.to_le_bytes());
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
