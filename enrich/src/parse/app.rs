//! The commerce API's JSON access log, one object per request.

use sonic_rs::{JsonContainerTrait as _, JsonValueTrait as _, Value};

use super::json::{FieldError, opt_f64, opt_i64, required_i64, required_str};
use super::{Emitter, ParseError, rfc3339_micros};
use crate::schema::{EventBuilder, EventRow};
use crate::threat::{Signals, Source};

pub(super) fn parse(
    raw: &[u8],
    em: &mut Emitter,
    out: &mut EventBuilder,
) -> Result<(), ParseError> {
    let value = em.parse_object(raw)?;
    let log = AccessLog::read(&value);
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
    let (ts, method, status, latency_ms, bytes, amount) = fields.map_err(|e| em.field_error(e))?;
    let ts = rfc3339_micros(ts).ok_or_else(|| em.timestamp_error("ts", ts))?;
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
        source: Source::App,
        user_agent: row.user_agent,
        status: status.and_then(|s| u16::try_from(s).ok()),
        text: raw,
        ..Signals::default()
    };
    let blocked = matches!(status, Some(401 | 403 | 429));
    em.emit(out, raw, row, signals, log.client_ip, blocked);
    Ok(())
}

/// The access-log fields seclake reads, found in one pass over the object
/// (text fields of another type read as absent).
#[derive(Default)]
struct AccessLog<'v> {
    ts: Option<&'v Value>,
    method: Option<&'v Value>,
    status: Option<&'v Value>,
    latency_ms: Option<&'v Value>,
    bytes: Option<&'v Value>,
    amount_krw: Option<&'v Value>,
    level: Option<&'v str>,
    service: Option<&'v str>,
    route: Option<&'v str>,
    path: Option<&'v str>,
    client_ip: Option<&'v str>,
    user_agent: Option<&'v str>,
    user_id: Option<&'v str>,
    trace_id: Option<&'v str>,
    request_id: Option<&'v str>,
    idempotency_key: Option<&'v str>,
    order_id: Option<&'v str>,
    error: Option<&'v str>,
    msg: Option<&'v str>,
}

impl<'v> AccessLog<'v> {
    fn read(value: &'v Value) -> AccessLog<'v> {
        let mut f = AccessLog::default();
        let Some(object) = value.as_object() else {
            return f;
        };
        for (key, v) in object.iter() {
            if v.is_null() {
                continue;
            }
            let s = v.as_str();
            match key {
                "ts" => f.ts = Some(v),
                "method" => f.method = Some(v),
                "status" => f.status = Some(v),
                "latency_ms" => f.latency_ms = Some(v),
                "bytes" => f.bytes = Some(v),
                "amount_krw" => f.amount_krw = Some(v),
                "level" => f.level = s,
                "service" => f.service = s,
                "route" => f.route = s,
                "path" => f.path = s,
                "client_ip" => f.client_ip = s,
                "user_agent" => f.user_agent = s,
                "user_id" => f.user_id = s,
                "trace_id" => f.trace_id = s,
                "request_id" => f.request_id = s,
                "idempotency_key" => f.idempotency_key = s,
                "order_id" => f.order_id = s,
                "error" => f.error = s,
                "msg" => f.msg = s,
                _ => {}
            }
        }
        f
    }
}
