//! One WAF IP set, changed with `GetIPSet` → `UpdateIPSet` under its lock
//! token. `UpdateIPSet` replaces the whole list, so every change is a fresh
//! read, an edit and a write; a write another writer got in before fails with
//! `WAFOptimisticLockException` and is redone from a new read, so no writer
//! loses another's entries.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use aws_sdk_wafv2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_wafv2::types::{IpAddressVersion, Scope as WafScope};
use backon::BackoffBuilder as _;
use ipnet::IpNet;

use super::{ResponseConfig, Scope, parse_net};

/// Addresses (CIDRs) one IP set may hold: WAF's quota, which the API does
/// not always enforce before the write (moto never does).
pub const MAX_ADDRESSES: usize = 10_000;

/// Writes tried before a change gives up on a set that keeps changing.
const ATTEMPTS: usize = 10;

/// Why an IP set could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum IpSetError {
    /// WAF refused or could not be reached (after the SDK's own retries).
    #[error("IP set {name}: {operation}: {message}")]
    Api {
        /// The set's name.
        name: String,
        /// `GetIPSet` or `UpdateIPSet`.
        operation: &'static str,
        /// What WAF or the connection said.
        message: String,
        /// WAF's error code, when WAF answered with one.
        code: Option<String>,
    },
    /// The write lost a race: the set changed after it was read.
    #[error("IP set {name} changed since it was read (lock token {lock_token})")]
    Conflict {
        /// The set's name.
        name: String,
        /// The token the write carried.
        lock_token: String,
    },
    /// Every attempt lost a race.
    #[error("IP set {name} kept changing: {attempts} writes lost the race to other writers")]
    Contended {
        /// The set's name.
        name: String,
        /// Writes tried.
        attempts: usize,
    },
    /// An address of the other IP version.
    #[error("IP set {name} holds {version} addresses, not {net}")]
    Version {
        /// The set's name.
        name: String,
        /// The set's version.
        version: IpVersion,
        /// The refused CIDR.
        net: IpNet,
    },
    /// The change would take the set over its limit.
    #[error("IP set {name} would hold {would} addresses, over its limit of {limit}")]
    Full {
        /// The set's name.
        name: String,
        /// Addresses after the change.
        would: usize,
        /// The limit.
        limit: usize,
    },
    /// The set holds something that is not a CIDR; it is not rewritten.
    #[error("IP set {name} holds {value:?}, which is not a CIDR; fix it in WAF first")]
    Malformed {
        /// The set's name.
        name: String,
        /// The entry.
        value: String,
    },
}

impl IpSetError {
    /// True when WAF itself refused for a reason retrying cannot cure: the
    /// set does not exist, the credentials may not use it, a parameter is
    /// wrong. Connection failures, throttling and 5xx answers are not.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            IpSetError::Api { code: Some(code), .. } if matches!(
                code.as_str(),
                "WAFNonexistentItemException"
                    | "AccessDeniedException"
                    | "WAFInvalidParameterException"
                    | "UnrecognizedClientException"
                    | "InvalidSignatureException"
            )
        ) || matches!(self, IpSetError::Malformed { .. })
    }
}

/// An IP set's address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    /// `IPV4`.
    V4,
    /// `IPV6`.
    V6,
}

impl IpVersion {
    /// True when `net` is of this version.
    pub fn holds(self, net: &IpNet) -> bool {
        matches!(
            (self, net),
            (IpVersion::V4, IpNet::V4(_)) | (IpVersion::V6, IpNet::V6(_))
        )
    }
}

impl fmt::Display for IpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpVersion::V4 => "IPV4",
            IpVersion::V6 => "IPV6",
        })
    }
}

/// What one `GetIPSet` returned.
#[derive(Debug, Clone)]
pub struct IpSetState {
    /// The set's CIDRs, canonical.
    pub addresses: BTreeSet<IpNet>,
    /// IPV4 or IPV6.
    pub version: IpVersion,
    /// The token a write based on this read must carry.
    pub lock_token: String,
    /// Kept: `UpdateIPSet` clears a description it is not given.
    pub description: Option<String>,
}

/// What a change did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// CIDRs that were not in the set and now are.
    pub added: Vec<IpNet>,
    /// CIDRs that were in the set and now are not.
    pub removed: Vec<IpNet>,
    /// Writes redone because another writer changed the set first.
    pub conflicts: usize,
}

/// One WAF IP set.
#[derive(Debug, Clone)]
pub struct IpSet {
    client: aws_sdk_wafv2::Client,
    name: String,
    id: String,
    scope: WafScope,
    limit: usize,
}

