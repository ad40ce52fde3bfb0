//! Amazon GuardDuty findings: EventBridge "GuardDuty Finding" events (as an
//! EventBridge rule delivers them through Kafka, Kinesis or Firehose), or
//! bare findings, the `detail` of such an event, as GuardDuty exports them
//! to S3.
//!
//! Field names follow AWS's GuardDuty finding format (the `Finding` type of
//! the GuardDuty API, camelCase); unknown fields are ignored. Archived
//! findings are parsed like any other: archiving is an analyst's verdict,
//! not a property of the activity found.

use seclake_format::Format;

use super::json::{self, FieldError, Json, elements};
use super::{ClientIp, ParseError, Record, cut, field_error, rfc3339_micros, timestamp_error};
use crate::schema::EventRow;
use crate::threat::Signals;

/// The EventBridge `detail-type` of a finding.
const FINDING_DETAIL_TYPE: &str = "GuardDuty Finding";

/// Reads one record, already parsed into the JSON object `value`, and hands
/// it to `emit`.
pub(super) fn parse(
    value: Json<'_>,
    emit: impl FnOnce(Record<'_>) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    let envelope = Envelope::read(value);
    let wrapped = envelope.detail.is_some() || envelope.detail_type.is_some();
    let (finding, names) = if wrapped {
        if let Some(other) = envelope.detail_type
            && other != FINDING_DETAIL_TYPE
        {
            return Err(ParseError::Field {
                format: Format::GuardDuty,
                field: "detail-type",
                problem: format!("is {:?}, not {FINDING_DETAIL_TYPE:?}", cut(other)),
            });
        }
        let detail = json::required(envelope.detail, "detail")
            .and_then(|d| {
                if d.is_object() {
                    Ok(d)
                } else {
                    Err(FieldError::Type("detail", "an object"))
                }
            })
            .map_err(|e| field_error(Format::GuardDuty, e))?;
        (Finding::read(detail), &WRAPPED)
    } else {
        (Finding::read(value), &BARE)
    };
    let service = finding.service.map(Service::read).unwrap_or_default();

    let required = (|| {
        Ok::<_, FieldError>((
            json::required_str(finding.kind, names.kind)?,
            json::required_f64(finding.severity, names.severity)?,
        ))
    })();
    let (kind, score) = required.map_err(|e| field_error(Format::GuardDuty, e))?;
    let severity = severity_label(score).ok_or_else(|| ParseError::Field {
        format: Format::GuardDuty,
        field: names.severity,
        problem: format!("is {score}, not a severity from 0 to 10"),
    })?;
    let ts = event_time(&finding, &service, envelope.time, names)?;

    let resource = finding.resource.map(Resource::read).unwrap_or_default();
    let key = resource.access_key.map(AccessKey::read).unwrap_or_default();
    let action = service.action.map(Action::read).unwrap_or_default();
    let user_agent = [action.aws_api_call, action.kubernetes_api_call]
        .into_iter()
        .flatten()
        .find_map(|a| json::str(a, "userAgent"));
    let row = EventRow {
        ts,
        action: action.action_type,
        rule: Some(kind),
        severity: Some(severity),
        user_agent,
        request_id: finding.id,
        hostname: resource
            .instance_details
            .and_then(|i| json::str(i, "instanceId")),
        user_name: key.user_name,
        message: finding.title,
        aws_access_key_id: key.access_key_id,
        ..EventRow::default()
    };
    let signals = Signals {
        format: Format::GuardDuty,
        guardduty_severity: Some(severity),
        user_agent,
        ..Signals::default()
    };
    // The remote end is context the finding carries when it has one: one
    // that is not an address leaves the event without one rather than
    // losing the finding.
    let client_ip = action.remote_ip().and_then(ClientIp::parse);
    emit(Record {
        row,
        signals,
        client_ip,
        blocked: false,
    })
}

/// GuardDuty's label of a severity score: 1.0–3.9 `low`, 4.0–6.9 `medium`,
/// 7.0–8.9 `high`, 9.0–10.0 `critical`; `None` outside 0–10.
fn severity_label(score: f64) -> Option<&'static str> {
    match score {
        s if !(0.0..=10.0).contains(&s) => None,
        s if s >= 9.0 => Some("critical"),
        s if s >= 7.0 => Some("high"),
        s if s >= 4.0 => Some("medium"),
        _ => Some("low"),
    }
}

