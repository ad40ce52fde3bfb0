//! The index template: how every event field is mapped, chosen per field.
//!
//! Addresses are `ip` (range and CIDR queries), the GeoIP position is one
//! `geo_point` (`location`, from the lake's `lat` and `lon`), identifiers and
//! enumerations are `keyword` (exact match, aggregations), free text that
//! analysts search by word (Falco's output, command lines, messages, user
//! agents, query strings) is `text` with a `keyword` sub-field for
//! aggregations. Request headers are one `flat_object`: every header name is
//! searchable without adding a field per name to the mapping. Fields not
//! listed here are kept in `_source` but not indexed (`dynamic: false`), so
//! an unexpected field never turns into a mapping error.

use serde_json::{Map, Value, json};

/// How one document field is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Exact values: ids, enumerations, names.
    Keyword,
    /// Exact values that may be long (URIs): longer ones are stored, not indexed.
    LongKeyword,
    /// Words to search, plus `<field>.keyword` for aggregations.
    Text,
    /// An IPv4 or IPv6 address.
    Ip,
    /// `{"lat": …, "lon": …}`.
    GeoPoint,
    /// An RFC 3339 time.
    Date,
    /// A 32-bit integer.
    Integer,
    /// A 64-bit integer.
    Long,
    /// A double.
    Double,
    /// An object of string values, indexed as one field.
    FlatObject,
}

impl FieldType {
    /// The OpenSearch mapping type name.
    pub fn type_name(self) -> &'static str {
        match self {
            FieldType::Keyword | FieldType::LongKeyword => "keyword",
            FieldType::Text => "text",
            FieldType::Ip => "ip",
            FieldType::GeoPoint => "geo_point",
            FieldType::Date => "date",
            FieldType::Integer => "integer",
            FieldType::Long => "long",
            FieldType::Double => "double",
            FieldType::FlatObject => "flat_object",
        }
    }

    fn mapping(self) -> Value {
        match self {
            FieldType::LongKeyword => json!({"type": "keyword", "ignore_above": 2048}),
            FieldType::Text => json!({
                "type": "text",
                "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}
            }),
            FieldType::Date => {
                json!({"type": "date", "format": "strict_date_optional_time||epoch_millis"})
            }
            other => json!({"type": other.type_name()}),
        }
    }
}

/// Every document field and its mapping. Lists (`waf_labels`, `falco_tags`,
/// …) map as their element type.
pub const FIELDS: &[(&str, FieldType)] = &[
    ("event_id", FieldType::Keyword),
    ("source", FieldType::Keyword),
    ("ts", FieldType::Date),
    ("ingest_ts", FieldType::Date),
    ("client_ip", FieldType::Ip),
    ("ip_class", FieldType::Keyword),
    ("country_iso", FieldType::Keyword),
    ("country_name", FieldType::Keyword),
    ("city", FieldType::Keyword),
    ("location", FieldType::GeoPoint),
    ("asn", FieldType::Long),
    ("as_org", FieldType::Keyword),
    ("action", FieldType::Keyword),
    ("rule", FieldType::Keyword),
    ("severity", FieldType::Keyword),
    ("http_method", FieldType::Keyword),
    ("host", FieldType::Keyword),
    ("uri", FieldType::LongKeyword),
    ("status", FieldType::Integer),
    ("user_agent", FieldType::Text),
    ("request_id", FieldType::Keyword),
    ("waf_web_acl_id", FieldType::Keyword),
    ("waf_terminating_rule_type", FieldType::Keyword),
    ("waf_rule_groups", FieldType::Keyword),
    ("waf_labels", FieldType::Keyword),
    ("waf_rate_based_rule", FieldType::Keyword),
    ("waf_args", FieldType::Text),
    ("waf_http_source", FieldType::Keyword),
    ("waf_country", FieldType::Keyword),
    ("ja3", FieldType::Keyword),
    ("ja4", FieldType::Keyword),
    ("headers", FieldType::FlatObject),
    ("falco_priority", FieldType::Keyword),
    ("falco_source", FieldType::Keyword),
    ("falco_output", FieldType::Text),
    ("hostname", FieldType::Keyword),
    ("k8s_namespace", FieldType::Keyword),
    ("k8s_pod", FieldType::Keyword),
    ("container_id", FieldType::Keyword),
    ("container_image", FieldType::Keyword),
    ("proc_name", FieldType::Keyword),
    ("proc_cmdline", FieldType::Text),
    ("user_name", FieldType::Keyword),
    ("falco_tags", FieldType::Keyword),
    ("mitre_ids", FieldType::Keyword),
    ("app_service", FieldType::Keyword),
    ("app_route", FieldType::Keyword),
    ("latency_ms", FieldType::Double),
    ("bytes", FieldType::Long),
    ("user_id", FieldType::Keyword),
    ("trace_id", FieldType::Keyword),
    ("idempotency_key", FieldType::Keyword),
    ("order_id", FieldType::Keyword),
    ("amount", FieldType::Long),
    ("app_error", FieldType::Text),
    ("message", FieldType::Text),
    ("threat_score", FieldType::Integer),
    ("threat_level", FieldType::Keyword),
    ("threat_reasons", FieldType::Keyword),
    ("aws_access_key_id", FieldType::Keyword),
];

/// The `mappings` body shared by every seclake index.
pub fn mappings() -> Value {
    let properties: Map<String, Value> = FIELDS
        .iter()
        .map(|(name, kind)| ((*name).to_owned(), kind.mapping()))
        .collect();
    json!({"dynamic": false, "properties": properties})
}

/// Index settings: one primary shard per daily index (a day of one source is
/// small for a shard), `replicas` copies, refreshed every second so events are
/// searchable within seconds.
pub fn settings(replicas: u32, shards: u32) -> Value {
    json!({
        "index": {
            "number_of_shards": shards,
            "number_of_replicas": replicas,
            "refresh_interval": "1s",
        }
    })
}

/// The composable index template for `<prefix>-*`, made of the component
/// templates `<prefix>-mappings` and `<prefix>-settings`; `data_stream`
/// makes every new `<prefix>-…` a data stream timed by `ts`.
pub fn index_template(prefix: &str, data_stream: bool) -> Value {
    let mut template = json!({
        "index_patterns": [format!("{prefix}-*")],
        "composed_of": [format!("{prefix}-mappings"), format!("{prefix}-settings")],
        "priority": 200,
        "_meta": {"managed_by": "seclake", "description": "seclake events"},
    });
    if data_stream {
        template["data_stream"] = json!({"timestamp_field": {"name": "ts"}});
    }
    template
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_column_but_the_coordinates_is_mapped_and_location_replaces_them() {
        let mapped: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
        for column in seclake_enrich::schema::COLUMNS {
            match *column {
                "lat" | "lon" => assert!(!mapped.contains(column), "{column} is in location"),
                other => assert!(mapped.contains(&other), "{other} has no mapping"),
            }
        }
        assert!(mapped.contains(&"location"));
        assert_eq!(mapped.len(), seclake_enrich::schema::COLUMNS.len() - 1);
    }

    #[test]
    fn addresses_are_ip_and_the_position_is_a_geo_point() {
        let m = mappings();
        assert_eq!(m["properties"]["client_ip"]["type"], "ip");
        assert_eq!(m["properties"]["location"]["type"], "geo_point");
        assert_eq!(m["properties"]["headers"]["type"], "flat_object");
        assert_eq!(
            m["properties"]["user_agent"]["fields"]["keyword"]["type"],
            "keyword"
        );
        assert_eq!(m["dynamic"], false);
    }
}
