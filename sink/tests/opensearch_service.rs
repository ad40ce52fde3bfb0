//! The OpenSearch node `scripts/services up` starts on 127.0.0.1:9200
//! (`SECLAKE_OPENSEARCH_URL` to point elsewhere) is real and reachable:
//! cluster health, a bulk request and a search.

use serde_json::{Value, json};

#[tokio::test]
async fn opensearch_answers_health_bulk_and_search() {
    let Some(base) = seclake_fixtures::services::service(
        "opensearch",
        "SECLAKE_OPENSEARCH_URL",
        "http://127.0.0.1:9200",
    ) else {
        return;
    };
    let http = reqwest::Client::new();
    let get_json = |response: reqwest::Response| async move {
        let status = response.status();
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert!(status.is_success(), "{status}: {body}");
        body
    };

    let health = get_json(
        http.get(format!("{base}/_cluster/health"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        matches!(health["status"].as_str(), Some("green" | "yellow")),
        "{health}"
    );

    let index = format!("seclake-test-{}", uuid::Uuid::now_v7().simple());
    let mut bulk = String::new();
    for (id, ip) in [
        ("e1", "198.51.100.1"),
        ("e2", "198.51.100.2"),
        ("e3", "203.0.113.9"),
    ] {
        bulk.push_str(&json!({"index": {"_index": index, "_id": id}}).to_string());
        bulk.push('\n');
        bulk.push_str(&json!({"client_ip": ip, "threat_score": 10}).to_string());
        bulk.push('\n');
    }
    let response = http
        .post(format!("{base}/_bulk?refresh=true"))
        .header("content-type", "application/x-ndjson")
        .body(bulk)
        .send()
        .await
        .unwrap();
    let result = get_json(response).await;
    assert_eq!(result["errors"], Value::Bool(false), "{result}");
    assert_eq!(result["items"].as_array().map(Vec::len), Some(3));

    let query = json!({"query": {"prefix": {"client_ip.keyword": "198.51.100."}}});
    let response = http
        .post(format!("{base}/{index}/_search"))
        .json(&query)
        .send()
        .await
        .unwrap();
    let hits = get_json(response).await;
    let mut ids: Vec<&str> = hits["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["_id"].as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["e1", "e2"], "{hits}");

    let deleted = http.delete(format!("{base}/{index}")).send().await.unwrap();
    assert!(deleted.status().is_success());
}
