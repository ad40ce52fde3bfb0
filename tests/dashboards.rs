//! The OpenSearch Dashboards saved objects in `dashboards/` against the index
//! template (every field they aggregate, query or show is mapped, with a type
//! the aggregation works on), and `seclake dashboards import` against a
//! stand-in for Dashboards' saved objects import API.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use seclake_sink::opensearch::template::{FIELDS, FieldType, index_template};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_seclake");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One line of a `dashboards/*.ndjson` file.
struct SavedObject {
    file: String,
    line: usize,
    value: Value,
}

impl SavedObject {
    fn kind(&self) -> &str {
        self.value["type"].as_str().unwrap_or_default()
    }

    fn id(&self) -> &str {
        self.value["id"].as_str().unwrap_or_default()
    }

    fn attributes(&self) -> &Value {
        &self.value["attributes"]
    }

    /// `type id (file:line)`, for messages.
    fn name(&self) -> String {
        format!(
            "{} {} ({}:{})",
            self.kind(),
            self.id(),
            self.file,
            self.line
        )
    }

    /// A string attribute that holds JSON (`visState`, `panelsJSON`, …), parsed.
    fn json_attribute(&self, path: &[&str]) -> Value {
        let text = path
            .iter()
            .fold(self.attributes(), |v, key| &v[key])
            .as_str()
            .unwrap_or_else(|| panic!("{}: {} is not a string", self.name(), path.join(".")));
        serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{}: {}: {e}", self.name(), path.join(".")))
    }

    fn search_source(&self) -> Value {
        self.json_attribute(&["kibanaSavedObjectMeta", "searchSourceJSON"])
    }

    fn reference_names(&self) -> BTreeSet<&str> {
        self.value["references"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .collect()
    }
}

fn ndjson_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("dashboards"))
        .expect("dashboards/ is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "dashboards/ has no .ndjson file");
    files
}

/// Every saved object of every `dashboards/*.ndjson` (an export's trailing
/// `exportedCount` line is not one); panics naming the line that does not
/// parse.
fn saved_objects() -> Vec<SavedObject> {
    let mut objects = Vec::new();
    for path in ndjson_files() {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("readable");
        for (i, line) in text.lines().enumerate() {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{file}:{}: not JSON: {e}", i + 1));
            if value.get("exportedCount").is_some() {
                continue;
            }
            objects.push(SavedObject {
                file: file.clone(),
                line: i + 1,
                value,
            });
        }
    }
    objects
}

fn of_kind<'a>(objects: &'a [SavedObject], kind: &str) -> Vec<&'a SavedObject> {
    objects.iter().filter(|o| o.kind() == kind).collect()
}

/// The mapping type of a field as Dashboards sees it: a mapped field, or
/// the `keyword` sub-field of a `text` one.
fn field_type(name: &str) -> Option<FieldType> {
    let mapped = |n: &str| FIELDS.iter().find(|(f, _)| *f == n).map(|(_, t)| *t);
    match name.strip_suffix(".keyword") {
        Some(base) => (mapped(base)? == FieldType::Text).then_some(FieldType::Keyword),
        None => mapped(name),
    }
}

fn is_numeric(t: FieldType) -> bool {
    matches!(t, FieldType::Integer | FieldType::Long | FieldType::Double)
}

/// Whether an aggregation can run on a field of this type; `None` for an
/// aggregation these tests do not know (add it here).
fn aggregation_accepts(aggregation: &str, t: FieldType) -> Option<bool> {
    let keyword = matches!(t, FieldType::Keyword | FieldType::LongKeyword);
    Some(match aggregation {
        "terms" | "significant_terms" | "rare_terms" => {
            keyword || t == FieldType::Ip || is_numeric(t)
        }
        "cardinality" | "value_count" => {
            keyword || t == FieldType::Ip || t == FieldType::Date || is_numeric(t)
        }
        "geohash_grid" | "geotile_grid" | "geo_centroid" | "geo_bounds" => t == FieldType::GeoPoint,
        "date_histogram" | "date_range" => t == FieldType::Date,
        "ip_range" => t == FieldType::Ip,
        "histogram" | "range" | "percentiles" | "percentile_ranks" | "avg" | "sum" | "median"
        | "std_dev" => is_numeric(t),
        "min" | "max" => is_numeric(t) || t == FieldType::Date,
        "top_hits" => t != FieldType::Text,
        _ => return None,
    })
}