/// When the finding was last updated: its `updatedAt`, else
/// `service.eventLastSeen`, else the EventBridge event's `time`.
fn event_time(
    finding: &Finding<'_>,
    service: &Service<'_>,
    envelope_time: Option<Json<'_>>,
    names: &Names,
) -> Result<i64, ParseError> {
    let found = [
        (finding.updated_at, names.updated_at),
        (service.event_last_seen, names.event_last_seen),
        (envelope_time, "time"),
    ]
    .into_iter()
    .find_map(|(v, field)| v.map(|v| (v, field)));
    let Some((time, field)) = found else {
        return Err(ParseError::Field {
            format: Format::GuardDuty,
            field: names.updated_at,
            problem: names.no_time.to_owned(),
        });
    };
    let time =
        json::required_str(Some(time), field).map_err(|e| field_error(Format::GuardDuty, e))?;
    rfc3339_micros(time).ok_or_else(|| timestamp_error(Format::GuardDuty, field, time))
}

/// The names of the finding fields errors mention, as paths from the record's root.
struct Names {
    kind: &'static str,
    severity: &'static str,
    updated_at: &'static str,
    event_last_seen: &'static str,
    /// The problem when no time field is there at all.
    no_time: &'static str,
}

const BARE: Names = Names {
    kind: "type",
    severity: "severity",
    updated_at: "updatedAt",
    event_last_seen: "service.eventLastSeen",
    no_time: "is missing, and so is `service.eventLastSeen`",
};

const WRAPPED: Names = Names {
    kind: "detail.type",
    severity: "detail.severity",
    updated_at: "detail.updatedAt",
    event_last_seen: "detail.service.eventLastSeen",
    no_time: "is missing, and so are `detail.service.eventLastSeen` and `time`",
};

json::object_fields! {
    /// The EventBridge fields seclake reads; a bare finding has none of them.
    struct Envelope {
        detail_type: str = "detail-type",
        detail: value = "detail",
        time: value = "time",
    }
}

json::object_fields! {
    /// The finding fields seclake reads.
    struct Finding {
        id: str = "id",
        kind: value = "type",
        severity: value = "severity",
        title: str = "title",
        updated_at: value = "updatedAt",
        resource: value = "resource",
        service: value = "service",
    }
}

json::object_fields! {
    /// The `resource` objects seclake reads.
    struct Resource {
        instance_details: value = "instanceDetails",
        access_key: value = "accessKeyDetails",
    }
}

json::object_fields! {
    /// `resource.accessKeyDetails`: the key an IAM finding is about.
    struct AccessKey {
        access_key_id: str = "accessKeyId",
        user_name: str = "userName",
    }
}

json::object_fields! {
    /// The `service` fields seclake reads.
    struct Service {
        action: value = "action",
        event_last_seen: value = "eventLastSeen",
    }
}

json::object_fields! {
    /// `service.action`: its type and the one object describing it.
    struct Action {
        action_type: str = "actionType",
        network_connection: value = "networkConnectionAction",
        aws_api_call: value = "awsApiCallAction",
        port_probe: value = "portProbeAction",
        rds_login_attempt: value = "rdsLoginAttemptAction",
        kubernetes_api_call: value = "kubernetesApiCallAction",
    }
}

impl<'v> Action<'v> {
    /// The remote address as logged: the first action object's
    /// `remoteIpDetails` (a port probe's first probe with one), IPv4 before
    /// IPv6. DNS requests have none.
    fn remote_ip(&self) -> Option<&'v str> {
        let probes = self
            .port_probe
            .and_then(|p| json::get(p, "portProbeDetails"));
        [self.network_connection, self.aws_api_call]
            .into_iter()
            .flatten()
            .chain(elements(probes))
            .chain(
                [self.rds_login_attempt, self.kubernetes_api_call]
                    .into_iter()
                    .flatten(),
            )
            .find_map(|a| address(json::get(a, "remoteIpDetails")?))
    }
}

/// The address of a `remoteIpDetails` object.
fn address(details: Json<'_>) -> Option<&str> {
    json::str(details, "ipAddressV4").or_else(|| json::str(details, "ipAddressV6"))
}

#[cfg(test)]
mod tests {
    use super::severity_label;

    #[test]
    fn severity_labels_follow_guardduty_ranges() {
        let cases = [
            (0.0, "low"),
            (1.0, "low"),
            (3.9, "low"),
            (4.0, "medium"),
            (6.9, "medium"),
            (7.0, "high"),
            (8.9, "high"),
            (9.0, "critical"),
            (10.0, "critical"),
        ];
        for (score, label) in cases {
            assert_eq!(severity_label(score), Some(label), "{score}");
        }
    }

    #[test]
    fn a_score_outside_0_to_10_has_no_label() {
        for score in [-0.1, 10.1, f64::NAN, f64::INFINITY] {
            assert_eq!(severity_label(score), None, "{score}");
        }
    }
}
