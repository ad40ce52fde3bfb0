//! The commerce API's JSON access log, one object per request.

use super::json::{self, FieldError, opt_f64, opt_i64, req_i64, req_str};
use super::{Emitter, ParseError, rfc3339_micros};
use crate::schema::{EventBuilder, EventRow};
use crate::threat::{Signals, Source};

pub(super) fn parse(
    raw: &[u8],
    em: &mut Emitter,
    out: &mut EventBuilder,
) -> Result<(), ParseError> {
    let log = em.parse_object(raw)?;
    let fields = (|| {
        Ok::<_, FieldError>((
            req_str(&log, "ts")?,
            req_str(&log, "method")?,
            req_i64(&log, "status")?,
            opt_f64(&log, "latency_ms")?,
            opt_i64(&log, "bytes")?,
            opt_i64(&log, "amount_krw")?,
        ))
    })();
    let (ts, method, status, latency_ms, bytes, amount) = fields.map_err(|e| em.field_error(e))?;
    let ts = rfc3339_micros(ts).ok_or_else(|| em.timestamp_error("ts", ts))?;
    let status = i32::try_from(status).ok();
    let severity = json::str(&log, "level").map(str::to_ascii_lowercase);
    let row = EventRow {
        ts,
        severity: severity.as_deref(),
        http_method: Some(method),
        uri: json::str(&log, "path"),
        status,
        user_agent: json::str(&log, "user_agent"),
        request_id: json::str(&log, "request_id"),
        app_service: json::str(&log, "service"),
        app_route: json::str(&log, "route"),
        latency_ms,
        bytes,
        user_id: json::str(&log, "user_id"),
        trace_id: json::str(&log, "trace_id"),
        idempotency_key: json::str(&log, "idempotency_key"),
        order_id: json::str(&log, "order_id"),
        amount,
        app_error: json::str(&log, "error"),
        message: json::str(&log, "msg"),
        ..EventRow::default()
    };
    let signals = Signals {
        source: Source::App,
        user_agent: row.user_agent,
        status: status.and_then(|s| u16::try_from(s).ok()),
        text: raw,
        ..Signals::default()
    };
    let blocked = matches!(status, Some(401 | 403 | 429));
    em.emit(
        out,
        raw,
        row,
        signals,
        json::str(&log, "client_ip"),
        blocked,
    );
    Ok(())
}