/// Problems with one aggregation of a `visState`.
fn check_aggregation(agg: &Value) -> Vec<String> {
    let kind = agg["type"].as_str().unwrap_or("(no type)");
    let mut problems = Vec::new();
    if let Some(field) = agg["params"]["field"].as_str() {
        match field_type(field) {
            None => problems.push(format!("{kind} on `{field}`, which is not mapped")),
            Some(t) => match aggregation_accepts(kind, t) {
                None => problems.push(format!(
                    "{kind} on `{field}`: unknown aggregation (teach these tests its field types)"
                )),
                Some(false) => {
                    problems.push(format!("{kind} on `{field}`, which is {}", t.type_name()))
                }
                Some(true) => {}
            },
        }
    } else if !matches!(kind, "count" | "filters") {
        problems.push(format!("{kind} names no field"));
    }
    for filter in agg["params"]["filters"].as_array().into_iter().flatten() {
        problems.extend(check_query(&filter["input"]));
    }
    problems
}

/// Field names a KQL query mentions: `name:value` and `name >= value`
/// (second of the pair: whether it is a range), outside quoted strings.
fn kql_fields(query: &str) -> Vec<(String, bool)> {
    let mut fields = Vec::new();
    let mut word = String::new();
    // The word before the current blank, which a range operator may follow.
    let mut previous: Option<String> = None;
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(q) = chars.next() {
                    match q {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                word.clear();
                previous = None;
            }
            '\\' => {
                if let Some(escaped) = chars.next() {
                    word.push(escaped);
                }
            }
            ':' => {
                if !word.is_empty() {
                    fields.push((std::mem::take(&mut word), false));
                }
                previous = None;
            }
            '<' | '>' => {
                if chars.peek() == Some(&'=') {
                    chars.next();
                }
                let name = if word.is_empty() {
                    previous.take()
                } else {
                    Some(std::mem::take(&mut word))
                };
                fields.extend(name.map(|n| (n, true)));
                previous = None;
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    previous = Some(std::mem::take(&mut word));
                }
            }
            '(' | ')' => {
                word.clear();
                previous = None;
            }
            c => word.push(c),
        }
    }
    fields
}

/// Problems with a `{"query": …, "language": …}`.
fn check_query(query: &Value) -> Vec<String> {
    let text = query["query"].as_str().unwrap_or_default();
    if query["language"] != "kuery" {
        return vec![format!(
            "query {text:?} is not KQL (language {}), which these tests read",
            query["language"]
        )];
    }
    let mut problems = Vec::new();
    for (field, range) in kql_fields(text) {
        match field_type(&field) {
            None => problems.push(format!("query {text:?}: `{field}` is not mapped")),
            Some(t)
                if range && !(is_numeric(t) || matches!(t, FieldType::Date | FieldType::Ip)) =>
            {
                problems.push(format!(
                    "query {text:?}: range on `{field}`, which is {}",
                    t.type_name()
                ))
            }
            Some(_) => {}
        }
    }
    problems
}

/// Problems with a `searchSourceJSON`: its query, and the fields of its filters.
fn check_search_source(source: &Value) -> Vec<String> {
    let mut problems = check_query(&source["query"]);
    for filter in source["filter"].as_array().into_iter().flatten() {
        let mut fields: Vec<&str> = filter["meta"]["key"].as_str().into_iter().collect();
        for clause in [
            "match_phrase",
            "match",
            "term",
            "terms",
            "range",
            "wildcard",
            "prefix",
        ] {
            if let Some(object) = filter["query"][clause].as_object() {
                fields.extend(object.keys().map(String::as_str));
            }
        }
        fields.extend(filter["exists"]["field"].as_str());
        if fields.is_empty() {
            problems.push(format!("a filter names no field: {filter}"));
        }
        for field in fields {
            if field_type(field).is_none() {
                problems.push(format!("filter on `{field}`, which is not mapped"));
            }
        }
    }
    problems
}

