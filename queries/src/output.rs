//! Query results as a table, CSV or JSON, for `seclake query`.

use std::io::Write;

use arrow::record_batch::RecordBatch;

/// How `seclake query` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row (NDJSON).
    Json,
}

impl std::str::FromStr for ResultFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<ResultFormat, String> {
        match s {
            "table" => Ok(ResultFormat::Table),
            "csv" => Ok(ResultFormat::Csv),
            "json" => Ok(ResultFormat::Json),
            other => Err(format!(
                "{other:?} is not a result format (table, csv, json)"
            )),
        }
    }
}

/// Writes `batches` to `out` in `format`.
pub fn write_results(
    batches: &[RecordBatch],
    format: ResultFormat,
    out: &mut dyn Write,
) -> Result<(), arrow::error::ArrowError> {
    match format {
        ResultFormat::Table => {
            writeln!(
                out,
                "{}",
                arrow::util::pretty::pretty_format_batches(batches)?
            )?;
        }
        ResultFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        ResultFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut *out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    Ok(())
}
