//! The commerce API's JSON access log, one object per request.

use serde::Deserialize;

use super::str::{Str, opt};
use super::{Emitter, ParseError, rfc3339_micros};
use crate::schema::{EventBuilder, EventRow};
use crate::threat::{Signals, Source};

#[derive(Deserialize)]
struct AccessLog<'a> {
    #[serde(borrow)]
    ts: Str<'a>,
    #[serde(borrow)]
    method: Str<'a>,
    status: i32,
    #[serde(borrow)]
    level: Option<Str<'a>>,
    #[serde(borrow)]
    service: Option<Str<'a>>,
    #[serde(borrow)]
    route: Option<Str<'a>>,
    #[serde(borrow)]
    path: Option<Str<'a>>,
    latency_ms: Option<f64>,
    bytes: Option<i64>,
    #[serde(borrow)]
    client_ip: Option<Str<'a>>,
    #[serde(borrow)]
    user_agent: Option<Str<'a>>,
    #[serde(borrow)]
    user_id: Option<Str<'a>>,
    #[serde(borrow)]
    trace_id: Option<Str<'a>>,
    #[serde(borrow)]
    request_id: Option<Str<'a>>,
    #[serde(borrow)]
    idempotency_key: Option<Str<'a>>,
    #[serde(borrow)]
    order_id: Option<Str<'a>>,
    amount_krw: Option<i64>,
    #[serde(borrow)]
    error: Option<Str<'a>>,
    #[serde(borrow)]
    msg: Option<Str<'a>>,
}

pub(super) fn parse(
    raw: &[u8],
    em: &mut Emitter,
    out: &mut EventBuilder,
) -> Result<(), ParseError> {
    let log: AccessLog<'_> = sonic_rs::from_slice(raw).map_err(|e| em.json_error(e))?;
    let ts =
        rfc3339_micros(log.ts.as_str()).ok_or_else(|| em.timestamp_error("ts", log.ts.as_str()))?;
    let severity = opt(&log.level).map(str::to_ascii_lowercase);
    let row = EventRow {
        ts,
        severity: severity.as_deref(),
        http_method: Some(log.method.as_str()),
        uri: opt(&log.path),
        status: Some(log.status),
        user_agent: opt(&log.user_agent),
        request_id: opt(&log.request_id),
        app_service: opt(&log.service),
        app_route: opt(&log.route),
        latency_ms: log.latency_ms,
        bytes: log.bytes,
        user_id: opt(&log.user_id),
        trace_id: opt(&log.trace_id),
        idempotency_key: opt(&log.idempotency_key),
        order_id: opt(&log.order_id),
        amount: log.amount_krw,
        app_error: opt(&log.error),
        message: opt(&log.msg),
        ..EventRow::default()
    };
    let signals = Signals {
        source: Source::App,
        user_agent: row.user_agent,
        status: u16::try_from(log.status).ok(),
        text: raw,
        ..Signals::default()
    };
    let blocked = matches!(log.status, 401 | 403 | 429);
    em.emit(out, raw, row, signals, opt(&log.client_ip), blocked);
    Ok(())
}
