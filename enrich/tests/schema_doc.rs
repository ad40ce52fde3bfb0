//! `docs/schema.md` shows the schema the code defines, column for column.

use seclake_enrich::schema::{COLUMNS, event_schema, schema_markdown};

#[test]
fn docs_schema_md_lists_exactly_the_columns_the_code_defines() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/schema.md");
    let doc = std::fs::read_to_string(path).expect("docs/schema.md exists");
    assert!(
        doc.contains(&schema_markdown()),
        "docs/schema.md is out of date: regenerate its table with `seclake schema`"
    );
}

#[test]
fn every_column_has_a_description() {
    for field in event_schema().fields() {
        let doc = field
            .metadata()
            .get("description")
            .map(String::as_str)
            .unwrap_or("");
        assert!(doc.len() > 10, "column {} has no description", field.name());
    }
    assert_eq!(COLUMNS.len(), event_schema().fields().len());
}
