//! GeoIP enrichment: country, city, coordinates and autonomous system of an
//! IP address, from memory-mapped MaxMind DB files (GeoIP2/GeoLite2 City,
//! Country and ASN, or the flat `.mmdb` files of the npm ip-location-db
//! packages) and ip-location-db ASN range CSVs.
//!
//! [`GeoIp::open`] opens and verifies every configured file once; workers
//! each take a [`GeoLookup`] from [`GeoIp::handle`], which owns a cache of
//! recent answers. [`GeoIp::reload`] reopens all files and swaps them in
//! atomically; handles notice on their next lookup and drop their cache.
//! Private, reserved and other non-public addresses are tagged by
//! [`classify`] and never looked up.
//!
//! User documentation: `docs/geoip.md`.

mod asn_csv;
mod cache;
mod classify;
mod countries;
mod mmdb;
mod record;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use asn_csv::AsnTable;
use cache::{Cache, Interner};
use mmdb::{MmdbSource, Role};
use record::Record;

pub use classify::{IpClass, classify};

/// Cache entries per [`GeoLookup`] when `cache_size` is not set.
pub const DEFAULT_CACHE_SIZE: usize = 65_536;

/// The `[geoip]` configuration section. Every key is optional; with no
/// database configured, GeoIP enrichment is off.
///
/// ```toml
/// [geoip]
/// city = "/var/lib/GeoIP/GeoLite2-City.mmdb"
/// asn = ["/data/asn-ipv4.csv", "/data/asn-ipv6.csv"]
/// cache_size = 65536
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoIpConfig {
    /// MaxMind City/Country `.mmdb`, or ip-location-db flat city `.mmdb`
    /// files (IPv4 and IPv6 files listed separately). Consulted first.
    pub city: Option<PathList>,
    /// Country `.mmdb` files; fill what the city databases leave empty.
    pub country: Option<PathList>,
    /// ASN sources: `.mmdb` (GeoLite2-ASN, ip-location-db asn-mmdb) or
    /// `.csv` range files (ip-location-db asn), chosen by extension.
    pub asn: Option<PathList>,
    /// Entries in each [`GeoLookup`]'s cache (default
    /// [`DEFAULT_CACHE_SIZE`]; 0 disables caching).
    pub cache_size: Option<usize>,
}

/// One or more file paths; deserialises from `"a"` or `["a", "b"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathList(pub Vec<PathBuf>);

impl PathList {
    /// The paths, in configuration order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.0
    }
}

impl<P: Into<PathBuf>> From<P> for PathList {
    fn from(path: P) -> Self {
        PathList(vec![path.into()])
    }
}

impl<P: Into<PathBuf>> FromIterator<P> for PathList {
    fn from_iter<I: IntoIterator<Item = P>>(iter: I) -> Self {
        PathList(iter.into_iter().map(Into::into).collect())
    }
}

impl<'de> Deserialize<'de> for PathList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PathListVisitor;

        impl<'de> Visitor<'de> for PathListVisitor {
            type Value = PathList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a file path or a list of file paths")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PathList, E> {
                Ok(PathList::from(v))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PathList, A::Error> {
                let mut paths = Vec::new();
                while let Some(path) = seq.next_element::<PathBuf>()? {
                    paths.push(path);
                }
                Ok(PathList(paths))
            }
        }

        deserializer.deserialize_any(PathListVisitor)
    }
}

