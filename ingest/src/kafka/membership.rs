//! Static group membership (KIP-345): each consumer joins its group under a
//! `group.instance.id` that survives a restart, so a pipeline killed with
//! SIGKILL (or OOM-killed) and restarted takes its partitions straight back.
//! Without one, the group first waits for the dead member's session to
//! expire (`session.timeout.ms`, 45 s by default) and then rebalances.
//!
//! The default id is `<host>-<topic>-<slot>`. The topic tells apart the
//! consumers of one pipeline (one per `[[source]]`, all possibly in one
//! group). The slot tells apart pipelines on one host: two static members
//! with one id fence each other (the one that joined last stays, the other
//! fails), so each consumer takes the lowest slot no other process on the
//! host holds. A slot is held by binding a Linux abstract Unix socket named
//! after the group and the id. The kernel frees the name when the process
//! exits in any way, kill -9 included, so the restarted process gets the
//! same slot, hence the same id; a second pipeline running beside it finds
//! slot 0 taken and uses slot 1. Abstract socket names are per network
//! namespace, not per file system or user, so this also holds across
//! users, systemd's `PrivateTmp`, and pods or containers sharing the host's
//! network (`hostNetwork: true`, `--network host`), which share its host
//! name too. A lock file in /tmp would not: each of those has its own /tmp.
//!
//! A slot is kept until the process exits: a consumer closing (its final
//! commit) must not race a newcomer that would take its id.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use metrics::gauge;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// Kafka's limit on a `group.instance.id`: the topic-name rules.
const MAX_LEN: usize = 249;
/// Slots tried before giving up on static membership (64 pipelines reading
/// one topic in one group on one host).
const SLOTS: u32 = 64;

/// `instance_id`: how a Kafka source joins its group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum InstanceId {
    /// Not set (or `true`): static membership as `<host>-<topic>-<slot>`.
    #[default]
    Derived,
    /// A string: static membership with exactly this `group.instance.id`.
    /// It must be unique in the group: every pipeline and every source
    /// needs its own.
    Fixed(String),
    /// `false`: dynamic membership. A restarted pipeline then waits for the
    /// group to drop its dead predecessor (`session.timeout.ms`), but a
    /// stopped one hands its partitions over at once.
    Dynamic,
}

impl<'de> Deserialize<'de> for InstanceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Expected;
        impl Visitor<'_> for Expected {
            type Value = InstanceId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a group.instance.id (letters, digits, `.`, `_`, `-`), \
                     or false for dynamic membership",
                )
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<InstanceId, E> {
                Ok(if on {
                    InstanceId::Derived
                } else {
                    InstanceId::Dynamic
                })
            }
            fn visit_str<E: de::Error>(self, id: &str) -> Result<InstanceId, E> {
                check(id).map_err(E::custom)?;
                Ok(InstanceId::Fixed(id.to_owned()))
            }
        }
        deserializer.deserialize_any(Expected)
    }
}

/// Kafka's rules for an instance id (those of topic names): 1 to 249
/// letters, digits, `.`, `_` and `-`. The broker refuses anything else when
/// the consumer joins; this says so at start-up instead.
pub fn check(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty (false turns static membership off)".to_owned());
    }
    if id.len() > MAX_LEN {
        return Err(format!(
            "is {} bytes long; Kafka takes at most {MAX_LEN}",
            id.len()
        ));
    }
    if let Some(c) = id.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "contains {c:?}; Kafka takes only letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A source's resolved instance id, shared by the clones of its config and
/// resolved at most once: the consumer it is made for keeps its slot.
#[derive(Clone, Default)]
pub(crate) struct Claim(Arc<OnceLock<Option<String>>>);

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.get() {
            Some(Some(id)) => write!(f, "Claim({id:?})"),
            Some(None) => f.write_str("Claim(dynamic)"),
            None => f.write_str("Claim(unresolved)"),
        }
    }
}

impl Claim {
    /// The `group.instance.id` for the source's consumer, or `None` for
    /// dynamic membership (asked for, or no slot could be held: logged).
    /// Resolves a derived id on first call by taking a slot.
    pub(crate) fn instance_id(
        &self,
        setting: &InstanceId,
        group: &str,
        topic: &str,
    ) -> Option<String> {
        self.0
            .get_or_init(|| {
                let id = match setting {
                    InstanceId::Dynamic => None,
                    InstanceId::Fixed(id) => Some(id.clone()),
                    InstanceId::Derived => derive(group, topic),
                };
                if let Some(id) = &id {
                    tracing::info!(topic, group, instance_id = %id, "kafka: static group membership");
                    gauge!("seclake_kafka_group_instance", "topic" => topic.to_owned(), "instance_id" => id.clone())
                        .set(1.0);
                }
                id
            })
            .clone()
    }
}

