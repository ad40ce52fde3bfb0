//! The HTTP API: orders, products, users' orders, health and metrics.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};

use crate::access_log::Fields;
use crate::order::{NewOrder, Order};
use crate::problem::Problem;
use crate::store::{PlaceError, Placed, Product, Store, StoreError};

/// Most orders on one page of a user's orders.
pub const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 20;

/// What every handler shares.
#[derive(Clone)]
pub struct Api {
    /// The order store.
    pub store: Store,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

/// The routes, without the layers `server` adds around them.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/api/v1/orders", post(place_order))
        .route("/api/v1/orders/{id}", get(get_order))
        .route("/api/v1/users/{id}/orders", get(user_orders))
        .route("/api/v1/products", get(products))
        .route("/api/v1/products/{id}", get(product))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(api)
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not take that method",
            )
        })
}

async fn place_order(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the order as Content-Type: application/json",
        )
        .into_response();
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too-large"
            } else {
                "unreadable-body"
            };
            return Problem::new(status, kind, "Request body refused", rejection.body_text())
                .into_response();
        }
    };
    let order = match NewOrder::parse(&body) {
        Ok(order) => order,
        Err(invalid) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
                invalid.reason,
            )
            .field(invalid.field)
            .into_response();
        }
    };
    let mut fields = Fields {
        user_id: Some(order.user_id.clone()),
        idempotency_key: order.idempotency_key.clone(),
        ..Fields::default()
    };
    let resp = match api.store.place(order).await {
        Ok(Placed::Created(order)) => {
            metrics::counter!("commerce_orders_total").increment(1);
            metrics::counter!("commerce_revenue_krw_total")
                .increment(order.total_krw.max(0) as u64);
            fields.order_id = Some(order.id.clone());
            fields.amount_krw = Some(order.total_krw);
            let mut resp = (StatusCode::CREATED, json_body(&order)).into_response();
            if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/orders/{}", order.id)) {
                resp.headers_mut().insert(header::LOCATION, location);
            }
            resp
        }
        Ok(Placed::Replayed(order)) => {
            metrics::counter!("commerce_order_replays_total").increment(1);
            fields.order_id = Some(order.id.clone());
            (StatusCode::OK, json_body(&order)).into_response()
        }
        Err(e) => place_problem(e).into_response(),
    };
    with_fields(resp, fields)
}

fn place_problem(e: PlaceError) -> Problem {
    let detail = e.to_string();
    match e {
        PlaceError::Conflict { order_id } => Problem::new(
            StatusCode::CONFLICT,
            "idempotency-conflict",
            "Idempotency key reused",
            detail,
        )
        .field("idempotency_key")
        .order(order_id),
        PlaceError::UnknownProduct { line, .. } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-product",
            "Unknown product",
            detail,
        )
        .field(format!("items[{line}].product_id")),
        PlaceError::OutOfStock { line, .. } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "out-of-stock",
            "Not enough stock",
            detail,
        )
        .field(format!("items[{line}].quantity")),
        PlaceError::PriceChanged { line, .. } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "price-changed",
            "Price changed",
            detail,
        )
        .field(format!("items[{line}].price")),
        PlaceError::Busy => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "Too busy",
            "too many orders are waiting to be written; retry with the same idempotency key",
        )
        .retry_after(1),
        PlaceError::Store(e) => store_problem(&e),
    }
}

fn store_problem(e: &StoreError) -> Problem {
    match e {
        StoreError::Stopped => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Unavailable",
            "the service is shutting down",
        )
        .retry_after(1),
        e => Problem::internal(e),
    }
}

async fn get_order(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    match api.store.order(id.clone()).await {
        Ok(Some(order)) => {
            let fields = Fields {
                user_id: Some(order.user_id.clone()),
                order_id: Some(order.id.clone()),
                ..Fields::default()
            };
            let mut resp = json_body(&order).into_response();
            resp.extensions_mut().insert(fields);
            resp
        }
        Ok(None) => Problem::not_found(format!("no order {id:?}")).into_response(),
        Err(e) => store_problem(&e).into_response(),
    }
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct Page {
    orders: Vec<Order>,
    /// Pass as `cursor` for the next (older) page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

async fn user_orders(
    State(api): State<Arc<Api>>,
    Path(user_id): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let fields = Fields {
        user_id: Some(user_id.clone()),
        ..Fields::default()
    };
    let Ok(Query(query)) = query else {
        let p = Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            "the query string is not readable",
        );
        return with_fields(p.into_response(), fields);
    };
    let limit = match query.limit.as_deref().map(str::parse::<usize>) {
        None => DEFAULT_PAGE,
        Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => {
            let p = Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
                format!("must be a whole number from 1 to {MAX_PAGE}"),
            )
            .field("limit");
            return with_fields(p.into_response(), fields);
        }
    };
    let resp = match api.store.user_orders(user_id, query.cursor, limit).await {
        Ok(orders) => {
            let next_cursor = (orders.len() == limit)
                .then(|| orders.last().map(|o| o.id.clone()))
                .flatten();
            json_body(&Page {
                orders,
                next_cursor,
            })
            .into_response()
        }
        Err(e) => store_problem(&e).into_response(),
    };
    with_fields(resp, fields)
}

#[derive(Serialize)]
struct Products {
    products: Vec<Product>,
}

async fn products(State(api): State<Arc<Api>>) -> Response {
    match api.store.products().await {
        Ok(products) => json_body(&Products { products }).into_response(),
        Err(e) => store_problem(&e).into_response(),
    }
}

async fn product(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    match api.store.product(id.clone()).await {
        Ok(Some(product)) => json_body(&product).into_response(),
        Ok(None) => Problem::not_found(format!("no product {id:?}")).into_response(),
        Err(e) => store_problem(&e).into_response(),
    }
}

async fn ready(State(api): State<Arc<Api>>) -> Response {
    match api.store.ready().await {
        Ok(()) => "ready\n".into_response(),
        Err(e) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            format!("storage: {e}"),
        )
        .into_response(),
    }
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.metrics.render(),
    )
        .into_response()
}

/// A JSON body with its content type.
fn json_body<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => Problem::internal(&e).into_response(),
    }
}

/// Adds the request's known fields to the ones a problem already set.
fn with_fields(mut resp: Response, known: Fields) -> Response {
    let fields = match resp.extensions_mut().remove::<Fields>() {
        Some(set) => Fields {
            user_id: set.user_id.or(known.user_id),
            idempotency_key: set.idempotency_key.or(known.idempotency_key),
            order_id: set.order_id.or(known.order_id),
            amount_krw: set.amount_krw.or(known.amount_krw),
            error: set.error.or(known.error),
        },
        None => known,
    };
    resp.extensions_mut().insert(fields);
    resp
}
