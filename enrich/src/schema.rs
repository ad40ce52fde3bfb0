//! The event schema: one row type for every source, and its Arrow form.
//!
//! The list of `name: Kind` pairs at the bottom of this file is the single
//! source of truth. From it come [`EventRow`] (what parsers fill, borrowing from
//! the input), [`Event`] (the owned form read back from Arrow or Parquet),
//! [`EventBuilder`] (appends rows straight into Arrow builders) and
//! [`event_schema`]. Each field's doc comment becomes the Arrow field's
//! `description` metadata and the text of `docs/schema.md`.

pub mod column;

use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use serde::{Deserialize, Serialize};

use column::{Column, I32, OptF64, OptI32, OptI64, OptText, Text, TextList, TextMap, Timestamp};

/// Errors reading events back from Arrow.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A column could not be cast to the schema's type.
    #[error("column {column}: {source}")]
    Cast {
        /// The column name.
        column: &'static str,
        /// Arrow's reason.
        source: ArrowError,
    },
    /// Building a record batch failed (a bug: the builders disagree on length).
    #[error("building a record batch: {0}")]
    Build(#[from] ArrowError),
}

macro_rules! event_schema {
    ($( $(#[doc = $doc:literal])+ $name:ident : $kind:ty ),+ $(,)?) => {
        /// One event as a parser fills it, borrowing from the raw record.
        /// Start from `EventRow::default()`: every field is empty or null.
        #[derive(Debug, Clone, Copy, Default)]
        pub struct EventRow<'a> {
            $( $(#[doc = $doc])+ pub $name: <$kind as Column>::Ref<'a>, )+
        }

        /// One event, owned: what reading the lake back gives.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct Event {
            $( $(#[doc = $doc])+ pub $name: <$kind as Column>::Owned, )+
        }

        /// Appends events column by column into Arrow builders.
        pub struct EventBuilder {
            $( $name: <$kind as Column>::Builder, )+
            /// Nulls not yet appended, per column.
            nulls: PendingNulls,
            len: usize,
        }

        #[derive(Default)]
        struct PendingNulls {
            $( $name: usize, )+
        }

        /// Names of every column, in schema order.
        pub const COLUMNS: &[&str] = &[$( stringify!($name) ),+];

        fn fields() -> Vec<Field> {
            vec![$(
                Field::new(stringify!($name), <$kind as Column>::data_type(), <$kind as Column>::NULLABLE)
                    .with_metadata([("description".to_owned(), doc_text(&[$($doc),+]))].into()),
            )+]
        }

        impl EventBuilder {
            /// A builder with room for `rows` events.
            pub fn with_capacity(rows: usize) -> EventBuilder {
                EventBuilder {
                    $( $name: <$kind as Column>::builder(rows), )+
                    nulls: PendingNulls::default(),
                    len: 0,
                }
            }

            /// Appends one event.
            pub fn append(&mut self, row: &EventRow<'_>) {
                $(
                    if <$kind as Column>::is_null(&row.$name) {
                        self.nulls.$name += 1;
                    } else {
                        let n = std::mem::take(&mut self.nulls.$name);
                        if n > 0 {
                            <$kind as Column>::append_nulls(&mut self.$name, n);
                        }
                        <$kind as Column>::append(&mut self.$name, row.$name);
                    }
                )+
                self.len += 1;
            }

            /// Appends one owned event.
            pub fn append_event(&mut self, event: &Event) {
                self.flush_nulls();
                $( <$kind as Column>::append_owned(&mut self.$name, &event.$name); )+
                self.len += 1;
            }

            /// Appends every column's counted nulls.
            fn flush_nulls(&mut self) {
                $(
                    let n = std::mem::take(&mut self.nulls.$name);
                    if n > 0 {
                        <$kind as Column>::append_nulls(&mut self.$name, n);
                    }
                )+
            }

            /// Finishes the batch. The builder is left empty, each column sized
            /// for a batch like this one, so the next does not regrow them.
            pub fn finish(&mut self) -> Result<RecordBatch, SchemaError> {
                self.flush_nulls();
                let columns: Vec<ArrayRef> = vec![$( <$kind as Column>::finish(&mut self.$name) ),+];
                self.len = 0;
                Ok(RecordBatch::try_new(event_schema(), columns)?)
            }
        }

        impl Event {
            /// Reads every row of `batch`. Columns are matched by name and cast
            /// to the schema's types (so dictionary- or view-encoded columns from
            /// a query engine work); missing columns read as empty.
            pub fn from_batch(batch: &RecordBatch) -> Result<Vec<Event>, SchemaError> {
                let rows = batch.num_rows();
                let mut events = vec![Event::default(); rows];
                $(
                    if let Some(array) = batch.column_by_name(stringify!($name)) {
                        let array = cast(array, &<$kind as Column>::data_type())
                            .map_err(|source| SchemaError::Cast { column: stringify!($name), source })?;
                        for (i, event) in events.iter_mut().enumerate() {
                            event.$name = <$kind as Column>::read(array.as_ref(), i);
                        }
                    }
                )+
                Ok(events)
            }
        }
    };
}

fn doc_text(lines: &[&str]) -> String {
    lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
}

impl EventBuilder {
    /// Number of events appended since the last [`EventBuilder::finish`].
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was appended since the last finish.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The Arrow schema of the event table (shared, built once).
pub fn event_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(SCHEMA.get_or_init(|| Arc::new(Schema::new(fields()))))
}

/// Builds a record batch from owned events (tests, replays, golden files).
pub fn events_to_batch(events: &[Event]) -> Result<RecordBatch, SchemaError> {
    let mut builder = EventBuilder::with_capacity(events.len());
    for event in events {
        builder.append_event(event);
    }
    builder.finish()
}

/// A Markdown table of every column: name, Arrow type, nullability and doc.
pub fn schema_markdown() -> String {
    let mut out = String::from("| column | type | nullable | meaning |\n|---|---|---|---|\n");
    for field in event_schema().fields() {
        let doc = field
            .metadata()
            .get("description")
            .map_or("", String::as_str);
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            field.name(),
            field.data_type(),
            if field.is_nullable() { "yes" } else { "no" },
            doc
        ));
    }
    out
}

/// Index of a column in [`event_schema`], for code that reads batches by position.
pub fn column_index(name: &str) -> Option<usize> {
    COLUMNS.iter().position(|c| *c == name)
}

/// The threat columns' positions; the sequential scoring stage rewrites them.
pub(crate) fn threat_columns() -> [usize; 3] {
    static INDEXES: OnceLock<[usize; 3]> = OnceLock::new();
    *INDEXES.get_or_init(|| {
        ["threat_score", "threat_level", "threat_reasons"].map(|name| {
            column_index(name).unwrap_or_else(|| unreachable!("{name} is in the schema"))
        })
    })
}

event_schema! {
    /// Deterministic id: 32 hex digits of the XXH3-128 hash of the source format
    /// and the raw record bytes. The same record always gets the same id, so
    /// sinks can de-duplicate replays.
    event_id: Text,
    /// Which log the event came from: `waf`, `falco`, `app` or `guardduty`. A
    /// Hive partition key in the lake (`source=…`), so not stored inside the
    /// Parquet files.
    source: Text,
    /// When the event happened (UTC, microseconds).
    ts: Timestamp,
    /// When seclake processed it (UTC, microseconds).
    ingest_ts: Timestamp,
    /// The client address in canonical text form (RFC 5952 for IPv6); null when
    /// absent or unparseable. GuardDuty: the finding's remote address.
    client_ip: OptText,
    /// `public`, `private`, `loopback`, `link_local`, `cgnat`, `multicast`,
    /// `documentation`, `reserved` or `unspecified`; only public addresses are looked up.
    ip_class: OptText,
    /// ISO 3166-1 alpha-2 country from GeoIP.
    country_iso: OptText,
    /// English country name from GeoIP.
    country_name: OptText,
    /// English city name from GeoIP.
    city: OptText,
    /// Latitude from GeoIP.
    lat: OptF64,
    /// Longitude from GeoIP.
    lon: OptF64,
    /// Autonomous system number from GeoIP.
    asn: OptI64,
    /// Autonomous system organisation from GeoIP.
    as_org: OptText,
    /// WAF action as logged (`ALLOW`, `BLOCK`, `COUNT`, `CAPTCHA`, `CHALLENGE`),
    /// or GuardDuty's action type (`NETWORK_CONNECTION`, `AWS_API_CALL`,
    /// `PORT_PROBE`, `DNS_REQUEST`, …); null for other sources.
    action: OptText,
    /// WAF terminating rule id, the Falco rule name, or the GuardDuty finding
    /// type (`Recon:EC2/PortProbeUnprotectedPort`).
    rule: OptText,
    /// Lowercase severity: Falco priority (`critical`, `warning`, …), app log
    /// level (`info`, `error`, …) or GuardDuty's label of the finding's
    /// severity (`low`, `medium`, `high`, `critical`).
    severity: OptText,
    /// HTTP method (WAF and app).
    http_method: OptText,
    /// HTTP host (WAF `Host` header or `httpRequest.host`).
    host: OptText,
    /// Request path without the query string.
    uri: OptText,
    /// HTTP status: the app's response status, or WAF's `responseCodeSent`.
    status: OptI32,
    /// The client's `User-Agent` (GuardDuty: of the API call a finding names).
    user_agent: OptText,
    /// Request id: WAF `httpRequest.requestId`, the app's `request_id`, or the
    /// GuardDuty finding id.
    request_id: OptText,
    /// WAF: the web ACL ARN.
    waf_web_acl_id: OptText,
    /// WAF: `REGULAR`, `RATE_BASED`, `MANAGED_RULE_GROUP` or `GROUP`.
    waf_terminating_rule_type: OptText,
    /// WAF: rule groups that matched (terminating or not), e.g. `AWS#AWSManagedRulesSQLiRuleSet`.
    waf_rule_groups: TextList,
    /// WAF: labels added by matching rules.
    waf_labels: TextList,
    /// WAF: the rate-based rule that acted on the request, if any.
    waf_rate_based_rule: OptText,
    /// WAF: the query string (`httpRequest.args`).
    waf_args: OptText,
    /// WAF: source of the request (`ALB`, `CF`, `APIGW`, …).
    waf_http_source: OptText,
    /// WAF: the country WAF itself resolved (`-` in the log becomes null).
    waf_country: OptText,
    /// WAF: JA3 TLS fingerprint.
    ja3: OptText,
    /// WAF: JA4 TLS fingerprint.
    ja4: OptText,
    /// WAF: request headers, names lowercased; values of `authorization`,
    /// `proxy-authorization`, `cookie`, `set-cookie` and `x-api-key` are `[REDACTED]`.
    headers: TextMap,
    /// Falco: priority as logged (`Critical`, `Warning`, …).
    falco_priority: OptText,
    /// Falco: the event source (`syscall`, `k8s_audit`, …).
    falco_source: OptText,
    /// Falco: the human-readable alert text.
    falco_output: OptText,
    /// Falco: the node that raised the alert; GuardDuty: the EC2 instance id.
    hostname: OptText,
    /// Falco: Kubernetes namespace.
    k8s_namespace: OptText,
    /// Falco: Kubernetes pod.
    k8s_pod: OptText,
    /// Falco: container id.
    container_id: OptText,
    /// Falco: container image (`repository:tag`).
    container_image: OptText,
    /// Falco: process name.
    proc_name: OptText,
    /// Falco: process command line.
    proc_cmdline: OptText,
    /// Falco: user name; GuardDuty: the IAM user (or, for a session, the role)
    /// of the access key a finding names.
    user_name: OptText,
    /// Falco: rule tags.
    falco_tags: TextList,
    /// Falco: MITRE ATT&CK technique ids found in the tags (`T1059`, `T1555.003`, …).
    mitre_ids: TextList,
    /// App: the service that logged the request.
    app_service: OptText,
    /// App: the templated route (`/orders/{id}`).
    app_route: OptText,
    /// App: request latency in milliseconds.
    latency_ms: OptF64,
    /// App: response size in bytes.
    bytes: OptI64,
    /// App: authenticated user id.
    user_id: OptText,
    /// App: W3C trace id.
    trace_id: OptText,
    /// App: `Idempotency-Key` of order requests.
    idempotency_key: OptText,
    /// App: order id.
    order_id: OptText,
    /// App: order amount in KRW.
    amount: OptI64,
    /// App: the error text, if the request failed.
    app_error: OptText,
    /// App: the log message; GuardDuty: the finding's title.
    message: OptText,
    /// Threat score, 0–100 (see docs/threat-scoring.md).
    threat_score: I32,
    /// `low`, `medium`, `high` or `critical`.
    threat_level: Text,
    /// Why the score is what it is: one `rule +points` entry per rule that fired.
    threat_reasons: TextList,
    /// GuardDuty: the access key id an IAM finding names.
    aws_access_key_id: OptText,
}
