//! Every status code the API answers, idempotency under concurrency, and
//! the hardening (body limit, timeout, graceful shutdown, no `Server`).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Api, seed_order};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn problem_field(body: &Value) -> &str {
    body["field"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_answer_201_200_409_and_read_back() {
    let api = Api::start(|_| {}).await;
    let (status, first) = api.order(&seed_order("u1", 3, "k-1")).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["total_krw"], 3 * 2_690_000);
    assert_eq!(first["currency"], "KRW");
    let id = first["id"].as_str().unwrap().to_owned();

    // The same key and body, spelled differently: the same order, 200.
    let respelled = json!({
        "idempotency_key": "k-1",
        "items": [{"price": 2_690_000, "quantity": 3, "product_id": "PROD001"}],
        "user_id": "u1",
    });
    let (status, again) = api.order(&respelled).await;
    assert_eq!(status, 200);
    assert_eq!(again, first);

    let (status, conflict) = api.order(&seed_order("u1", 4, "k-1")).await;
    assert_eq!(status, 409);
    assert_eq!(conflict["order_id"], id.as_str());
    assert_eq!(problem_field(&conflict), "idempotency_key");

    let (status, read) = api.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(read, first);

    let resp = api
        .client
        .post(api.url("/api/v1/orders"))
        .json(&seed_order("u1", 1, "k-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/api/v1/orders/"), "{location}");
    assert!(resp.headers().get("server").is_none(), "no Server header");
    assert!(resp.headers().get("x-request-id").is_some());
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_400_problem_json_naming_the_field() {
    let api = Api::start(|_| {}).await;
    let cases = [
        (
            json!({"items": [{"product_id": "PROD001", "quantity": 1, "price": 2_690_000}]}),
            "user_id",
        ),
        (json!({"user_id": "u", "items": []}), "items"),
        (
            json!({"user_id": "u", "items": [{"product_id": "PROD001", "quantity": 0, "price": 2_690_000}]}),
            "items[0].quantity",
        ),
        (
            json!({"user_id": "u", "items": [{"product_id": "PROD001", "quantity": -2, "price": 2_690_000}]}),
            "items[0].quantity",
        ),
        (
            json!({"user_id": "u", "items": [{"product_id": "PROD001", "quantity": 1}]}),
            "items[0].price",
        ),
        (
            json!({"user_id": "u", "items": [{"product_id": "PROD001", "quantity": 1, "price": 2_690_000}], "idempotency_key": ""}),
            "idempotency_key",
        ),
        (
            json!({"user_id": "u", "items": [{"product_id": "PROD001", "quantity": 1, "price": 2_690_000}], "card_number": "4111111111111111"}),
            "card_number",
        ),
    ];
    for (body, field) in cases {
        let resp = api
            .client
            .post(api.url("/api/v1/orders"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{body}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem_field(&problem), field, "{body} → {problem}");
        assert_eq!(problem["status"], 400);
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let resp = api
        .client
        .post(api.url("/api/v1/orders"))
        .header("content-type", "application/json")
        .body("{\"user_id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let resp = api
        .client
        .post(api.url("/api/v1/orders"))
        .header("content-type", "text/plain")
        .body(seed_order("u", 1, "k").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let (status, problem) = api.get("/api/v1/users/u/orders?limit=0").await;
    assert_eq!((status, problem_field(&problem)), (400, "limit"));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_products_no_stock_and_stale_prices_are_422() {
    let api = Api::start(|_| {}).await;
    let order = |product: &str, quantity: u32, price: u64| {
        json!({"user_id": "u", "items": [
            {"product_id": "PROD011", "quantity": 1, "price": 49_000},
            {"product_id": product, "quantity": quantity, "price": price},
        ]})
    };
    let (status, p) = api.order(&order("NOPE", 1, 1)).await;
    assert_eq!(
        (status, problem_field(&p)),
        (422, "items[1].product_id"),
        "{p}"
    );
    let (status, p) = api.order(&order("PROD020", 1, 499_000)).await;
    assert_eq!(
        (status, problem_field(&p)),
        (422, "items[1].quantity"),
        "{p}"
    );
    let (status, p) = api.order(&order("PROD001", 1, 1_000)).await;
    assert_eq!((status, problem_field(&p)), (422, "items[1].price"), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("2690000"), "{p}");

    // PROD019 has 3 in stock: 2 + 1 sell it out, the next one is refused,
    // and the stock left is what the catalog says.
    let (status, _) = api.order(&order("PROD019", 2, 3_790_000)).await;
    assert_eq!(status, 201);
    let (status, _) = api.order(&order("PROD019", 1, 3_790_000)).await;
    assert_eq!(status, 201);
    let (status, p) = api.order(&order("PROD019", 1, 3_790_000)).await;
    assert_eq!(
        (status, problem_field(&p)),
        (422, "items[1].quantity"),
        "{p}"
    );
    let (status, product) = api.get("/api/v1/products/PROD019").await;
    assert_eq!(status, 200);
    assert_eq!(product["stock"], 0);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_products_pages_health_and_404s() {
    let api = Api::start(|_| {}).await;
    let (status, list) = api.get("/api/v1/products").await;
    assert_eq!(status, 200);
    let products = list["products"].as_array().unwrap();
    assert_eq!(products.len(), 20);
    assert_eq!(products[0]["id"], "PROD001");
    assert_eq!(products[0]["price_krw"], 2_690_000);
    let (status, p) = api.get("/api/v1/products/PROD001").await;
    assert_eq!((status, p["id"].as_str()), (200, Some("PROD001")));

    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, order) = api
            .order(&seed_order("pager", 1, &format!("page-{i}")))
            .await;
        assert_eq!(status, 201);
        ids.push(order["id"].as_str().unwrap().to_owned());
    }
    let (_, other) = api.order(&seed_order("someone-else", 1, "other")).await;
    let (status, page) = api.get("/api/v1/users/pager/orders?limit=2").await;
    assert_eq!(status, 200);
    let mut seen: Vec<String> = Vec::new();
    let mut page = page;
    loop {
        for o in page["orders"].as_array().unwrap() {
            seen.push(o["id"].as_str().unwrap().to_owned());
        }
        let Some(cursor) = page["next_cursor"].as_str() else {
            break;
        };
        let (status, next) = api
            .get(&format!(
                "/api/v1/users/pager/orders?limit=2&cursor={cursor}"
            ))
            .await;
        assert_eq!(status, 200);
        page = next;
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, every order once, no one else's");
    assert!(!seen.contains(&other["id"].as_str().unwrap().to_owned()));

    for path in [
        "/api/v1/orders/0190f4e4-0000-7000-8000-000000000000",
        "/api/v1/products/NOPE",
        "/nowhere",
    ] {
        let resp = api.client.get(api.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{path}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
    let resp = api
        .client
        .delete(api.url("/api/v1/products"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);

    let health = api.client.get(api.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready = api.client.get(api.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    let metrics = api.metrics().await;
    for needle in [
        "http_requests_total{method=\"POST\",route=\"/api/v1/orders\",status=\"201\"}",
        "http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/products\",le=\"0.078\"}",
        "commerce_orders_total",
        "commerce_revenue_krw_total",
    ] {
        assert!(
            metrics.contains(needle),
            "/metrics lacks {needle}:\n{metrics}"
        );
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_with_one_key_place_one_order() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start_on(dir.path().join("orders.db"), |_| {}).await;
    let body = seed_order("racer", 2, "one-key");
    let requests = (0..50).map(|_| api.order(&body));
    let answers = futures::future::join_all(requests).await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    let replayed: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    assert_eq!(replayed.len(), 49);
    assert!(replayed.iter().all(|o| o["id"] == created[0]["id"]));
    let db = api.db.clone();
    api.stop().await;
    let conn = rusqlite::Connection::open(db).unwrap();
    let (orders, units): (i64, i64) = conn
        .query_row(
            "SELECT count(*), (SELECT 1000000000000 - stock FROM products WHERE id = 'PROD001') FROM orders",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((orders, units), (1, 2), "one order, its units taken once");
}

/// Sends a request head promising `length` body bytes and `sent` of them.
async fn partial_post(
    base: &str,
    length: usize,
    sent: &[u8],
    extra: &str,
) -> tokio::net::TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/orders HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n{extra}\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(sent).await.unwrap();
    tcp
}

async fn read_status(tcp: &mut tokio::net::TcpStream) -> u16 {
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf[got..]).await.unwrap();
        assert!(n > 0, "connection closed before a response");
        got += n;
    }
    let head = String::from_utf8_lossy(&buf[..got]).into_owned();
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_get_413_and_slow_ones_408() {
    let api = Api::start(|c| {
        c.body_limit = 1024;
        c.request_timeout = Duration::from_millis(300);
    })
    .await;
    let big = json!({"user_id": "u", "items": [], "pad": "x".repeat(4096)});
    let resp = api
        .client
        .post(api.url("/api/v1/orders"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");

    // Half a body, then nothing: the request times out, whatever the client.
    let mut tcp = partial_post(&api.base, 100, b"{\"user_id\":", "").await;
    assert_eq!(read_status(&mut tcp).await, 408);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start_on(dir.path().join("orders.db"), |c| {
        c.shutdown_timeout = Duration::from_secs(30);
    })
    .await;
    let body = seed_order("drain", 1, "drain-1").to_string();
    // With `Expect: 100-continue` the server says "100 Continue" when the
    // handler starts reading the body: from then on the request is in flight.
    let mut tcp = partial_post(&api.base, body.len(), b"", "expect: 100-continue\r\n").await;
    assert_eq!(read_status(&mut tcp).await, 100);
    let base = api.base.clone();
    let db = api.db.clone();
    let stopping = tokio::spawn(api.stop());
    tcp.write_all(body.as_bytes()).await.unwrap();
    assert_eq!(
        read_status(&mut tcp).await,
        201,
        "the in-flight order finished"
    );
    let stopped = stopping.await.unwrap();
    assert!(!stopped.cut_off);
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "no longer listening"
    );
    let conn = rusqlite::Connection::open(db).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM orders WHERE idempotency_key = 'drain-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_once_the_store_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        commerce_api::store::Store::open(&dir.path().join("o.db"), &Default::default()).unwrap();
    assert!(store.ready().await.is_ok());
    let closing = store.clone();
    tokio::task::spawn_blocking(move || closing.close())
        .await
        .unwrap();
    assert!(store.ready().await.is_err());
    let order =
        commerce_api::order::NewOrder::parse(seed_order("u", 1, "k").to_string().as_bytes())
            .unwrap();
    assert!(matches!(
        store.place(order).await,
        Err(commerce_api::store::PlaceError::Store(
            commerce_api::store::StoreError::Stopped
        ))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_is_a_500_and_places_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orders.db");
    let api = Api::start_on(db.clone(), |c| {
        c.storage.busy_timeout = Duration::from_millis(50);
    })
    .await;
    let (status, _) = api.order(&seed_order("u", 1, "before")).await;
    assert_eq!(status, 201);
    // Another process holds the write lock past the busy timeout.
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (status, problem) = api.order(&seed_order("u", 2, "blocked")).await;
    assert_eq!(status, 500, "{problem}");
    assert_eq!(problem["type"], "urn:commerce-api:problem:internal");
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    // The same key again is a new attempt, and the stock was not taken twice.
    let (status, order) = api.order(&seed_order("u", 2, "blocked")).await;
    assert_eq!(status, 201, "{order}");
    api.stop().await;
    assert!(
        !dir.path().join("orders.db-wal").exists(),
        "a clean stop folds the log into the database file"
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (orders, units): (i64, i64) = conn
        .query_row(
            "SELECT count(*), (SELECT 1000000000000 - stock FROM products WHERE id = 'PROD001') FROM orders",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((orders, units), (2, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_orders_pause_the_log_is_folded_into_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orders.db");
    let api = Api::start_on(db.clone(), |_| {}).await;
    let (status, order) = api.order(&seed_order("u", 1, "fold")).await;
    assert_eq!(status, 201);
    // The database file alone, without its log, holds the order once the
    // checkpointer has seen a second without commits.
    let copy = dir.path().join("copy.db");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let folded = loop {
        std::fs::copy(&db, &copy).unwrap();
        let conn = rusqlite::Connection::open(&copy).unwrap();
        // Before the first checkpoint the file lacks even the tables.
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM orders WHERE id = ?1",
                [order["id"].as_str().unwrap()],
                |r| r.get(0),
            )
            .unwrap_or(0);
        drop(conn);
        let _ = std::fs::remove_file(dir.path().join("copy.db-wal"));
        if n == 1 || std::time::Instant::now() > deadline {
            break n == 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(folded, "the order never reached the database file");
    api.stop().await;
}
