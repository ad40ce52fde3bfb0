//! The Kinesis source under the faults a real stream gives and kinesis-local
//! never does (`../shared/SERVICES.md`: no throttling, iterators expire only
//! after 300 s): `ProvisionedThroughputExceededException` and
//! `ExpiredIteratorException` on `GetRecords`, `LimitExceededException` on
//! `GetShardIterator`. A proxy between the source and kinesis-local forwards
//! every call but those a test's rule picks, which it answers as the service
//! does (HTTP 400, `application/x-amz-json-1.1`, `{"__type", "message"}`),
//! and keeps a log of every call, which the tests read the source's
//! behaviour from. It also caps each `GetRecords` at [`PAGE`] records, so a
//! shard of a few hundred records is read in many answers and the faults
//! land mid-stream.
//!
//! The aws-sdk retries a throttling error itself (standard mode: 3 attempts,
//! with jittered backoff) before the source sees it; the rules refuse long
//! enough for the source's own backoff and iterator renewal to show.

#[path = "support/kinesis_scene.rs"]
mod kinesis_scene;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::get_records::GetRecordsError;
use aws_sdk_kinesis::types::ShardIteratorType;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kinesis_scene::{Scene, Seen, Services, clean, data_of, kinesis_client, records, wait_for};
use seclake_ingest::kinesis::aggregate::{KPL_MAGIC, aggregate};
use seclake_ingest::kinesis::lease::Checkpoint;
use seclake_ingest::{Position, SequenceNumber};
use serde_json::{Value, json};

/// The most records the proxy lets one `GetRecords` answer hold.
const PAGE: u64 = 25;
const GET_RECORDS: &str = "GetRecords";
const GET_SHARD_ITERATOR: &str = "GetShardIterator";

/// An error the proxy answers instead of forwarding a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Throughput,
    Limit,
    Expired,
}

impl Fault {
    fn code(self) -> &'static str {
        match self {
            Fault::Throughput => "ProvisionedThroughputExceededException",
            Fault::Limit => "LimitExceededException",
            Fault::Expired => "ExpiredIteratorException",
        }
    }

    /// The service's message.
    fn message(self, shard: &str, stream: &str) -> String {
        let now = chrono::Utc::now();
        let at =
            |t: chrono::DateTime<chrono::Utc>| t.format("%a %b %d %H:%M:%S UTC %Y").to_string();
        match self {
            Fault::Throughput => format!(
                "Rate exceeded for shard {shard} in stream {stream} under account 123456789012."
            ),
            Fault::Limit => {
                format!("Rate exceeded for stream {stream} under account 123456789012.")
            }
            Fault::Expired => format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} \
                 which is further in the future than the tolerated delay of 300000 milliseconds.",
                at(now - chrono::TimeDelta::seconds(301)),
                at(now)
            ),
        }
    }
}

/// Where a refusal names its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `__type` in the JSON body, as Kinesis answers.
    Body,
    /// Only the `x-amzn-ErrorType` header.
    Header,
    /// Neither: a 400 with a message only.
    Bare,
}

/// One call the proxy took.
#[derive(Debug, Clone)]
struct Call {
    at: Instant,
    /// The operation: `X-Amz-Target` after the dot.
    op: String,
    /// The shard: named by `GetShardIterator`, known from the iterator by
    /// `GetRecords`.
    shard: Option<String>,
    request: Value,
    refused: Option<Fault>,
    /// A forwarded `GetRecords`: its records' sequence numbers…
    sequences: Vec<String>,
    /// …and whether the last of them is a KPL aggregate.
    last_aggregated: bool,
}

impl Call {
    fn is(&self, op: &str, shard: &str) -> bool {
        self.op == op && self.shard.as_deref() == Some(shard)
    }

    /// Where a `GetShardIterator` starts: its type and sequence number.
    fn start(&self) -> (&str, Option<&str>) {
        (
            self.request["ShardIteratorType"].as_str().unwrap_or(""),
            self.request["StartingSequenceNumber"].as_str(),
        )
    }
}