#[test]
fn every_line_of_every_file_is_a_saved_object_with_a_unique_id() {
    let objects = saved_objects();
    let mut seen = BTreeMap::new();
    for o in &objects {
        assert!(
            ["index-pattern", "visualization", "search", "dashboard"].contains(&o.kind()),
            "{}: unexpected type",
            o.name()
        );
        assert!(!o.id().is_empty(), "{}: no id", o.name());
        assert!(o.attributes().is_object(), "{}: no attributes", o.name());
        assert!(
            o.value["references"].is_array(),
            "{}: no references",
            o.name()
        );
        if let Some(other) = seen.insert((o.kind(), o.id()), o.name()) {
            panic!("{} and {other} share an id", o.name());
        }
    }
}

#[test]
fn the_binary_bundles_exactly_the_files_in_dashboards() {
    let on_disk: Vec<(String, String)> = ndjson_files()
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(p).unwrap())
        })
        .collect();
    let bundled: Vec<(String, String)> = seclake::dashboards::BUNDLED
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect();
    assert_eq!(
        bundled.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        on_disk.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "seclake::dashboards::BUNDLED lists other files than dashboards/*.ndjson"
    );
    assert!(
        bundled == on_disk,
        "the bundled text differs from the files"
    );
}

#[test]
fn the_index_pattern_covers_the_template_and_is_timed_by_ts() {
    let objects = saved_objects();
    let patterns = of_kind(&objects, "index-pattern");
    assert_eq!(patterns.len(), 1, "one index pattern");
    let pattern = patterns[0].attributes();
    assert_eq!(
        pattern["title"],
        index_template("seclake", false)["index_patterns"][0],
        "the index pattern is the template's"
    );
    assert_eq!(pattern["timeFieldName"], "ts");
    assert_eq!(field_type("ts"), Some(FieldType::Date));
}

