//! GeoIP lookups per second, with a warm cache and with cache misses.
//!
//! Databases: MaxMind's `GeoLite2-City-Test.mmdb` from the shared directory
//! (`$SECLAKE_SHARED/geoip/`, default `<workspace>/../shared/geoip/`), and,
//! when `SECLAKE_GEOIP_CITY` names them (comma-separated), full GeoLite2 or
//! ip-location-db city files, with `SECLAKE_GEOIP_ASN` added if set. A
//! database that is not there is skipped with a message, not failed.
//!
//! Per database:
//! - `warm_cache` — the client IPs of fixture WAF records, looked up through
//!   a handle whose cache already holds them: the steady state of a worker;
//! - `no_cache` — the same IPs with `cache_size = 0`: every public address
//!   goes to the memory-mapped database;
//! - `random_miss` — random public IPv4 addresses from a pool 16× the default
//!   cache, through the default cache: the price of a miss, insert included.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use seclake_benches::{Format, SplitMix64, env_paths, fixture_ndjson, shared_dir, split_lines};
use seclake_enrich::geoip::{
    DEFAULT_CACHE_SIZE, GeoIp, GeoIpConfig, GeoLookup, IpClass, PathList, classify,
};
use sonic_rs::JsonValueTrait as _;

/// WAF records whose client IPs make the realistic address stream.
const FIXTURE_RECORDS: usize = 20_000;
/// Lookups per iteration of `random_miss`.
const MISS_BATCH: usize = 8192;

fn fixture_ips() -> Vec<IpAddr> {
    let data = fixture_ndjson(Format::Waf, FIXTURE_RECORDS);
    split_lines(&data)
        .into_iter()
        .filter_map(|line| {
            let v = sonic_rs::get(line, &["httpRequest", "clientIp"]).ok()?;
            v.as_str()?.parse().ok()
        })
        .collect()
}

fn random_public_v4(n: usize) -> Vec<IpAddr> {
    let mut rng = SplitMix64(7);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let ip = IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32));
        if classify(ip) == IpClass::Public {
            out.push(ip);
        }
    }
    out
}

fn open(name: &str, city: Vec<PathBuf>, asn: Vec<PathBuf>, cache: usize) -> Option<Arc<GeoIp>> {
    if let Some(missing) = city.iter().chain(&asn).find(|p| !p.is_file()) {
        eprintln!("geoip/{name}: skipped, {} is not a file", missing.display());
        return None;
    }
    let cfg = GeoIpConfig {
        city: Some(PathList(city)),
        asn: (!asn.is_empty()).then_some(PathList(asn)),
        country: None,
        cache_size: Some(cache),
    };
    match GeoIp::open(&cfg) {
        Ok(geo) => geo.map(Arc::new),
        Err(e) => {
            eprintln!("geoip/{name}: skipped, {e}");
            None
        }
    }
}

fn lookups(geo: &mut GeoLookup, ips: &[IpAddr]) -> usize {
    let mut found = 0;
    for ip in ips {
        found += usize::from(geo.lookup(black_box(*ip)).country_iso.is_some());
    }
    found
}

fn report(name: &str, variant: &str, geo: &GeoLookup) {
    let (hits, misses) = (geo.cache_hits(), geo.cache_misses());
    let rate = hits as f64 / (hits + misses).max(1) as f64;
    eprintln!(
        "geoip/{name}/{variant}: cache hit rate {:.1}%",
        rate * 100.0
    );
}

fn bench_db(c: &mut Criterion, name: &str, city: Vec<PathBuf>, asn: Vec<PathBuf>) {
    let (Some(cached), Some(uncached)) = (
        open(name, city.clone(), asn.clone(), DEFAULT_CACHE_SIZE),
        open(name, city, asn, 0),
    ) else {
        return;
    };
    let ips = fixture_ips();
    let pool = random_public_v4(DEFAULT_CACHE_SIZE * 16);
    let mut group = c.benchmark_group(format!("geoip/{name}"));

    group.throughput(Throughput::Elements(ips.len() as u64));
    let mut warm = cached.handle();
    lookups(&mut warm, &ips);
    group.bench_function("warm_cache", |b| b.iter(|| lookups(&mut warm, &ips)));
    report(name, "warm_cache", &warm);

    let mut cold = uncached.handle();
    group.bench_function("no_cache", |b| b.iter(|| lookups(&mut cold, &ips)));

    group.throughput(Throughput::Elements(MISS_BATCH as u64));
    let mut missing = cached.handle();
    let mut next = pool.chunks(MISS_BATCH).cycle();
    group.bench_function("random_miss", |b| {
        b.iter(|| lookups(&mut missing, next.next().unwrap_or_default()));
    });
    report(name, "random_miss", &missing);
    group.finish();
}

fn geoip(c: &mut Criterion) {
    let test_city = shared_dir().join("geoip").join("GeoLite2-City-Test.mmdb");
    bench_db(c, "test_city", vec![test_city], Vec::new());

    let full_city = env_paths("SECLAKE_GEOIP_CITY");
    if full_city.is_empty() {
        eprintln!(
            "geoip/full: skipped, set SECLAKE_GEOIP_CITY to a full GeoLite2 or ip-location-db city file"
        );
    } else {
        bench_db(c, "full", full_city, env_paths("SECLAKE_GEOIP_ASN"));
    }
}

criterion_group!(benches, geoip);
criterion_main!(benches);