/// Why a GeoIP database could not be opened or reloaded. Every variant
/// names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeoIpError {
    /// The file could not be read.
    #[error(
        "cannot read GeoIP database {}: {error}; check the path in the [geoip] configuration and the file's permissions",
        path.display()
    )]
    Io {
        /// The configured file.
        path: PathBuf,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// The path is a directory or other non-file.
    #[error(
        "GeoIP database {} is not a regular file; point the [geoip] configuration at an .mmdb or .csv file",
        path.display()
    )]
    NotAFile {
        /// The configured path.
        path: PathBuf,
    },
    /// Not a valid MaxMind DB file, or damaged.
    #[error(
        "GeoIP database {} is corrupt or not a MaxMind DB (.mmdb) file: {reason}; download it again and replace the file",
        path.display()
    )]
    Corrupt {
        /// The configured file.
        path: PathBuf,
        /// What the reader or the verification found.
        reason: String,
    },
    /// A valid `.mmdb` without the fields its configuration key needs.
    #[error(
        "GeoIP database {} (database_type {database_type:?}) has no {expected} data; list City/Country databases under `city`/`country` and ASN databases under `asn`",
        path.display()
    )]
    WrongKind {
        /// The configured file.
        path: PathBuf,
        /// `database_type` from the file's metadata.
        database_type: String,
        /// What the configuration key needs.
        expected: &'static str,
    },
    /// A malformed row in an ASN CSV.
    #[error(
        "ASN CSV {} line {line}: {message}; expected rows `ip_range_start,ip_range_end,autonomous_system_number,autonomous_system_organization` (ip-location-db asn format)",
        path.display()
    )]
    Csv {
        /// The configured file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the row.
        message: String,
    },
    /// An ASN CSV without any data row.
    #[error(
        "ASN CSV {} has no data rows; use asn-ipv4.csv / asn-ipv6.csv from the npm package @ip-location-db/asn",
        path.display()
    )]
    EmptyCsv {
        /// The configured file.
        path: PathBuf,
    },
    /// An `asn` entry that is neither `.mmdb` nor `.csv`.
    #[error(
        "ASN source {} must end in .mmdb (MaxMind DB) or .csv (ip-location-db range file); rename it or fix the path",
        path.display()
    )]
    UnknownAsnFormat {
        /// The configured file.
        path: PathBuf,
    },
}

impl GeoIpError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            GeoIpError::Io { path, .. }
            | GeoIpError::NotAFile { path }
            | GeoIpError::Corrupt { path, .. }
            | GeoIpError::WrongKind { path, .. }
            | GeoIpError::Csv { path, .. }
            | GeoIpError::EmptyCsv { path }
            | GeoIpError::UnknownAsnFormat { path } => path,
        }
    }
}

/// What is known about one address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeoInfo {
    /// Address class; only `Public` addresses are looked up.
    pub ip_class: IpClass,
    /// ISO 3166-1 alpha-2 country code.
    pub country_iso: Option<Arc<str>>,
    /// English country name.
    pub country_name: Option<Arc<str>>,
    /// English city name.
    pub city: Option<Arc<str>>,
    /// Latitude in degrees (set together with `lon`).
    pub lat: Option<f64>,
    /// Longitude in degrees (set together with `lat`).
    pub lon: Option<f64>,
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// Autonomous system organisation.
    pub as_org: Option<Arc<str>>,
}

/// Configured file paths, in lookup order.
#[derive(Debug, Clone)]
struct Sources {
    location: Vec<PathBuf>,
    asn: Vec<PathBuf>,
}

enum AsnSource {
    Mmdb(MmdbSource),
    Csv(AsnTable),
}

/// One generation of opened databases.
struct Databases {
    location: Vec<MmdbSource>,
    asn: Vec<AsnSource>,
}

impl Databases {
    fn open(sources: &Sources) -> Result<Self, GeoIpError> {
        let location = sources
            .location
            .iter()
            .map(|path| {
                let started = Instant::now();
                let db = MmdbSource::open(path, Role::Location)?;
                tracing::info!(
                    path = %path.display(),
                    database_type = db.database_type(),
                    records = db.records(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "GeoIP location database opened"
                );
                Ok(db)
            })
            .collect::<Result<_, GeoIpError>>()?;
        let asn = sources
            .asn
            .iter()
            .map(|path| {
                let started = Instant::now();
                let ext = path
                    .extension()
                    .map(|e| e.to_string_lossy().to_ascii_lowercase());
                let source = match ext.as_deref() {
                    Some("mmdb") => AsnSource::Mmdb(MmdbSource::open(path, Role::Asn)?),
                    Some("csv") => AsnSource::Csv(AsnTable::load(path)?),
                    _ => return Err(GeoIpError::UnknownAsnFormat { path: path.clone() }),
                };
                let (kind, entries) = match &source {
                    AsnSource::Mmdb(db) => (db.database_type().to_owned(), db.records()),
                    AsnSource::Csv(table) => ("csv".to_owned(), table.len()),
                };
                tracing::info!(
                    path = %path.display(),
                    kind,
                    entries,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "GeoIP ASN source opened"
                );
                Ok(source)
            })
            .collect::<Result<_, GeoIpError>>()?;
        Ok(Databases { location, asn })
    }
}

/// The opened GeoIP databases, shared by all workers (`Send + Sync`; keep it
/// in an `Arc`).
pub struct GeoIp {
    sources: Sources,
    dbs: ArcSwap<Databases>,
    generation: AtomicU64,
    reload_lock: Mutex<()>,
    decode_errors: AtomicU64,
    cache_size: usize,
}

impl fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoIp")
            .field("location", &self.sources.location)
            .field("asn", &self.sources.asn)
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .field("cache_size", &self.cache_size)
            .finish_non_exhaustive()
    }
}

