//! The report's SQL, one file per section in `queries/sql/`, compiled in.
//!
//! The `*_day` files select one source's rows of the report day, each
//! `event_id` once, with the help of the `*_copies` files (the ids stored more
//! than once); the report creates them as in-memory tables in that order
//! (`waf_copies`, `waf_day`, …) and every section reads the day tables.
//! Athena, Trino or DuckDB users run the same files: create the six as tables
//! first, then the sections (docs/report.md lists the parameters).

/// A named SQL text.
#[derive(Debug, Clone, Copy)]
pub struct Sql {
    /// The file's stem, e.g. `top_attackers`.
    pub name: &'static str,
    /// The SQL, with `:name` parameters.
    pub text: &'static str,
}

macro_rules! sql {
    ($($name:literal),+ $(,)?) => {
        &[$(Sql { name: $name, text: include_str!(concat!("../sql/", $name, ".sql")) }),+]
    };
}

/// The day tables, created in this order before any section runs.
pub const DAY_TABLES: &[Sql] = sql![
    "waf_copies",
    "waf_day",
    "falco_copies",
    "falco_day",
    "app_copies",
    "app_day",
];

/// The report's sections.
pub const SECTIONS: &[Sql] = sql![
    "traffic_summary",
    "top_countries",
    "top_attackers",
    "new_attackers",
    "waf_rules",
    "attack_types",
    "timeline",
    "threat_levels",
    "falco_priorities",
    "falco_rules",
    "falco_hosts",
    "falco_namespaces",
    "falco_critical",
    "leaked_credentials",
    "blocks",
    "app_summary",
    "app_routes",
];

/// The day table or section called `name`.
pub fn find(name: &str) -> Option<Sql> {
    DAY_TABLES
        .iter()
        .chain(SECTIONS)
        .find(|s| s.name == name)
        .copied()
}
