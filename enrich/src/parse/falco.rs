//! Falco alerts: Falco's JSON output and falcosidekick's payloads (the same
//! fields, plus a `uuid`, and sometimes without `output_fields`).

use std::borrow::Cow;

use seclake_format::Format;
use simd_json::prelude::ValueIntoString as _;

use super::json::{self, FieldError, Json, elements, required_str};
use super::{ClientIp, ParseError, Record, field_error, rfc3339_micros, timestamp_error};
use crate::schema::EventRow;
use crate::threat::Signals;

/// Reads one record, already parsed into the JSON object `value`, and hands
/// it to `emit`.
pub(super) fn parse(
    value: Json<'_>,
    emit: impl FnOnce(Record<'_>) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    let alert = Alert::read(value);
    let required = (|| {
        Ok::<_, FieldError>((
            required_str(alert.time, "time")?,
            required_str(alert.rule, "rule")?,
            required_str(alert.priority, "priority")?,
        ))
    })();
    let (time, rule, priority) = required.map_err(|e| field_error(Format::Falco, e))?;
    let ts = rfc3339_micros(time).ok_or_else(|| timestamp_error(Format::Falco, "time", time))?;

    let fields = alert
        .output_fields
        .map(OutputFields::read)
        .unwrap_or_default();
    let image = match (fields.image_repository, fields.image_tag) {
        (Some(repo), Some(tag)) if !tag.is_empty() => Some(Cow::Owned(format!("{repo}:{tag}"))),
        (repo, _) => repo,
    };
    let tags: Vec<&str> = elements(alert.tags)
        .filter_map(|t| t.into_string())
        .collect();
    let mitre: Vec<&str> = tags.iter().copied().filter(|t| is_mitre_id(t)).collect();
    let severity = priority.to_ascii_lowercase();
    let row = EventRow {
        ts,
        rule: Some(rule),
        severity: Some(&severity),
        falco_priority: Some(priority),
        falco_source: alert.source,
        falco_output: alert.output,
        hostname: alert.hostname,
        k8s_namespace: fields.k8s_namespace.as_deref(),
        k8s_pod: fields.k8s_pod.as_deref(),
        container_id: fields.container_id.as_deref(),
        container_image: image.as_deref(),
        proc_name: fields.proc_name.as_deref(),
        proc_cmdline: fields.proc_cmdline.as_deref(),
        user_name: fields.user_name.as_deref(),
        falco_tags: &tags,
        mitre_ids: &mitre,
        ..EventRow::default()
    };
    let signals = Signals {
        format: Format::Falco,
        falco_priority: Some(priority),
        falco_tags: &tags,
        ..Signals::default()
    };
    // `fd.rip` is context, absent or `<NA>` for most alerts: one that is not
    // an address leaves the event without one rather than losing the alert.
    let client_ip = fields.remote_ip.as_deref().and_then(ClientIp::parse);
    emit(Record {
        row,
        signals,
        client_ip,
        blocked: false,
    })
}

json::object_fields! {
    /// The alert fields seclake reads.
    struct Alert {
        time: value = "time",
        rule: value = "rule",
        priority: value = "priority",
        output: str = "output",
        source: str = "source",
        hostname: str = "hostname",
        tags: value = "tags",
        output_fields: value = "output_fields",
    }
}

json::object_fields! {
    /// The `output_fields` seclake stores; values may be strings or numbers.
    struct OutputFields {
        container_id: text = "container.id",
        image_repository: text = "container.image.repository",
        image_tag: text = "container.image.tag",
        k8s_namespace: text = "k8s.ns.name",
        k8s_pod: text = "k8s.pod.name",
        proc_name: text = "proc.name",
        proc_cmdline: text = "proc.cmdline",
        user_name: text = "user.name",
        remote_ip: text = "fd.rip",
    }
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
