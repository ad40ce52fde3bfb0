//! Memory-mapped MaxMind DB files, verified when opened.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use maxminddb::{MaxMindDbError, Mmap, Reader, WithinOptions};

use super::GeoIpError;
use super::record::Record;

/// What a database is configured for; decides which fields it must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `city` or `country`: country, city or coordinates.
    Location,
    /// `asn`: AS numbers.
    Asn,
}

impl Role {
    fn describe(self) -> &'static str {
        match self {
            Role::Location => "location (country, city or coordinates)",
            Role::Asn => "ASN (autonomous_system_number)",
        }
    }
}

/// One opened and verified `.mmdb` file.
pub(crate) struct MmdbSource {
    path: PathBuf,
    reader: Reader<Mmap>,
    has_v4: bool,
    has_v6: bool,
    records: usize,
    warned: AtomicBool,
}

impl std::fmt::Debug for MmdbSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmdbSource")
            .field("path", &self.path)
            .field("database_type", &self.reader.metadata().database_type)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl MmdbSource {
    /// Maps the file and checks every search-tree node and every record it
    /// points to, so a corrupt file fails here rather than at lookup time.
    /// Costs one pass over the file (a fraction of a second for a full
    /// GeoLite2 City).
    pub(crate) fn open(path: &Path, role: Role) -> Result<Self, GeoIpError> {
        let corrupt = |error: MaxMindDbError| GeoIpError::Corrupt {
            path: path.to_owned(),
            reason: error.to_string(),
        };
        let meta = std::fs::metadata(path).map_err(|error| GeoIpError::Io {
            path: path.to_owned(),
            error,
        })?;
        if !meta.is_file() {
            return Err(GeoIpError::NotAFile {
                path: path.to_owned(),
            });
        }
        // SAFETY: the mapping is read-only and seclake never writes the file.
        // Replacing a database must be done by rename (as geoipupdate does),
        // which leaves this mapping on the old inode; overwriting the file in
        // place while it is mapped is documented as unsupported.
        let reader = unsafe { Reader::open_mmap(path) }.map_err(|error| match error {
            MaxMindDbError::Io(error) => GeoIpError::Io {
                path: path.to_owned(),
                error,
            },
            other => corrupt(other),
        })?;

        let node_count = usize::try_from(reader.metadata().node_count).unwrap_or(usize::MAX);
        let max_networks = node_count.saturating_mul(3).max(16);
        let options = WithinOptions::default().include_networks_without_data();
        let mut offsets = HashSet::new();
        let (mut networks, mut useful) = (0usize, false);
        let (mut has_v4, mut has_v6) = (false, false);
        for item in reader.networks(options).map_err(corrupt)? {
            let item = item.map_err(corrupt)?;
            networks += 1;
            if networks > max_networks {
                return Err(GeoIpError::Corrupt {
                    path: path.to_owned(),
                    reason: format!(
                        "search tree yields more than {max_networks} networks for {node_count} nodes (cycle)"
                    ),
                });
            }
            let Some(offset) = item.offset() else {
                continue;
            };
            if item.network().map_err(corrupt)?.is_ipv4() {
                has_v4 = true;
            } else {
                has_v6 = true;
            }
            if offsets.insert(offset) {
                let record = item.decode::<Record<'_>>().map_err(corrupt)?;
                useful |= record.is_some_and(|r| match role {
                    Role::Location => r.has_location(),
                    Role::Asn => r.has_asn(),
                });
            }
        }
        if !useful {
            return Err(GeoIpError::WrongKind {
                path: path.to_owned(),
                database_type: reader.metadata().database_type.clone(),
                expected: role.describe(),
            });
        }
        Ok(MmdbSource {
            path: path.to_owned(),
            reader,
            has_v4,
            has_v6,
            records: offsets.len(),
            warned: AtomicBool::new(false),
        })
    }

    /// Decodes the record for `ip`; `Ok(None)` when the file has no data
    /// for it (or none for its address family).
    pub(crate) fn lookup(&self, ip: IpAddr) -> Result<Option<Record<'_>>, MaxMindDbError> {
        let covered = match ip {
            IpAddr::V4(_) => self.has_v4,
            IpAddr::V6(_) => self.has_v6,
        };
        if !covered {
            return Ok(None);
        }
        self.reader.lookup(ip)?.decode()
    }

    /// File the database was opened from.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `database_type` from the file's metadata.
    pub(crate) fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Number of distinct data records.
    pub(crate) fn records(&self) -> usize {
        self.records
    }

    /// True the first time it is called, so decode errors are logged once
    /// per opened file.
    pub(crate) fn first_error(&self) -> bool {
        !self.warned.swap(true, Ordering::Relaxed)
    }
}
