//! Error answers as RFC 9457 problem details (`application/problem+json`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::access_log::Fields;

/// One problem answer.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// `urn:commerce-api:problem:<kind>`: what went wrong, for programs.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, fixed summary of the kind.
    pub title: &'static str,
    /// The status code again.
    pub status: u16,
    /// This occurrence, for people.
    pub detail: String,
    /// The request field at fault (`items[0].quantity`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The order concerned (a conflicting idempotency key's first order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip)]
    retry_after: Option<u32>,
}

impl Problem {
    /// A problem of `kind` with `status`.
    pub fn new(
        status: StatusCode,
        kind: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            kind: format!("urn:commerce-api:problem:{kind}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            order_id: None,
            retry_after: None,
        }
    }

    /// Names the request field at fault.
    pub fn field(mut self, field: impl Into<String>) -> Problem {
        let field = field.into();
        if !field.is_empty() {
            self.field = Some(field);
        }
        self
    }

    /// Names the order concerned.
    pub fn order(mut self, id: impl Into<String>) -> Problem {
        self.order_id = Some(id.into());
        self
    }

    /// Tells the client when to try again (`Retry-After`, seconds).
    pub fn retry_after(mut self, seconds: u32) -> Problem {
        self.retry_after = Some(seconds);
        self
    }

    /// 404 for a route or a resource.
    pub fn not_found(what: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", what)
    }

    /// 500 for a failure of ours; the detail stays in our log.
    pub fn internal(error: &dyn std::error::Error) -> Problem {
        tracing::error!("request failed: {error}");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request failed on our side; it is safe to retry with the same idempotency key",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        let error = match &self.field {
            Some(field) => format!("{field}: {}", self.detail),
            None => self.detail,
        };
        resp.extensions_mut().insert(Fields {
            error: Some(error),
            order_id: self.order_id,
            ..Fields::default()
        });
        resp
    }
}