/// Takes the lowest free slot for `group` and `topic` on this host;
/// `<host>-<topic>-<slot>`, or `None` (logged) when none can be held.
fn derive(group: &str, topic: &str) -> Option<String> {
    let Some(host) = host_name() else {
        tracing::warn!(
            topic,
            "kafka: no host name found: dynamic group membership (set `instance_id` for static)"
        );
        return None;
    };
    let base = bounded(&sanitize(&format!("{host}-{topic}")));
    for slot in 0..SLOTS {
        let id = format!("{base}-{slot}");
        match hold(group, &id) {
            Ok(true) => return Some(id),
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(
                    topic,
                    "kafka: cannot hold a member slot ({e}): dynamic group membership (set `instance_id` for static)"
                );
                return None;
            }
        }
    }
    tracing::warn!(
        topic,
        "kafka: all {SLOTS} member slots of this host are taken: dynamic group membership"
    );
    None
}

/// Every character Kafka refuses in an id becomes `_`.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect()
}

/// `text` cut to leave room for `-<slot>` within [`MAX_LEN`], with a hash
/// of the whole when cut, so that two long names still differ.
fn bounded(text: &str) -> String {
    const ROOM: usize = MAX_LEN - 4;
    if text.len() <= ROOM {
        return text.to_owned();
    }
    // ASCII only after `sanitize`, so any byte index is a char boundary.
    format!("{}-{:016x}", &text[..ROOM - 17], fnv1a(text.as_bytes()))
}

/// FNV-1a, 64 bits: stable across builds and Rust versions, unlike std's
/// hasher, since ids must survive an upgrade.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The kernel's host name (the pod name in Kubernetes), else `HOSTNAME`.
fn host_name() -> Option<String> {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    from_kernel
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Sockets holding this process's slots, until it exits.
#[cfg(target_os = "linux")]
static HELD: Mutex<Vec<std::os::unix::net::UnixDatagram>> = Mutex::new(Vec::new());

/// Binds the abstract socket of `id` in `group`: true when this process now
/// holds it, false when another one does.
#[cfg(target_os = "linux")]
fn hold(group: &str, id: &str) -> std::io::Result<bool> {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    let mut key = Vec::with_capacity(group.len() + id.len() + 1);
    key.extend_from_slice(group.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    let name = format!("seclake/kafka-member/{:016x}", fnv1a(&key));
    let address = SocketAddr::from_abstract_name(name.as_bytes())?;
    match UnixDatagram::bind_addr(&address) {
        Ok(socket) => {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).push(socket);
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn hold(_group: &str, _id: &str) -> std::io::Result<bool> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "member slots need Linux abstract sockets",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique(prefix: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{prefix}-{nanos:x}")
    }

    #[test]
    fn two_consumers_of_one_topic_and_group_get_different_slots() {
        let group = unique("membership-test");
        let first = Claim::default().instance_id(&InstanceId::Derived, &group, "falco-events");
        let second = Claim::default().instance_id(&InstanceId::Derived, &group, "falco-events");
        let host = sanitize(&host_name().unwrap_or_default());
        assert_eq!(first, Some(format!("{host}-falco-events-0")));
        assert_eq!(second, Some(format!("{host}-falco-events-1")));
    }

    #[test]
    fn consumers_of_different_topics_or_groups_each_start_at_slot_0() {
        let group = unique("membership-test");
        for (group, topic) in [(&group, "waf"), (&group, "app"), (&unique("other"), "waf")] {
            let id = Claim::default().instance_id(&InstanceId::Derived, group, topic);
            assert!(id.is_some_and(|id| id.ends_with(&format!("-{topic}-0"))));
        }
    }

    #[test]
    fn a_claim_resolves_once_for_every_clone_of_its_config() {
        let group = unique("membership-test");
        let claim = Claim::default();
        let again = claim.clone();
        let id = claim.instance_id(&InstanceId::Derived, &group, "t");
        assert_eq!(again.instance_id(&InstanceId::Derived, &group, "t"), id);
    }

    #[test]
    fn fixed_ids_are_used_as_they_are_and_false_means_dynamic() {
        let fixed = InstanceId::Fixed("seclake-0-waf".into());
        assert_eq!(
            Claim::default().instance_id(&fixed, "g", "waf").as_deref(),
            Some("seclake-0-waf")
        );
        assert_eq!(
            Claim::default().instance_id(&InstanceId::Dynamic, "g", "waf"),
            None
        );
    }

    #[test]
    fn ids_kafka_would_refuse_are_refused_or_made_valid() {
        assert!(check("pod-0.waf_1").is_ok());
        assert!(check("").is_err());
        assert!(check("pod 0").unwrap_err().contains("' '"));
        assert!(check(&"x".repeat(250)).is_err());
        assert_eq!(sanitize("my host/topic:1"), "my_host_topic_1");
        let long = bounded(&"t".repeat(400));
        assert!(long.len() + "-63".len() <= MAX_LEN);
        assert_ne!(long, bounded(&format!("{}u", "t".repeat(399))));
        assert!(check(&format!("{long}-63")).is_ok());
    }
}
