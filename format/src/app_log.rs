//! The app access log: one JSON object per HTTP request, as the commerce API
//! writes it and seclake's `app` parser reads it.
//!
//! [`AccessLog`] is the writer's side; the [`field`] names are the reader's.
//! Both come from this one module, so the two cannot drift apart.

use serde::{Deserialize, Serialize};

/// The JSON keys of an access-log line.
pub mod field {
    /// When the request finished: RFC 3339 with microseconds, UTC.
    pub const TS: &str = "ts";
    /// `info`, `warn` or `error`, from the response status.
    pub const LEVEL: &str = "level";
    /// The service that served the request.
    pub const SERVICE: &str = "service";
    /// The HTTP method.
    pub const METHOD: &str = "method";
    /// The route template (`/api/v1/orders/{id}`).
    pub const ROUTE: &str = "route";
    /// The request's path, without the query string.
    pub const PATH: &str = "path";
    /// The response status.
    pub const STATUS: &str = "status";
    /// Time from the request's head to the response's head, in milliseconds.
    pub const LATENCY_MS: &str = "latency_ms";
    /// Response body size in bytes.
    pub const BYTES: &str = "bytes";
    /// The client's address (`X-Forwarded-For` behind a trusted proxy).
    pub const CLIENT_IP: &str = "client_ip";
    /// The `User-Agent` header.
    pub const USER_AGENT: &str = "user_agent";
    /// The user the request acted for.
    pub const USER_ID: &str = "user_id";
    /// W3C trace id (`traceparent`), or one made for the request.
    pub const TRACE_ID: &str = "trace_id";
    /// The request id (`X-Request-Id`), or one made for the request.
    pub const REQUEST_ID: &str = "request_id";
    /// The order request's idempotency key.
    pub const IDEMPOTENCY_KEY: &str = "idempotency_key";
    /// The order the request created or read.
    pub const ORDER_ID: &str = "order_id";
    /// The order's amount in Korean won.
    pub const AMOUNT_KRW: &str = "amount_krw";
    /// Why the request failed, in a few words.
    pub const ERROR: &str = "error";
    /// Free text.
    pub const MSG: &str = "msg";
}

/// One access-log line. Absent values are left out of the JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessLog<'a> {
    /// See [`field::TS`].
    pub ts: &'a str,
    /// See [`field::LEVEL`].
    pub level: &'a str,
    /// See [`field::SERVICE`].
    pub service: &'a str,
    /// See [`field::METHOD`].
    pub method: &'a str,
    /// See [`field::ROUTE`].
    #[serde(skip_serializing_if = "Option::is_none", borrow)]
    pub route: Option<&'a str>,
    /// See [`field::PATH`].
    pub path: &'a str,
    /// See [`field::STATUS`].
    pub status: u16,
    /// See [`field::LATENCY_MS`].
    pub latency_ms: f64,
    /// See [`field::BYTES`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// See [`field::CLIENT_IP`].
    #[serde(skip_serializing_if = "Option::is_none", borrow)]
    pub client_ip: Option<&'a str>,
    /// See [`field::USER_AGENT`].
    #[serde(skip_serializing_if = "Option::is_none", borrow)]
    pub user_agent: Option<&'a str>,
    /// See [`field::USER_ID`].
    #[serde(skip_serializing_if = "Option::is_none", borrow)]
    pub user_id: Option<&'a str>,
    /// See [`field::TRACE_ID`].
    pub trace_id: &'a str,
    /// See [`field::REQUEST_ID`].
    pub request_id: &'a str,
    /// See [`field::IDEMPOTENCY_KEY`].
    #[serde(skip_serializing_if = "Option::is_none", borrow)]
    pub idempotency_key: Option<&'a str>,
    /// See [`field::ORDER_ID`].
    #[serde(skip_serializing_if = "Option::is_none", borrow)]
    pub order_id: Option<&'a str>,
    /// See [`field::AMOUNT_KRW`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_krw: Option<i64>,
    /// See [`field::ERROR`].
    #[serde(skip_serializing_if = "Option::is_none", borrow)]
    pub error: Option<&'a str>,
    /// See [`field::MSG`].
    #[serde(skip_serializing_if = "Option::is_none", borrow)]
    pub msg: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_keys_are_the_field_names() {
        let line = AccessLog {
            route: Some("/r"),
            bytes: Some(1),
            client_ip: Some("192.0.2.1"),
            user_agent: Some("ua"),
            user_id: Some("u"),
            idempotency_key: Some("k"),
            order_id: Some("o"),
            amount_krw: Some(1),
            error: Some("e"),
            msg: Some("m"),
            ..AccessLog::default()
        };
        let json = serde_json::to_value(&line).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut names = vec![
            field::TS,
            field::LEVEL,
            field::SERVICE,
            field::METHOD,
            field::ROUTE,
            field::PATH,
            field::STATUS,
            field::LATENCY_MS,
            field::BYTES,
            field::CLIENT_IP,
            field::USER_AGENT,
            field::USER_ID,
            field::TRACE_ID,
            field::REQUEST_ID,
            field::IDEMPOTENCY_KEY,
            field::ORDER_ID,
            field::AMOUNT_KRW,
            field::ERROR,
            field::MSG,
        ];
        keys.sort_unstable();
        names.sort_unstable();
        assert_eq!(keys, names);
    }
}