/// Picks the fault a call of a shard gets, from the call, its shard and
/// every call before it.
type Rule = Box<dyn FnMut(&Call, &str, &[Call]) -> Option<Fault> + Send>;

struct ProxyState {
    rule: Rule,
    form: Form,
    log: Vec<Call>,
    /// Every iterator handed out, and its shard.
    iterators: HashMap<String, String>,
}

struct Shared {
    upstream: String,
    stream: String,
    client: reqwest::Client,
    state: Mutex<ProxyState>,
}

/// An HTTP proxy in front of kinesis-local for one scene's stream, on a
/// port of its own, served by the scene's runtime.
struct Proxy {
    url: String,
    shared: Arc<Shared>,
}

impl Proxy {
    fn start(
        scene: &Scene<'_>,
        rule: impl FnMut(&Call, &str, &[Call]) -> Option<Fault> + Send + 'static,
    ) -> Proxy {
        let services = scene.services;
        let shared = Arc::new(Shared {
            upstream: services.kinesis_url.trim_end_matches('/').to_owned(),
            stream: scene.stream.clone(),
            client: reqwest::Client::new(),
            state: Mutex::new(ProxyState {
                rule: Box::new(rule),
                form: Form::Body,
                log: Vec::new(),
                iterators: HashMap::new(),
            }),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&shared));
        let listener = services
            .rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        services
            .rt
            .spawn(async move { axum::serve(listener, app).await });
        Proxy { url, shared }
    }

    fn log(&self) -> Vec<Call> {
        self.shared.state.lock().expect("proxy state").log.clone()
    }

    fn set_form(&self, form: Form) {
        self.shared.state.lock().expect("proxy state").form = form;
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let op = parts
        .headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
        .to_owned();
    let mut request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (index, refusal) = {
        let mut state = shared.state.lock().expect("proxy state");
        let shard = match op.as_str() {
            GET_SHARD_ITERATOR => request["ShardId"].as_str().map(str::to_owned),
            GET_RECORDS => request["ShardIterator"]
                .as_str()
                .and_then(|it| state.iterators.get(it).cloned()),
            _ => None,
        };
        let mut call = Call {
            at: Instant::now(),
            op: op.clone(),
            shard,
            request: request.clone(),
            refused: None,
            sequences: Vec::new(),
            last_aggregated: false,
        };
        let state = &mut *state;
        if let Some(shard) = &call.shard {
            call.refused = (state.rule)(&call, shard, &state.log);
        }
        let refusal = call
            .refused
            .map(|f| (f, state.form, call.shard.clone().unwrap_or_default()));
        state.log.push(call);
        (state.log.len() - 1, refusal)
    };
    if let Some((fault, form, shard)) = refusal {
        return refuse(fault, form, &shard, &shared.stream);
    }
    let body = if op == GET_RECORDS {
        let limit = request["Limit"].as_u64().unwrap_or(PAGE).min(PAGE);
        request["Limit"] = json!(limit);
        serde_json::to_vec(&request).expect("json").into()
    } else {
        body
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = shared
        .client
        .request(parts.method, format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let Ok(bytes) = answer.bytes().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    if status.is_success() {
        note_answer(&shared, index, &op, &bytes);
    }
    let mut response = Response::builder().status(status);
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            response = response.header(name, value);
        }
    }
    response.body(Body::from(bytes)).expect("a response")
}

/// Notes the iterators an answer hands out and the records it holds.
fn note_answer(shared: &Shared, index: usize, op: &str, bytes: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let mut state = shared.state.lock().expect("proxy state");
    let Some(shard) = state.log[index].shard.clone() else {
        return;
    };
    let next = match op {
        GET_SHARD_ITERATOR => answer["ShardIterator"].as_str(),
        GET_RECORDS => answer["NextShardIterator"].as_str(),
        _ => None,
    };
    if let Some(next) = next {
        state.iterators.insert(next.to_owned(), shard);
    }
    let records = answer["Records"].as_array().cloned().unwrap_or_default();
    let call = &mut state.log[index];
    call.sequences = records
        .iter()
        .filter_map(|r| r["SequenceNumber"].as_str().map(str::to_owned))
        .collect();
    call.last_aggregated = records.last().is_some_and(|r| {
        r["Data"]
            .as_str()
            .and_then(|d| STANDARD.decode(d).ok())
            .is_some_and(|d| d.starts_with(&KPL_MAGIC))
    });
}

/// The answer Kinesis gives for `fault`, its name where `form` says.
fn refuse(fault: Fault, form: Form, shard: &str, stream: &str) -> Response {
    let message = fault.message(shard, stream);
    let body = match form {
        Form::Body => json!({ "__type": fault.code(), "message": message }),
        Form::Header | Form::Bare => json!({ "message": message }),
    };
    let mut response = Response::builder()
        .status(StatusCode::BAD_REQUEST)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", "f5a1c4e2-0000-4000-8000-seclaketest0");
    if form == Form::Header {
        response = response.header(
            "x-amzn-errortype",
            format!(
                "{}:http://internal.amazon.com/coral/com.amazonaws.kinesis.v20131202/",
                fault.code()
            ),
        );
    }
    response
        .body(Body::from(body.to_string()))
        .expect("a response")
}

/// The calls of `op` on `shard`, in order.
fn calls<'a>(log: &'a [Call], op: &'a str, shard: &'a str) -> impl Iterator<Item = &'a Call> {
    log.iter().filter(move |c| c.is(op, shard))
}

