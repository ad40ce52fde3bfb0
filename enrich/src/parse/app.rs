//! The commerce API's JSON access log, one object per request.

use seclake_format::Format;

use super::json::{self, FieldError, Json, opt_f64, opt_i64, required_i64, required_str};
use super::{ClientIp, ParseError, Record, field_error, rfc3339_micros, timestamp_error};
use crate::schema::EventRow;
use crate::threat::Signals;

/// Reads one record, already parsed into the JSON object `value`, and hands
/// it to `emit`. `raw` is scanned for leaked keys.
pub(super) fn parse(
    raw: &[u8],
    value: Json<'_>,
    emit: impl FnOnce(Record<'_>) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    let log = AccessLog::read(value);
    let fields = (|| {
        Ok::<_, FieldError>((
            required_str(log.ts, "ts")?,
            required_str(log.method, "method")?,
            required_i64(log.status, "status")?,
            opt_f64(log.latency_ms, "latency_ms")?,
            opt_i64(log.bytes, "bytes")?,
            opt_i64(log.amount_krw, "amount_krw")?,
        ))
    })();
    let (ts, method, status, latency_ms, bytes, amount) =
        fields.map_err(|e| field_error(Format::App, e))?;
    let ts = rfc3339_micros(ts).ok_or_else(|| timestamp_error(Format::App, "ts", ts))?;
    let status = i32::try_from(status).ok();
    let severity = log.level.map(str::to_ascii_lowercase);
    let row = EventRow {
        ts,
        severity: severity.as_deref(),
        http_method: Some(method),
        uri: log.path,
        status,
        user_agent: log.user_agent,
        request_id: log.request_id,
        app_service: log.service,
        app_route: log.route,
        latency_ms,
        bytes,
        user_id: log.user_id,
        trace_id: log.trace_id,
        idempotency_key: log.idempotency_key,
        order_id: log.order_id,
        amount,
        app_error: log.error,
        message: log.msg,
        ..EventRow::default()
    };
    let signals = Signals {
        format: Format::App,
        user_agent: row.user_agent,
        status: status.and_then(|s| u16::try_from(s).ok()),
        text: raw,
        ..Signals::default()
    };
    // Optional context: one that is not an address leaves the event without
    // one rather than dropping the request from the lake.
    let client_ip = log.client_ip.and_then(ClientIp::parse);
    emit(Record {
        row,
        signals,
        client_ip,
        blocked: matches!(status, Some(401 | 403 | 429)),
    })
}

json::object_fields! {
    /// The access-log fields seclake reads.
    struct AccessLog {
        ts: value = "ts",
        method: value = "method",
        status: value = "status",
        latency_ms: value = "latency_ms",
        bytes: value = "bytes",
        amount_krw: value = "amount_krw",
        level: str = "level",
        service: str = "service",
        route: str = "route",
        path: str = "path",
        client_ip: str = "client_ip",
        user_agent: str = "user_agent",
        user_id: str = "user_id",
        trace_id: str = "trace_id",
        request_id: str = "request_id",
        idempotency_key: str = "idempotency_key",
        order_id: str = "order_id",
        error: str = "error",
        msg: str = "msg",
    }
}
