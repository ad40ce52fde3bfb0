//! Falco alerts: Falco's JSON output and falcosidekick's payloads (the same
//! fields, plus a `uuid`, and sometimes without `output_fields`).

use serde::Deserialize;

use super::str::{Str, opt};
use super::{Emitter, ParseError, rfc3339_micros};
use crate::schema::{EventBuilder, EventRow};
use crate::threat::{Signals, Source};

#[derive(Deserialize)]
struct Alert<'a> {
    #[serde(borrow)]
    time: Str<'a>,
    #[serde(borrow)]
    rule: Str<'a>,
    #[serde(borrow)]
    priority: Str<'a>,
    #[serde(borrow)]
    output: Option<Str<'a>>,
    #[serde(borrow)]
    source: Option<Str<'a>>,
    #[serde(borrow)]
    hostname: Option<Str<'a>>,
    #[serde(borrow)]
    tags: Option<Vec<Str<'a>>>,
    #[serde(borrow)]
    output_fields: Option<OutputFields<'a>>,
}

/// The `output_fields` seclake stores; values may be strings, numbers or null.
#[derive(Deserialize, Default)]
struct OutputFields<'a> {
    #[serde(borrow, rename = "container.id")]
    container_id: Option<Str<'a>>,
    #[serde(borrow, rename = "container.image.repository")]
    image_repository: Option<Str<'a>>,
    #[serde(borrow, rename = "container.image.tag")]
    image_tag: Option<Str<'a>>,
    #[serde(borrow, rename = "k8s.ns.name")]
    k8s_namespace: Option<Str<'a>>,
    #[serde(borrow, rename = "k8s.pod.name")]
    k8s_pod: Option<Str<'a>>,
    #[serde(borrow, rename = "proc.name")]
    proc_name: Option<Str<'a>>,
    #[serde(borrow, rename = "proc.cmdline")]
    proc_cmdline: Option<Str<'a>>,
    #[serde(borrow, rename = "user.name")]
    user_name: Option<Str<'a>>,
    #[serde(borrow, rename = "fd.rip")]
    remote_ip: Option<Str<'a>>,
}

pub(super) fn parse(
    raw: &[u8],
    em: &mut Emitter,
    out: &mut EventBuilder,
) -> Result<(), ParseError> {
    let alert: Alert<'_> = sonic_rs::from_slice(raw).map_err(|e| em.json_error(e))?;
    let ts = rfc3339_micros(alert.time.as_str())
        .ok_or_else(|| em.timestamp_error("time", alert.time.as_str()))?;
    let fields = alert.output_fields.unwrap_or_default();
    let tags: Vec<&str> = alert.tags.iter().flatten().map(Str::as_str).collect();
    let mitre: Vec<&str> = tags.iter().copied().filter(|t| is_mitre_id(t)).collect();
    let image = match (opt(&fields.image_repository), opt(&fields.image_tag)) {
        (Some(repo), Some(tag)) if !tag.is_empty() => Some(format!("{repo}:{tag}")),
        (Some(repo), _) => Some(repo.to_owned()),
        (None, _) => None,
    };
    let priority = alert.priority.as_str();
    let severity = priority.to_ascii_lowercase();
    let row = EventRow {
        ts,
        rule: Some(alert.rule.as_str()),
        severity: Some(&severity),
        falco_priority: Some(priority),
        falco_source: opt(&alert.source),
        falco_output: opt(&alert.output),
        hostname: opt(&alert.hostname),
        k8s_namespace: opt(&fields.k8s_namespace),
        k8s_pod: opt(&fields.k8s_pod),
        container_id: opt(&fields.container_id),
        container_image: image.as_deref(),
        proc_name: opt(&fields.proc_name),
        proc_cmdline: opt(&fields.proc_cmdline),
        user_name: opt(&fields.user_name),
        falco_tags: &tags,
        mitre_ids: &mitre,
        ..EventRow::default()
    };
    let signals = Signals {
        source: Source::Falco,
        falco_priority: Some(priority),
        falco_tags: &tags,
        ..Signals::default()
    };
    em.emit(out, raw, row, signals, opt(&fields.remote_ip), false);
    Ok(())
}

/// `T1059` or `T1555.003`: a MITRE ATT&CK technique or sub-technique id.
fn is_mitre_id(tag: &str) -> bool {
    let b = tag.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => b[0] == b'T' && digits(&b[1..5]),
        9 => b[0] == b'T' && digits(&b[1..5]) && b[5] == b'.' && digits(&b[6..9]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_mitre_id;

    #[test]
    fn mitre_ids_are_techniques_and_sub_techniques_only() {
        assert!(is_mitre_id("T1059"));
        assert!(is_mitre_id("T1555.003"));
        assert!(!is_mitre_id("mitre_execution"));
        assert!(!is_mitre_id("T105"));
        assert!(!is_mitre_id("T1059.1"));
    }
}
