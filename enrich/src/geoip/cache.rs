//! Per-handle lookup cache and string interner.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use super::GeoInfo;

/// Largest accepted `cache_size` (entries); larger values are clamped.
pub(crate) const MAX_CACHE_SIZE: usize = 1 << 20;

/// Two-way set-associative cache from address to result. A hit costs one
/// multiply, at most two key compares and the clone of the result; a miss
/// evicts the older entry of its set.
pub(crate) struct Cache {
    slots: Vec<Option<(u128, GeoInfo)>>,
    set_bits: u32,
}

impl Cache {
    /// Cache for about `capacity` entries (rounded up to a power of two);
    /// 0 disables caching.
    pub(crate) fn new(capacity: usize) -> Self {
        if capacity == 0 {
            return Cache {
                slots: Vec::new(),
                set_bits: 0,
            };
        }
        let slots = slot_count(capacity);
        Cache {
            slots: std::iter::repeat_with(|| None).take(slots).collect(),
            set_bits: (slots / 2).trailing_zeros(),
        }
    }

    /// Cache key of an address (already canonical: no IPv4-mapped IPv6).
    pub(crate) fn key(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        }
    }

    fn set(&self, key: u128) -> usize {
        let folded = (key as u64) ^ ((key >> 64) as u64);
        let hash = folded.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let set = hash.checked_shr(64 - self.set_bits).unwrap_or(0);
        (set as usize) * 2
    }

    /// Cached result for `key`, marking it most recently used.
    pub(crate) fn get(&mut self, key: u128) -> Option<&GeoInfo> {
        if self.slots.is_empty() {
            return None;
        }
        let i = self.set(key);
        if matches!(&self.slots[i], Some((k, _)) if *k == key) {
            return self.slots[i].as_ref().map(|(_, info)| info);
        }
        if matches!(&self.slots[i + 1], Some((k, _)) if *k == key) {
            self.slots.swap(i, i + 1);
            return self.slots[i].as_ref().map(|(_, info)| info);
        }
        None
    }

    /// Stores a result, evicting the least recently used entry of its set.
    pub(crate) fn insert(&mut self, key: u128, info: GeoInfo) {
        if self.slots.is_empty() {
            return;
        }
        let i = self.set(key);
        self.slots.swap(i, i + 1);
        self.slots[i] = Some((key, info));
    }

    /// Drops every entry (after a reload).
    pub(crate) fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
    }
}

fn slot_count(capacity: usize) -> usize {
    capacity.clamp(2, MAX_CACHE_SIZE).next_power_of_two()
}

/// Shares one `Arc<str>` per distinct string among a handle's results, so
/// cached entries for the same country or city do not each hold a copy.
pub(crate) struct Interner {
    strings: HashSet<Arc<str>>,
    limit: usize,
}

impl Interner {
    /// Interner that forgets everything once it holds `limit` strings.
    pub(crate) fn new(limit: usize) -> Self {
        Interner {
            strings: HashSet::new(),
            limit: limit.max(1024),
        }
    }

    pub(crate) fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(s) {
            return shared.clone();
        }
        if self.strings.len() >= self.limit {
            self.strings.clear();
        }
        let shared: Arc<str> = Arc::from(s);
        self.strings.insert(shared.clone());
        shared
    }

    pub(crate) fn clear(&mut self) {
        self.strings = HashSet::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(asn: u32) -> GeoInfo {
        GeoInfo {
            asn: Some(asn),
            ..GeoInfo::default()
        }
    }

    #[test]
    fn two_way_lru() {
        let mut c = Cache::new(2);
        assert_eq!(c.set_bits, 0);
        c.insert(1, info(1));
        c.insert(2, info(2));
        assert_eq!(c.get(1), Some(&info(1)));
        c.insert(3, info(3));
        assert_eq!(c.get(2), None);
        assert_eq!(c.get(1), Some(&info(1)));
        assert_eq!(c.get(3), Some(&info(3)));
        c.clear();
        assert_eq!(c.get(3), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(Cache::new(0).slots.len(), 0);
        assert_eq!(Cache::new(1).slots.len(), 2);
        assert_eq!(Cache::new(1000).slots.len(), 1024);
        assert_eq!(slot_count(usize::MAX), MAX_CACHE_SIZE);
        assert_eq!(slot_count(MAX_CACHE_SIZE - 1), MAX_CACHE_SIZE);
        let mut off = Cache::new(0);
        off.insert(1, info(1));
        assert_eq!(off.get(1), None);
    }

    #[test]
    fn many_keys_stay_findable_until_evicted() {
        let mut c = Cache::new(1024);
        for k in 0..256u128 {
            c.insert(
                Cache::key(IpAddr::from([10, 0, 0, k as u8])),
                info(k as u32),
            );
        }
        let hits = (0..256u128)
            .filter(|&k| {
                c.get(Cache::key(IpAddr::from([10, 0, 0, k as u8]))) == Some(&info(k as u32))
            })
            .count();
        assert!(hits > 200, "{hits}");
    }

    #[test]
    fn interner_shares_strings() {
        let mut i = Interner::new(0);
        let a = i.intern("United Kingdom");
        let b = i.intern("United Kingdom");
        assert!(Arc::ptr_eq(&a, &b));
        i.clear();
        assert!(!Arc::ptr_eq(&a, &i.intern("United Kingdom")));
    }
}