/// The sequence number of the last record the source was handed on
/// `shard` before `log[..before]`: where a new iterator must start.
fn last_handed_over<'a>(log: &'a [Call], before: usize, shard: &str) -> Option<&'a str> {
    log[..before]
        .iter()
        .rev()
        .filter(|c| c.is(GET_RECORDS, shard) && c.refused.is_none())
        .find_map(|c| c.sequences.last().map(String::as_str))
}

/// The shards the log names.
fn shards(log: &[Call]) -> BTreeSet<String> {
    log.iter().filter_map(|c| c.shard.clone()).collect()
}

/// After the call `log[i]` refused on its shard, the source asked for a new
/// iterator where it had got to: at the last record handed over, else the
/// lease's start (`TRIM_HORIZON` here). The index of that served call.
fn assert_renewed_where_it_left_off(log: &[Call], i: usize) -> usize {
    let shard = log[i].shard.as_deref().expect("a call of a shard");
    let (j, renewal) = log
        .iter()
        .enumerate()
        .skip(i + 1)
        .find(|(_, c)| c.is(GET_SHARD_ITERATOR, shard) && c.refused.is_none())
        .unwrap_or_else(|| panic!("no new iterator for {shard} after call {i}"));
    let want = match last_handed_over(log, i, shard) {
        Some(seq) => ("AT_SEQUENCE_NUMBER", Some(seq)),
        None => ("TRIM_HORIZON", None),
    };
    assert_eq!(
        renewal.start(),
        want,
        "{shard}: the new iterator after call {i} ({:?})",
        log[i].refused
    );
    j
}