#[test]
fn every_aggregation_is_on_a_mapped_field_of_a_type_it_works_on() {
    let objects = saved_objects();
    let visualizations = of_kind(&objects, "visualization");
    assert!(!visualizations.is_empty());
    let mut problems = Vec::new();
    for v in visualizations {
        let state = v.json_attribute(&["visState"]);
        assert_eq!(
            state["title"],
            v.attributes()["title"],
            "{}: visState.title",
            v.name()
        );
        let aggs = state["aggs"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: visState has no aggs", v.name()));
        assert!(!aggs.is_empty(), "{}: no aggregations", v.name());
        for agg in aggs {
            problems.extend(
                check_aggregation(agg)
                    .into_iter()
                    .map(|p| format!("{}: {p}", v.name())),
            );
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_query_filter_and_column_names_a_mapped_field() {
    let objects = saved_objects();
    let mut problems = Vec::new();
    for o in &objects {
        if !matches!(o.kind(), "visualization" | "search" | "dashboard") {
            continue;
        }
        problems.extend(
            check_search_source(&o.search_source())
                .into_iter()
                .map(|p| format!("{}: {p}", o.name())),
        );
        if o.kind() == "search" {
            let columns = o.attributes()["columns"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(!columns.is_empty(), "{}: no columns", o.name());
            let sorted = o.attributes()["sort"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let sorted = sorted
                .iter()
                .filter_map(|s| s[0].as_str().map(str::to_owned));
            for field in columns
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .chain(sorted)
            {
                if field_type(&field).is_none() {
                    problems.push(format!("{}: column `{field}` is not mapped", o.name()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_reference_points_at_an_object_in_the_files() {
    let objects = saved_objects();
    let ids: BTreeSet<(&str, &str)> = objects.iter().map(|o| (o.kind(), o.id())).collect();
    let pattern = of_kind(&objects, "index-pattern")[0].id();
    for o in &objects {
        for r in o.value["references"].as_array().unwrap() {
            let target = (
                r["type"].as_str().unwrap_or_default(),
                r["id"].as_str().unwrap_or_default(),
            );
            assert!(
                ids.contains(&target),
                "{}: reference {r} points at no object in dashboards/",
                o.name()
            );
        }
        if !matches!(o.kind(), "visualization" | "search") {
            continue;
        }
        // The index pattern comes from `references` by name, as 2.x exports it.
        let source = o.search_source();
        assert!(
            source.get("index").is_none(),
            "{}: searchSourceJSON names the index pattern inline",
            o.name()
        );
        let index_ref = source["indexRefName"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: searchSourceJSON has no indexRefName", o.name()));
        let reference = o.value["references"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == index_ref)
            .unwrap_or_else(|| panic!("{}: no reference named {index_ref}", o.name()));
        assert_eq!(reference["type"], "index-pattern", "{}", o.name());
        assert_eq!(reference["id"], pattern, "{}", o.name());
        for filter in source["filter"].as_array().into_iter().flatten() {
            let name = filter["meta"]["indexRefName"].as_str().unwrap_or_default();
            assert!(
                o.reference_names().contains(name),
                "{}: a filter's indexRefName {name:?} is not a reference",
                o.name()
            );
        }
    }
}

#[test]
fn the_dashboard_shows_every_visualization_and_saved_search() {
    let objects = saved_objects();
    let dashboards = of_kind(&objects, "dashboard");
    assert_eq!(dashboards.len(), 1, "one dashboard");
    let dashboard = dashboards[0];
    let panels = dashboard.json_attribute(&["panelsJSON"]);
    let references = dashboard.value["references"].as_array().unwrap();
    let mut shown = BTreeSet::new();
    for panel in panels.as_array().expect("panelsJSON is an array") {
        let name = panel["panelRefName"].as_str().expect("a panelRefName");
        let reference = references
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("panel {name} has no reference"));
        let grid = &panel["gridData"];
        assert!(
            grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 48,
            "panel {name} is wider than the dashboard"
        );
        shown.insert((
            reference["type"].as_str().unwrap(),
            reference["id"].as_str().unwrap(),
        ));
    }
    let expected: BTreeSet<(&str, &str)> = objects
        .iter()
        .filter(|o| matches!(o.kind(), "visualization" | "search"))
        .map(|o| (o.kind(), o.id()))
        .collect();
    assert_eq!(shown, expected);
}

/// The checks above would let nothing through unnoticed.
#[test]
fn the_checks_reject_unmapped_fields_and_wrong_types() {
    let agg = |kind: &str, field: &str| {
        check_aggregation(&json!({"type": kind, "params": {"field": field}}))
    };
    assert!(agg("terms", "client_ip").is_empty());
    assert!(agg("terms", "user_agent.keyword").is_empty());
    assert!(agg("percentiles", "latency_ms").is_empty());
    assert!(agg("geohash_grid", "location").is_empty());
    assert!(agg("date_histogram", "ts").is_empty());
    assert!(
        !agg("terms", "user_agent").is_empty(),
        "text has no doc values"
    );
    assert!(
        !agg("terms", "client_ip.keyword").is_empty(),
        "no such sub-field"
    );
    assert!(!agg("terms", "no_such_field").is_empty());
    assert!(!agg("geohash_grid", "client_ip").is_empty());
    assert!(!agg("date_histogram", "ingest").is_empty());
    assert!(!agg("percentiles", "rule").is_empty());
    assert!(!agg("histogram", "threat_level").is_empty());
    assert!(!agg("some_new_agg", "rule").is_empty());

    assert_eq!(
        kql_fields(r#"(source:waf and action:BLOCK) or status >= 500 and not x<3 and m:"a:b""#),
        [
            ("source".to_owned(), false),
            ("action".to_owned(), false),
            ("status".to_owned(), true),
            ("x".to_owned(), true),
            ("m".to_owned(), false),
        ]
    );
    let query = |q: &str| check_query(&json!({"query": q, "language": "kuery"}));
    assert!(query("threat_level:(high or critical)").is_empty());
    assert!(!query("threat:high").is_empty());
    assert!(!query("rule >= 3").is_empty(), "a range on a keyword");
    assert!(!check_query(&json!({"query": "a:b", "language": "lucene"})).is_empty());
    let filter = json!({"query": {"query": "", "language": "kuery"}, "filter": [
        {"meta": {"key": "nope"}, "query": {"match_phrase": {"nope": "x"}}}
    ]});
    assert!(!check_search_source(&filter).is_empty());
}

// --- seclake dashboards import ---------------------------------------------

/// How the stand-in answers a well-formed import.
#[derive(Clone)]
enum Answer {
    /// Imports everything.
    Success,
    /// Refuses one object for a missing index pattern, and so imports none
    /// (Dashboards creates nothing when an object lacks a reference).
    MissingReferences { id: &'static str },
    /// An HTTP error with a Dashboards error body.
    Status(StatusCode, &'static str),
}

/// What the stand-in received.
#[derive(Debug, Clone)]
struct Received {
    query: Option<String>,
    authorization: Option<String>,
    filename: String,
    /// `(type, id)` of each object, in order.
    objects: Vec<(String, String)>,
}

struct StandIn {
    answer: Answer,
    received: Mutex<Vec<Received>>,
}

/// A stand-in for OpenSearch Dashboards' `POST /api/saved_objects/_import`
/// that refuses what Dashboards refuses: no `osd-xsrf` header, a body that is
/// not multipart/form-data, no `file` part, a file name not ending in
/// `.ndjson`, a line that is not JSON.
struct Dashboards {
    /// Runs the server; dropping it stops the server.
    _runtime: tokio::runtime::Runtime,
    url: String,
    state: Arc<StandIn>,
}

impl Dashboards {
    fn start(answer: Answer) -> Dashboards {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let state = Arc::new(StandIn {
            answer,
            received: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/api/saved_objects/_import", post(import))
            .with_state(state.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Dashboards {
            _runtime: runtime,
            url,
            state,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }
}

fn bad_request(message: &str) -> (StatusCode, axum::Json<Value>) {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"statusCode": 400, "error": "Bad Request", "message": message})),
    )
}

async fn import(
    State(state): State<Arc<StandIn>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("osd-xsrf") != Some("true") {
        return bad_request("Request must contain a osd-xsrf header.");
    }
    let Some(boundary) = header("content-type")
        .and_then(|t| t.strip_prefix("multipart/form-data; boundary="))
        .map(|b| b.trim_matches('"').to_owned())
    else {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            axum::Json(json!({"statusCode": 415, "error": "Unsupported Media Type"})),
        );
    };
    let Some((filename, content)) = file_part(&body, &boundary) else {
        return bad_request("[request body.file]: expected value of type [Stream]");
    };
    if !filename.ends_with(".ndjson") {
        return bad_request("Invalid file extension");
    }
    let mut objects = Vec::new();
    for line in content.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(object) = serde_json::from_str::<Value>(line) else {
            return bad_request("Unexpected token in JSON");
        };
        let text = |k: &str| object[k].as_str().unwrap_or_default().to_owned();
        objects.push((text("type"), text("id")));
    }
    state.received.lock().unwrap().push(Received {
        query,
        authorization: header("authorization").map(str::to_owned),
        filename,
        objects: objects.clone(),
    });
    match &state.answer {
        Answer::Success => (
            StatusCode::OK,
            axum::Json(json!({"success": true, "successCount": objects.len()})),
        ),
        Answer::MissingReferences { id } => {
            let (kind, _) = objects.iter().find(|(_, i)| i == id).expect("the object");
            (
                StatusCode::OK,
                axum::Json(json!({
                    "success": false,
                    "successCount": 0,
                    "errors": [{
                        "id": id, "type": kind, "title": "Refused",
                        "meta": {"title": "Refused", "icon": "visualizeApp"},
                        "error": {"type": "missing_references",
                                  "references": [{"type": "index-pattern", "id": "gone"}]}
                    }]
                })),
            )
        }
        Answer::Status(status, message) => (
            *status,
            axum::Json(json!({
                "statusCode": status.as_u16(),
                "error": status.canonical_reason(),
                "message": message
            })),
        ),
    }
}

/// The file name and text of the `file` part of a multipart/form-data body.
fn file_part(body: &[u8], boundary: &str) -> Option<(String, String)> {
    let body = std::str::from_utf8(body).ok()?;
    let delimiter = format!("--{boundary}");
    let mut parts = body.split(delimiter.as_str());
    parts.next()?; // the preamble
    for part in parts {
        if part.starts_with("--") {
            break; // the close delimiter
        }
        let part = part.strip_prefix("\r\n")?;
        let (head, content) = part.split_once("\r\n\r\n")?;
        let disposition = head.split("\r\n").find_map(|h| {
            let (name, value) = h.split_once(':')?;
            name.eq_ignore_ascii_case("content-disposition")
                .then_some(value.trim())
        })?;
        let param = |key: &str| {
            disposition
                .split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.trim_matches('"').to_owned())
        };
        if param("name").as_deref() == Some("file") {
            let content = content.strip_suffix("\r\n")?;
            return Some((param("filename")?, content.to_owned()));
        }
    }
    None
}

fn seclake(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SECLAKE_DASHBOARDS_USERNAME")
        .env_remove("SECLAKE_DASHBOARDS_PASSWORD")
        .output()
        .expect("seclake runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn file_object_ids() -> Vec<(String, String)> {
    saved_objects()
        .iter()
        .map(|o| (o.kind().to_owned(), o.id().to_owned()))
        .collect()
}

#[test]
fn import_sends_the_bundled_objects_the_way_dashboards_takes_them() {
    let dashboards = Dashboards::start(Answer::Success);
    let out = seclake(&["dashboards", "import", "--url", &dashboards.url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let received = dashboards.received();
    assert_eq!(received.len(), 1, "one import request");
    let request = &received[0];
    assert_eq!(request.query.as_deref(), Some("overwrite=true"));
    assert_eq!(request.authorization, None);
    assert!(request.filename.ends_with(".ndjson"));
    assert_eq!(request.objects, file_object_ids());
    let stdout = text(&out.stdout);
    let count = request.objects.len();
    assert!(
        stdout.contains(&format!("imported {count} of {count} saved objects")),
        "{stdout}"
    );
}

#[test]
fn import_fails_naming_the_objects_dashboards_refused() {
    let dashboards = Dashboards::start(Answer::MissingReferences {
        id: "seclake-top-blocked-ips",
    });
    let out = seclake(&["dashboards", "import", "--url", &dashboards.url]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(r#"visualization seclake-top-blocked-ips ("Refused"): missing references: index-pattern gone"#),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 saved object was not imported (0 imported)"),
        "{stderr}"
    );
}

#[test]
fn import_reports_an_error_status_with_dashboards_message() {
    let dashboards = Dashboards::start(Answer::Status(
        StatusCode::UNAUTHORIZED,
        "Authentication required",
    ));
    let out = seclake(&["dashboards", "import", "--url", &dashboards.url]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("401 Unauthorized"), "{stderr}");
    assert!(stderr.contains("Authentication required"), "{stderr}");
    assert!(stderr.contains("--username"), "{stderr}");
}

#[test]
fn import_reports_a_dashboards_that_is_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = seclake(&["dashboards", "import", "--url", &url]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "no OpenSearch Dashboards answered at {url}/api/saved_objects/_import"
        )),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
}

#[test]
fn import_sends_the_given_files_as_one_import_with_basic_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pattern = dir.path().join("pattern.ndjson");
    let search = dir.path().join("search.ndjson");
    std::fs::write(
        &pattern,
        "{\"type\":\"index-pattern\",\"id\":\"p\",\"attributes\":{\"title\":\"x-*\"}}\n\
         {\"exportedCount\":1,\"missingRefCount\":0,\"missingReferences\":[]}\n",
    )
    .unwrap();
    std::fs::write(
        &search,
        "{\"type\":\"search\",\"id\":\"s\",\"attributes\":{\"title\":\"S\"},\
         \"references\":[{\"name\":\"kibanaSavedObjectMeta.searchSourceJSON.index\",\"type\":\"index-pattern\",\"id\":\"p\"}]}",
    )
    .unwrap();
    let dashboards = Dashboards::start(Answer::Success);
    let out = seclake(&[
        "dashboards",
        "import",
        "--url",
        &format!("{}/", dashboards.url),
        "--file",
        path_str(&pattern),
        "--file",
        path_str(&search),
        "--username",
        "admin",
        "--password",
        "secret",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let received = dashboards.received();
    assert_eq!(received.len(), 1, "both files in one import");
    assert_eq!(
        received[0].objects,
        [
            ("index-pattern".to_owned(), "p".to_owned()),
            ("search".to_owned(), "s".to_owned())
        ]
    );
    // base64("admin:secret")
    assert_eq!(
        received[0].authorization.as_deref(),
        Some("Basic YWRtaW46c2VjcmV0")
    );
}

#[test]
fn import_refuses_a_file_that_is_not_saved_objects_before_sending_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("broken.ndjson");
    std::fs::write(
        &file,
        "{\"type\":\"search\",\"id\":\"s\",\"attributes\":{}}\n{\"type\":\"search\",\n",
    )
    .unwrap();
    let dashboards = Dashboards::start(Answer::Success);
    let out = seclake(&[
        "dashboards",
        "import",
        "--url",
        &dashboards.url,
        "--file",
        path_str(&file),
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{} line 2: not a saved object", file.display())),
        "{stderr}"
    );
    assert!(dashboards.received().is_empty(), "nothing was sent");
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}