impl GeoIp {
    /// Opens and verifies every configured file. Returns `Ok(None)`, after
    /// one warning, when no database is configured. Verification reads each
    /// `.mmdb` once; in a release build the full ip-location-db GeoLite2 City
    /// files (IPv4 + IPv6) take about 0.4 s, and indexing the full ASN CSVs
    /// about as long. Call it (and [`GeoIp::reload`]) off async executors.
    pub fn open(cfg: &GeoIpConfig) -> Result<Option<GeoIp>, GeoIpError> {
        let list = |l: &Option<PathList>| l.as_ref().map(|l| l.0.clone()).unwrap_or_default();
        let mut location = list(&cfg.city);
        location.extend(list(&cfg.country));
        let sources = Sources {
            location,
            asn: list(&cfg.asn),
        };
        if sources.location.is_empty() && sources.asn.is_empty() {
            tracing::warn!(
                "no GeoIP database configured ([geoip] city, country or asn): GeoIP enrichment is off"
            );
            return Ok(None);
        }
        let dbs = Databases::open(&sources)?;
        Ok(Some(GeoIp {
            sources,
            dbs: ArcSwap::from_pointee(dbs),
            generation: AtomicU64::new(0),
            reload_lock: Mutex::new(()),
            decode_errors: AtomicU64::new(0),
            cache_size: cfg
                .cache_size
                .unwrap_or(DEFAULT_CACHE_SIZE)
                .min(cache::MAX_CACHE_SIZE),
        }))
    }

    /// Reopens every configured file and swaps the new set in atomically;
    /// lookups in flight finish on the old files, and each handle drops its
    /// cache on its next lookup. On error the old databases stay in use and
    /// the error is returned. Replace database files by rename (write a new
    /// file, then `mv` it over the old path), never by overwriting in place.
    pub fn reload(&self) -> Result<(), GeoIpError> {
        let _serialised = self
            .reload_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let dbs = Databases::open(&self.sources)?;
        self.dbs.store(Arc::new(dbs));
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        tracing::debug!(generation, "GeoIP databases reloaded");
        Ok(())
    }

    /// A lookup handle for one worker thread, with its own cache.
    pub fn handle(self: &Arc<Self>) -> GeoLookup {
        let generation = self.generation.load(Ordering::Acquire);
        GeoLookup {
            dbs: self.dbs.load_full(),
            generation,
            cache: Cache::new(self.cache_size),
            strings: Interner::new(self.cache_size.saturating_mul(2)),
            hits: 0,
            misses: 0,
            geo: Arc::clone(self),
        }
    }

    /// Records that failed to decode since opening, over all handles. Each
    /// such lookup returned what the other databases knew.
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors.load(Ordering::Relaxed)
    }

    /// How many times [`GeoIp::reload`] has succeeded.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn decode_failed(&self, db: &MmdbSource, ip: IpAddr, error: &maxminddb::MaxMindDbError) {
        self.decode_errors.fetch_add(1, Ordering::Relaxed);
        if db.first_error() {
            tracing::warn!(
                path = %db.path().display(),
                %ip,
                %error,
                "GeoIP record failed to decode; using what the other databases know (later failures in this file are only counted)"
            );
        }
    }
}

/// A worker's view of [`GeoIp`] with its own cache (`Send`, not shared).
pub struct GeoLookup {
    geo: Arc<GeoIp>,
    dbs: Arc<Databases>,
    generation: u64,
    cache: Cache,
    strings: Interner,
    hits: u64,
    misses: u64,
}

impl fmt::Debug for GeoLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoLookup")
            .field("generation", &self.generation)
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish_non_exhaustive()
    }
}