impl IpSet {
    /// The set `[response]` names, through `shared` (see
    /// [`ResponseConfig::aws`]); CloudFront sets are managed in `us-east-1`.
    pub fn connect(cfg: &ResponseConfig, shared: &aws_config::SdkConfig) -> IpSet {
        let mut waf = aws_sdk_wafv2::config::Builder::from(shared);
        if cfg.region.is_none() && cfg.scope == Scope::Cloudfront {
            waf = waf.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(endpoint) = &cfg.endpoint {
            waf = waf.endpoint_url(endpoint);
        }
        IpSet::new(
            aws_sdk_wafv2::Client::from_conf(waf.build()),
            &cfg.ip_set_name,
            &cfg.ip_set_id,
            cfg.scope,
        )
    }

    /// The set `name`/`id` through `client`.
    pub fn new(client: aws_sdk_wafv2::Client, name: &str, id: &str, scope: Scope) -> IpSet {
        IpSet {
            client,
            name: name.to_owned(),
            id: id.to_owned(),
            scope: match scope {
                Scope::Regional => WafScope::Regional,
                Scope::Cloudfront => WafScope::Cloudfront,
            },
            limit: MAX_ADDRESSES,
        }
    }

    /// A lower limit than WAF's [`MAX_ADDRESSES`] (a set shared with
    /// another tool, or a test).
    pub fn with_limit(mut self, limit: usize) -> IpSet {
        self.limit = limit.min(MAX_ADDRESSES);
        self
    }

    /// The set's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The set as it is now, with the token to change it.
    pub async fn read(&self) -> Result<IpSetState, IpSetError> {
        let answer = self
            .client
            .get_ip_set()
            .name(&self.name)
            .id(&self.id)
            .scope(self.scope.clone())
            .send()
            .await
            .map_err(|e| self.api("GetIPSet", &e))?;
        let (Some(set), Some(lock_token)) = (answer.ip_set(), answer.lock_token()) else {
            return Err(IpSetError::Api {
                name: self.name.clone(),
                operation: "GetIPSet",
                message: "the answer has no IP set or no lock token".into(),
                code: None,
            });
        };
        let version = match set.ip_address_version() {
            IpAddressVersion::Ipv6 => IpVersion::V6,
            _ => IpVersion::V4,
        };
        let addresses = set
            .addresses()
            .iter()
            .map(|a| {
                parse_net(a).map_err(|_| IpSetError::Malformed {
                    name: self.name.clone(),
                    value: a.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(IpSetState {
            addresses,
            version,
            lock_token: lock_token.to_owned(),
            description: set.description().map(str::to_owned),
        })
    }

    /// Writes `addresses` as the whole set, if it has not changed since
    /// `read` ([`IpSetError::Conflict`] if it has).
    pub async fn write(
        &self,
        read: &IpSetState,
        addresses: &BTreeSet<IpNet>,
    ) -> Result<(), IpSetError> {
        if addresses.len() > self.limit {
            return Err(IpSetError::Full {
                name: self.name.clone(),
                would: addresses.len(),
                limit: self.limit,
            });
        }
        if let Some(net) = addresses.iter().find(|n| !read.version.holds(n)) {
            return Err(IpSetError::Version {
                name: self.name.clone(),
                version: read.version,
                net: *net,
            });
        }
        let written = self
            .client
            .update_ip_set()
            .name(&self.name)
            .id(&self.id)
            .scope(self.scope.clone())
            .set_addresses(Some(addresses.iter().map(IpNet::to_string).collect()))
            .set_description(read.description.clone())
            .lock_token(&read.lock_token)
            .send()
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_waf_optimistic_lock_exception()) =>
            {
                Err(IpSetError::Conflict {
                    name: self.name.clone(),
                    lock_token: read.lock_token.clone(),
                })
            }
            Err(e) => Err(self.api("UpdateIPSet", &e)),
        }
    }

    /// Adds `add` and removes `remove` (in that order: a CIDR in both ends
    /// up removed), redoing the change from a fresh read, after a jittered
    /// pause, whenever another writer changed the set first. Nothing is
    /// written when nothing would change.
    pub async fn change(&self, add: &[IpNet], remove: &[IpNet]) -> Result<Change, IpSetError> {
        self.edit(|_| (add.to_vec(), remove.to_vec())).await
    }

    /// [`IpSet::change`] with the CIDRs to add and remove planned from each
    /// fresh read by `plan` (which sees the set as it is, to choose what
    /// to evict, say).
    pub async fn edit<F>(&self, mut plan: F) -> Result<Change, IpSetError>
    where
        F: FnMut(&IpSetState) -> (Vec<IpNet>, Vec<IpNet>),
    {
        let mut pauses = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(20))
            .with_max_delay(Duration::from_secs(1))
            .with_jitter()
            .with_max_times(ATTEMPTS - 1)
            .build();
        let mut conflicts = 0;
        loop {
            let read = self.read().await?;
            let (add, remove) = plan(&read);
            let mut next = read.addresses.clone();
            next.extend(add.iter().map(IpNet::trunc));
            for net in &remove {
                next.remove(&net.trunc());
            }
            let added: Vec<IpNet> = next.difference(&read.addresses).copied().collect();
            let removed: Vec<IpNet> = read.addresses.difference(&next).copied().collect();
            if added.is_empty() && removed.is_empty() {
                return Ok(Change {
                    conflicts,
                    ..Change::default()
                });
            }
            match self.write(&read, &next).await {
                Ok(()) => {
                    return Ok(Change {
                        added,
                        removed,
                        conflicts,
                    });
                }
                Err(IpSetError::Conflict { .. }) => {
                    conflicts += 1;
                    let Some(pause) = pauses.next() else {
                        return Err(IpSetError::Contended {
                            name: self.name.clone(),
                            attempts: conflicts,
                        });
                    };
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The most addresses a change may leave in the set.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn api<E, R>(&self, operation: &'static str, e: &SdkError<E, R>) -> IpSetError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        let code = e.as_service_error().and_then(|s| s.code());
        IpSetError::Api {
            name: self.name.clone(),
            operation,
            message: format!(
                "{}{}",
                code.map(|c| format!("{c}: ")).unwrap_or_default(),
                DisplayErrorContext(e)
            ),
            code: code.map(str::to_owned),
        }
    }
}
