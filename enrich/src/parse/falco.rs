//! Falco alerts: Falco's JSON output and falcosidekick's payloads (the same
//! fields, plus a `uuid`, and sometimes without `output_fields`).

use std::borrow::Cow;

use sonic_rs::JsonValueTrait as _;

use super::json::{self, FieldError, get, items, req_str, text};
use super::{Emitter, ParseError, rfc3339_micros};
use crate::schema::{EventBuilder, EventRow};
use crate::threat::{Signals, Source};

pub(super) fn parse(
    raw: &[u8],
    em: &mut Emitter,
    out: &mut EventBuilder,
) -> Result<(), ParseError> {
    let alert = em.parse_object(raw)?;
    let required = (|| {
        Ok::<_, FieldError>((
            req_str(&alert, "time")?,
            req_str(&alert, "rule")?,
            req_str(&alert, "priority")?,
        ))
    })();
    let (time, rule, priority) = required.map_err(|e| em.field_error(e))?;
    let ts = rfc3339_micros(time).ok_or_else(|| em.timestamp_error("time", time))?;

    let empty = sonic_rs::Value::new();
    let fields = get(&alert, "output_fields").unwrap_or(&empty);
    let field = |key: &str| text(fields, key);
    let (container_id, k8s_namespace, k8s_pod) = (
        field("container.id"),
        field("k8s.ns.name"),
        field("k8s.pod.name"),
    );
    let (proc_name, proc_cmdline, user_name, remote_ip) = (
        field("proc.name"),
        field("proc.cmdline"),
        field("user.name"),
        field("fd.rip"),
    );
    let image = match (
        field("container.image.repository"),
        field("container.image.tag"),
    ) {
        (Some(repo), Some(tag)) if !tag.is_empty() => Some(Cow::Owned(format!("{repo}:{tag}"))),
        (repo, _) => repo,
    };
    let tags: Vec<&str> = items(&alert, "tags").filter_map(|t| t.as_str()).collect();
    let mitre: Vec<&str> = tags.iter().copied().filter(|t| is_mitre_id(t)).collect();
    let severity = priority.to_ascii_lowercase();
    let row = EventRow {
        ts,
        rule: Some(rule),
        severity: Some(&severity),
        falco_priority: Some(priority),
        falco_source: json::str(&alert, "source"),
        falco_output: json::str(&alert, "output"),
        hostname: json::str(&alert, "hostname"),
        k8s_namespace: k8s_namespace.as_deref(),
        k8s_pod: k8s_pod.as_deref(),
        container_id: container_id.as_deref(),
        container_image: image.as_deref(),
        proc_name: proc_name.as_deref(),
        proc_cmdline: proc_cmdline.as_deref(),
        user_name: user_name.as_deref(),
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
    em.emit(out, raw, row, signals, remote_ip.as_deref(), false);
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
