//! The commerce API's JSON access log, one object per request.

use seclake_format::Format;
use seclake_format::app_log::field;

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
            required_str(log.ts, field::TS)?,
            required_str(log.method, field::METHOD)?,
            required_i64(log.status, field::STATUS)?,
            opt_f64(log.latency_ms, field::LATENCY_MS)?,
            opt_i64(log.bytes, field::BYTES)?,
            opt_i64(log.amount_krw, field::AMOUNT_KRW)?,
        ))
    })();
    let (ts, method, status, latency_ms, bytes, amount) =
        fields.map_err(|e| field_error(Format::App, e))?;
    let ts = rfc3339_micros(ts).ok_or_else(|| timestamp_error(Format::App, field::TS, ts))?;
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
    /// The access-log fields seclake reads: the keys the commerce API writes.
    struct AccessLog {
        ts: value = field::TS,
        method: value = field::METHOD,
        status: value = field::STATUS,
        latency_ms: value = field::LATENCY_MS,
        bytes: value = field::BYTES,
        amount_krw: value = field::AMOUNT_KRW,
        level: str = field::LEVEL,
        service: str = field::SERVICE,
        route: str = field::ROUTE,
        path: str = field::PATH,
        client_ip: str = field::CLIENT_IP,
        user_agent: str = field::USER_AGENT,
        user_id: str = field::USER_ID,
        trace_id: str = field::TRACE_ID,
        request_id: str = field::REQUEST_ID,
        idempotency_key: str = field::IDEMPOTENCY_KEY,
        order_id: str = field::ORDER_ID,
        error: str = field::ERROR,
        msg: str = field::MSG,
    }
}