impl GeoLookup {
    /// GeoIP data for `ip`. IPv4-mapped IPv6 addresses are treated as IPv4;
    /// non-public addresses get only `ip_class`. Never fails: what no
    /// database knows stays `None`.
    pub fn lookup(&mut self, ip: IpAddr) -> GeoInfo {
        let ip = ip.to_canonical();
        let ip_class = classify(ip);
        if ip_class != IpClass::Public {
            return GeoInfo {
                ip_class,
                ..GeoInfo::default()
            };
        }
        let generation = self.geo.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.dbs = self.geo.dbs.load_full();
            self.generation = generation;
            self.cache.clear();
            self.strings.clear();
        }
        let key = Cache::key(ip);
        if let Some(info) = self.cache.get(key) {
            self.hits += 1;
            return info.clone();
        }
        self.misses += 1;
        let info = self.resolve(ip);
        self.cache.insert(key, info.clone());
        info
    }

    /// Lookups answered from this handle's cache.
    pub fn cache_hits(&self) -> u64 {
        self.hits
    }

    /// Lookups of public addresses that went to the databases.
    pub fn cache_misses(&self) -> u64 {
        self.misses
    }

    fn resolve(&mut self, ip: IpAddr) -> GeoInfo {
        let mut info = GeoInfo::default();
        let strings = &mut self.strings;
        for db in &self.dbs.location {
            if info.country_iso.is_some()
                && info.country_name.is_some()
                && info.city.is_some()
                && info.lat.is_some()
            {
                break;
            }
            match db.lookup(ip) {
                Ok(Some(record)) => fill_location(&mut info, &record, strings),
                Ok(None) => {}
                Err(error) => self.geo.decode_failed(db, ip, &error),
            }
        }
        for source in &self.dbs.asn {
            let found = match source {
                AsnSource::Csv(table) => table
                    .lookup(ip)
                    .map(|(asn, org)| (asn, org.map(Arc::clone))),
                AsnSource::Mmdb(db) => match db.lookup(ip) {
                    Ok(Some(record)) => record
                        .asn()
                        .map(|asn| (asn, record.as_org().map(|org| strings.intern(org)))),
                    Ok(None) => None,
                    Err(error) => {
                        self.geo.decode_failed(db, ip, &error);
                        None
                    }
                },
            };
            if let Some((asn, org)) = found {
                info.asn = Some(asn);
                info.as_org = org;
                break;
            }
        }
        info
    }
}

/// Fills the location fields still empty in `info` from `record`.
fn fill_location(info: &mut GeoInfo, record: &Record<'_>, strings: &mut Interner) {
    let mut fill = |slot: &mut Option<Arc<str>>, value: Option<&str>| {
        if slot.is_none()
            && let Some(value) = value
        {
            *slot = Some(strings.intern(value));
        }
    };
    fill(&mut info.country_iso, record.country_iso());
    fill(&mut info.country_name, record.country_name());
    fill(&mut info.city, record.city());
    if info.lat.is_none()
        && let Some((lat, lon)) = record.lat_lon()
    {
        info.lat = Some(lat);
        info.lon = Some(lon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Wrapper {
        geoip: GeoIpConfig,
    }

    #[test]
    fn config_accepts_a_path_or_a_list() {
        let cfg: Wrapper = toml::from_str(
            r#"
            [geoip]
            city = "/db/city.mmdb"
            asn = ["/db/asn-ipv4.csv", "/db/asn-ipv6.csv"]
            cache_size = 10
            "#,
        )
        .unwrap();
        assert_eq!(cfg.geoip.city, Some(PathList::from("/db/city.mmdb")));
        assert_eq!(
            cfg.geoip.asn,
            Some(PathList::from_iter([
                "/db/asn-ipv4.csv",
                "/db/asn-ipv6.csv"
            ]))
        );
        assert_eq!(cfg.geoip.country, None);
        assert_eq!(cfg.geoip.cache_size, Some(10));
    }

    #[test]
    fn config_rejects_unknown_keys_and_bad_types() {
        let err = toml::from_str::<Wrapper>("[geoip]\ncitty = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("citty"), "{err}");
        let err = toml::from_str::<Wrapper>("[geoip]\ncity = 3\n").unwrap_err();
        assert!(err.to_string().contains("a file path or a list"), "{err}");
    }

    #[test]
    fn empty_lists_mean_not_configured() {
        let cfg = GeoIpConfig {
            city: Some(PathList(Vec::new())),
            ..GeoIpConfig::default()
        };
        assert!(GeoIp::open(&cfg).unwrap().is_none());
    }

    #[test]
    fn thread_safety() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<GeoIp>();
        send::<GeoLookup>();
        send_sync::<GeoInfo>();
    }
}