/// Every expected record exactly once and no other, none a dead letter,
/// and each shard's in its order: (sequence number, sub-sequence) strictly
/// rising.
fn assert_exactly_once_in_order(seen: &[Seen], expected: &BTreeSet<String>) {
    let flawed: Vec<&Seen> = seen.iter().filter(|s| s.flaw.is_some()).collect();
    assert!(flawed.is_empty(), "no dead letters: {flawed:?}");
    let mut times: BTreeMap<&str, usize> = BTreeMap::new();
    for s in seen {
        *times.entry(s.data.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|d| !times.contains_key(d.as_str()))
        .collect();
    let unexpected: Vec<_> = times.keys().filter(|d| !expected.contains(**d)).collect();
    assert!(
        twice.is_empty() && missing.is_empty() && unexpected.is_empty(),
        "{} records more than once (first {:?}), {} of {} missing (first {:?}), {} unexpected",
        twice.len(),
        twice.first(),
        missing.len(),
        expected.len(),
        missing.first(),
        unexpected.len()
    );
    let mut last: HashMap<&str, (&SequenceNumber, Option<u32>)> = HashMap::new();
    for s in seen {
        let Position::Kinesis {
            shard_id,
            sequence_number,
            sub_sequence,
            ..
        } = &s.position
        else {
            panic!("a Kinesis position, not {:?}", s.position);
        };
        let here = (sequence_number, *sub_sequence);
        if let Some(before) = last.insert(&**shard_id, here) {
            assert!(before < here, "{shard_id}: {here:?} after {before:?}");
        }
    }
}

/// At the stop every shard's lease is checkpointed at the last record seen
/// of it.
fn assert_checkpointed_at_the_end(scene: &Scene<'_>, seen: &[Seen]) {
    let mut ends: HashMap<String, Checkpoint> = HashMap::new();
    for s in seen {
        if let Position::Kinesis {
            shard_id,
            sequence_number,
            sub_sequence,
            ..
        } = &s.position
        {
            ends.insert(
                shard_id.to_string(),
                Checkpoint::At {
                    sequence: sequence_number.clone(),
                    sub_sequence: sub_sequence.map_or(0, u64::from),
                },
            );
        }
    }
    let leases = scene.leases();
    for lease in &leases {
        if let Some(end) = ends.get(&lease.shard_id) {
            assert_eq!(&lease.checkpoint, end, "{}", lease.shard_id);
        }
    }
    assert_eq!(
        ends.len(),
        leases.len(),
        "records from every shard: {leases:?}"
    );
}

/// Puts `sent` in a fresh stream of `shards`, reads it with one worker
/// through a proxy refusing what `rule` picks until every record of
/// `expected` was handed over, and stops it. Checks that each came exactly
/// once, each shard's in order, and that every lease is checkpointed at its
/// last record; returns the proxy's log.
fn read_through(
    shards: i32,
    sent: &[(String, Vec<u8>)],
    expected: &BTreeSet<String>,
    rule: impl FnMut(&Call, &str, &[Call]) -> Option<Fault> + Send + 'static,
) -> Option<Vec<Call>> {
    let services = Services::up()?;
    let scene = services.scene(shards);
    scene.put(sent);
    let proxy = Proxy::start(&scene, rule);
    let worker = scene.config_via(&proxy.url, "", "faulted", false);
    wait_for("every record through the faults", || {
        clean(&worker.seen()) == *expected
    });
    let seen = worker.stop();
    assert_exactly_once_in_order(&seen, expected);
    assert_checkpointed_at_the_end(&scene, &seen);
    Some(proxy.log())
}

#[test]
fn the_sdk_takes_the_proxys_refusals_for_the_services_errors() {
    let Some(services) = Services::up() else {
        return;
    };
    let scene = services.scene(1);
    scene.put(&records("sdk", 10));
    let refuse: Arc<Mutex<Option<(&'static str, Fault)>>> = Arc::default();
    let proxy = Proxy::start(&scene, {
        let refuse = Arc::clone(&refuse);
        move |call, _, _| match *refuse.lock().expect("rule") {
            Some((op, fault)) if call.op == op => Some(fault),
            _ => None,
        }
    });
    let client = kinesis_client(&proxy.url);
    let shard = scene.open_shards().remove(0);
    let shard_iterator = || {
        let request = client
            .get_shard_iterator()
            .stream_name(&scene.stream)
            .shard_id(&shard)
            .shard_iterator_type(ShardIteratorType::TrimHorizon);
        services.rt.block_on(request.send()).map_err(Box::new)
    };
    let iterator = shard_iterator()
        .expect("GetShardIterator through the proxy")
        .shard_iterator
        .expect("an iterator");
    let page = services
        .rt
        .block_on(client.get_records().shard_iterator(&iterator).send())
        .expect("GetRecords through the proxy");
    assert_eq!(page.records().len(), 10, "forwarded, within a page");

    // One GetRecords refused as `form` says: the error the source gets,
    // and how many attempts the SDK made.
    let get_records = |fault: Fault, form: Form| {
        *refuse.lock().expect("rule") = Some((GET_RECORDS, fault));
        proxy.set_form(form);
        let before = proxy.log().len();
        let result = services
            .rt
            .block_on(client.get_records().shard_iterator(&iterator).send());
        let attempts = proxy.log()[before..]
            .iter()
            .filter(|c| c.refused.is_some())
            .count();
        match result {
            Err(SdkError::ServiceError(e)) => (e.into_err(), attempts),
            other => panic!("{fault:?} as {form:?}: a service error, not {other:?}"),
        }
    };
    for form in [Form::Body, Form::Header] {
        let (e, attempts) = get_records(Fault::Throughput, form);
        assert!(
            matches!(
                e,
                GetRecordsError::ProvisionedThroughputExceededException(_)
            ),
            "{form:?}: {e:?}"
        );
        assert!(e.message().is_some_and(|m| m.starts_with("Rate exceeded")));
        assert!(attempts > 1, "{form:?}: retried by the SDK as throttling");
        let (e, attempts) = get_records(Fault::Expired, form);
        assert!(
            matches!(e, GetRecordsError::ExpiredIteratorException(_)),
            "{form:?}: {e:?}"
        );
        assert_eq!(attempts, 1, "{form:?}: an expired iterator is not retried");
    }
    let (e, attempts) = get_records(Fault::Throughput, Form::Bare);
    assert!(
        e.code().is_none() && !e.is_provisioned_throughput_exceeded_exception(),
        "without __type or x-amzn-ErrorType the error has no name: {e:?}"
    );
    assert_eq!(attempts, 1, "and is not retried");

    // GetShardIterator does not model LimitExceededException: the code
    // is what tells it, to the SDK's retries and to the source.
    *refuse.lock().expect("rule") = Some((GET_SHARD_ITERATOR, Fault::Limit));
    proxy.set_form(Form::Body);
    let before = proxy.log().len();
    let e = shard_iterator().expect_err("refused");
    assert_eq!(e.code(), Some("LimitExceededException"), "{e:?}");
    assert!(
        proxy.log()[before..].len() > 1,
        "retried by the SDK as throttling"
    );
}

/// Records to put: `n` plain ones and every `every`-th a KPL aggregate of
/// `per` user records; and the data the source hands over for them.
fn mixed(tag: &str, n: usize, every: usize, per: usize) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let mut put = Vec::new();
    let mut data = Vec::new();
    for (i, (key, plain)) in records(tag, n).into_iter().enumerate() {
        if i % every != every - 1 {
            data.push(String::from_utf8_lossy(&plain).into_owned());
            put.push((key, plain));
            continue;
        }
        let users: Vec<String> = (0..per)
            .map(|j| format!(r#"{{"tag":"{tag}","key":"{key}","n":{i},"sub":{j}}}"#))
            .collect();
        let refs: Vec<(&str, &[u8])> = users.iter().map(|u| (key.as_str(), u.as_bytes())).collect();
        put.push((key.clone(), aggregate(&refs)));
        data.extend(users);
    }
    (put, data)
}

#[test]
fn throttled_get_records_back_off_keep_the_iterator_and_lose_and_repeat_nothing() {
    // On both shards every other GetRecords of the first ALTERNATE: the
    // SDK's own retry gets the next through. Then on the first shard the
    // next SUSTAINED_REFUSALS, more than the SDK's three attempts of a
    // poll: the source sees the refusals, backs off and retries with the
    // same iterator (only expiry invalidates one); the other shard is read
    // meanwhile.
    const ALTERNATE: usize = 8;
    const SUSTAINED_REFUSALS: usize = 9;
    const SUSTAINED: &str = "shardId-000000000000";
    let sent = records("throttled", 600);
    let Some(log) = read_through(2, &sent, &data_of(&sent), |call, shard, log| {
        if call.op != GET_RECORDS {
            return None;
        }
        let before: Vec<&Call> = calls(log, GET_RECORDS, shard).collect();
        if before.len() < ALTERNATE {
            return (before.len() % 2 == 1).then_some(Fault::Throughput);
        }
        if shard != SUSTAINED {
            return None;
        }
        let refused = before[ALTERNATE..]
            .iter()
            .filter(|c| c.refused.is_some())
            .count();
        (refused < SUSTAINED_REFUSALS).then_some(Fault::Throughput)
    }) else {
        return;
    };
    let shards = shards(&log);
    assert_eq!(shards.len(), 2, "both shards read");
    let iterator = |c: &Call| c.request["ShardIterator"].as_str().map(str::to_owned);
    for shard in &shards {
        let get_records: Vec<(usize, &Call)> = log
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is(GET_RECORDS, shard))
            .collect();
        let refused = get_records
            .iter()
            .filter(|(_, c)| c.refused.is_some())
            .count();
        let read_before = get_records[..ALTERNATE]
            .iter()
            .filter(|(_, c)| !c.sequences.is_empty())
            .count();
        assert!(
            read_before >= 3,
            "{shard}: read while every other call is refused"
        );
        let renewals = calls(&log, GET_SHARD_ITERATOR, shard).count();
        if shard != SUSTAINED {
            assert_eq!(
                (refused, renewals),
                (ALTERNATE / 2, 1),
                "{shard}: each refusal retried by the SDK, unseen by the source"
            );
            continue;
        }
        let sustained = &get_records[ALTERNATE..];
        let (_, first_refused) = sustained[0];
        let (_, first_served) = sustained
            .iter()
            .find(|(_, c)| c.refused.is_none())
            .expect("served after the refusals");
        assert_eq!(first_refused.refused, Some(Fault::Throughput), "{shard}");
        assert_eq!(
            renewals, 1,
            "{shard}: the iterator is kept through the refusals"
        );
        assert_eq!(
            iterator(first_served),
            iterator(first_refused),
            "{shard}: retried with the iterator that was refused"
        );
        // Three polls of three SDK attempts: the source backed off 500 ms,
        // then 1 s, between them (besides the SDK's own pauses).
        let waited = first_served.at - first_refused.at;
        assert!(
            waited >= Duration::from_millis(1500),
            "{shard}: backed off 500 ms, then 1 s: {waited:?}"
        );
        let read_after = sustained
            .iter()
            .filter(|(_, c)| c.refused.is_none() && !c.sequences.is_empty())
            .count();
        assert!(read_after >= 2, "{shard}: kept reading mid-stream after");
        eprintln!(
            "{shard}: {} GetRecords, {refused} refused, {waited:?} from the first sustained \
             refusal to the next answer, {read_before} answers with records before, {read_after} after",
            get_records.len()
        );
    }
}

#[test]
fn an_expired_iterator_is_renewed_at_the_last_record_handed_over_and_nothing_is_lost_or_repeated() {
    let (sent, data) = mixed("expiry", 480, 6, 4);
    // On each shard its first GetRecords (nothing read yet), and once the
    // first after an answer ending in a plain record, once the first after
    // one ending in a KPL aggregate (whose sub-records were all handed
    // over).
    let mut done: HashSet<(String, bool)> = HashSet::new();
    let Some(log) = read_through(
        2,
        &sent,
        &data.into_iter().collect(),
        move |call, shard, log| {
            if call.op != GET_RECORDS {
                return None;
            }
            let Some(previous) = calls(log, GET_RECORDS, shard).last() else {
                return Some(Fault::Expired);
            };
            if previous.refused.is_some() || previous.sequences.is_empty() {
                return None;
            }
            done.insert((shard.to_owned(), previous.last_aggregated))
                .then_some(Fault::Expired)
        },
    ) else {
        return;
    };
    let expired: Vec<usize> = (0..log.len())
        .filter(|&i| log[i].refused == Some(Fault::Expired))
        .collect();
    let mut after = BTreeMap::new();
    for &i in &expired {
        assert_renewed_where_it_left_off(&log, i);
        let shard = log[i].shard.as_deref().expect("a shard");
        let kind = match log[..i].iter().rev().find(|c| c.is(GET_RECORDS, shard)) {
            None => "nothing read",
            Some(c) if c.last_aggregated => "a KPL aggregate",
            Some(_) => "a plain record",
        };
        *after.entry(kind).or_insert(0) += 1;
    }
    assert_eq!(
        after.keys().copied().collect::<Vec<_>>(),
        ["a KPL aggregate", "a plain record", "nothing read"],
        "expired after each kind of answer: {after:?}"
    );
    assert_eq!(after["nothing read"], 2, "each shard's first GetRecords");
    eprintln!("expired iterators, by what the answer before ended in: {after:?}");
}

#[test]
fn a_get_shard_iterator_refused_with_limit_exceeded_is_retried_at_the_start_and_mid_stream() {
    // On each shard the first REFUSED GetShardIterator calls of each new
    // iterator, and mid-stream (after its third answer with records) an
    // expiry that makes the source ask for one again.
    const REFUSED: usize = 4;
    let sent = records("limited", 500);
    let Some(log) = read_through(2, &sent, &data_of(&sent), |call, shard, log| {
        let last_read = log.iter().rposition(|c| c.is(GET_RECORDS, shard));
        if call.op == GET_SHARD_ITERATOR {
            let asked = log[last_read.map_or(0, |i| i + 1)..]
                .iter()
                .filter(|c| c.is(GET_SHARD_ITERATOR, shard))
                .count();
            return (asked < REFUSED).then_some(Fault::Limit);
        }
        let answers: Vec<&Call> = calls(log, GET_RECORDS, shard).collect();
        let with_records = answers.iter().filter(|c| !c.sequences.is_empty()).count();
        let expired = answers.iter().any(|c| c.refused.is_some());
        (with_records == 3 && !expired).then_some(Fault::Expired)
    }) else {
        return;
    };
    for shard in &shards(&log) {
        let iterators: Vec<(usize, &Call)> = log
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is(GET_SHARD_ITERATOR, shard))
            .collect();
        let refused: Vec<Option<Fault>> = iterators.iter().map(|(_, c)| c.refused).collect();
        let mut want = vec![Some(Fault::Limit); REFUSED];
        want.push(None);
        assert_eq!(refused[..=REFUSED], want, "{shard}: at the start");
        assert_eq!(refused[REFUSED + 1..], want, "{shard}: mid-stream");
        // Every attempt of a run asks for the same start: the lease's at
        // first, the last record handed over mid-stream.
        let starts: Vec<(&str, Option<&str>)> = iterators.iter().map(|(_, c)| c.start()).collect();
        assert!(
            starts[..=REFUSED]
                .iter()
                .all(|s| *s == ("TRIM_HORIZON", None)),
            "{shard}: {starts:?}"
        );
        assert!(
            starts[REFUSED + 1..]
                .iter()
                .all(|s| *s == starts[2 * REFUSED + 1]),
            "{shard}: every attempt mid-stream at the same record: {starts:?}"
        );
        let expiry = log
            .iter()
            .position(|c| c.is(GET_RECORDS, shard) && c.refused == Some(Fault::Expired))
            .expect("an expiry");
        assert_eq!(
            assert_renewed_where_it_left_off(&log, expiry),
            iterators[2 * REFUSED + 1].0,
            "{shard}: the served call after the refused ones"
        );
        let read_after = calls(&log[expiry..], GET_RECORDS, shard)
            .filter(|c| !c.sequences.is_empty())
            .count();
        assert!(read_after >= 2, "{shard}: kept reading mid-stream after");
    }
}

/// A shard started at `LATEST` and throttled before its first record: the
/// source keeps its iterator through the refusals (only expiry invalidates
/// one), so what was put meanwhile is read, not skipped by a later LATEST.
#[test]
fn a_shard_started_at_latest_and_throttled_before_its_first_record_loses_nothing() {
    latest_shard_refused_before_its_first_record(Fault::Throughput, 4);
}

/// The same with the iterator expiring instead: the new one starts at the
/// time the first was asked for (`AT_TIMESTAMP`), not at a later `LATEST`.
#[test]
fn a_shard_started_at_latest_whose_iterator_expires_before_its_first_record_loses_nothing() {
    let renewals = latest_shard_refused_before_its_first_record(Fault::Expired, 1);
    assert_eq!(renewals.first().map(|r| r.0.as_str()), Some("LATEST"));
    assert_eq!(
        renewals.get(1).map(|r| r.0.as_str()),
        Some("AT_TIMESTAMP"),
        "{renewals:?}"
    );
}

/// Starts a worker at `LATEST`, refuses its GetRecords with `fault` from
/// the first answer on until `refusals` were made after records were put,
/// then checks nothing put since is lost; the iterators asked for.
fn latest_shard_refused_before_its_first_record(
    fault: Fault,
    refusals: usize,
) -> Vec<(String, Option<String>)> {
    let Some(services) = Services::up() else {
        return Vec::new();
    };
    let scene = services.scene(1);
    let throttle = Arc::new(AtomicBool::new(false));
    let proxy = Proxy::start(&scene, {
        let throttle = Arc::clone(&throttle);
        move |call, _, _| {
            (call.op == GET_RECORDS && throttle.load(Ordering::SeqCst)).then_some(fault)
        }
    });
    let worker = scene.config_via(&proxy.url, "start = \"latest\"\n", "latest", false);
    let served = |log: &[Call]| {
        log.iter()
            .filter(|c| c.op == GET_RECORDS && c.refused.is_none())
            .count()
    };
    wait_for("a LATEST iterator and GetRecords on it", || {
        served(&proxy.log()) >= 1
    });
    throttle.store(true, Ordering::SeqCst);
    let meanwhile = records("meanwhile", 100);
    scene.put(&meanwhile);
    let put_at = Instant::now();
    // Throttling: more refusals than the SDK's attempts (3), so the source
    // itself gave up at least once after the records were in the shard.
    wait_for("the source to give up on a refused GetRecords", || {
        proxy
            .log()
            .iter()
            .filter(|c| c.refused.is_some() && c.at > put_at)
            .count()
            >= refusals
    });
    throttle.store(false, Ordering::SeqCst);
    let unthrottled_at = Instant::now();
    wait_for("GetRecords served again", || {
        proxy
            .log()
            .iter()
            .any(|c| c.op == GET_RECORDS && c.refused.is_none() && c.at > unthrottled_at)
    });
    let after = records("after", 20);
    scene.put(&after);
    wait_for("the records put after the throttling", || {
        data_of(&after).is_subset(&clean(&worker.seen()))
    });
    let seen = worker.stop();
    let mut expected = data_of(&meanwhile);
    expected.extend(data_of(&after));
    let log = proxy.log();
    let renewals: Vec<(String, Option<String>)> = log
        .iter()
        .filter(|c| c.op == GET_SHARD_ITERATOR)
        .map(|c| {
            let (kind, at) = c.start();
            (kind.to_owned(), at.map(str::to_owned))
        })
        .collect();
    let lost = expected.difference(&clean(&seen)).count();
    assert_eq!(
        lost,
        0,
        "{lost} of the {} records put while the shard was refused are lost; \
         the iterators asked for: {renewals:?}",
        meanwhile.len()
    );
    assert_exactly_once_in_order(&seen, &expected);
    renewals
}
