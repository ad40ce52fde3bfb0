//! Parquet encoding of parsed WAF events, as the lake writes them: the
//! `WriterProperties` of `sink/src/lake.rs` (zstd, page statistics, no
//! dictionary for `event_id`), the file columns (no `source`), into memory.
//!
//! - `zstd_1`, `zstd_3` — one ~64k-row `RecordBatch` written in one call;
//! - `zstd_3_batches` — the same rows handed over in the pipeline's batch
//!   size (`BATCH_RECORDS` rows per `write`), as the lake receives them.
//!
//! Throughput is rows and the NDJSON bytes the rows were parsed from, so MB/s
//! compares directly with the `parse` bench. The compressed sizes are printed
//! before the measurements.

use std::hint::black_box;

use arrow::compute::concat_batches;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parquet::arrow::ArrowWriter;
use seclake_benches::{
    BATCH_RECORDS, Format, encode_parquet, fixture_ndjson, lake_file_batch, lake_writer_properties,
    parse_batches, scored_batches, split_lines,
};

/// WAF records encoded per iteration.
const RECORDS: usize = 65_536;
/// The lake's default row group size (`lake.row_group_rows`).
const ROW_GROUP_ROWS: usize = 128 * 1024;

fn parquet(c: &mut Criterion) {
    let data = fixture_ndjson(Format::Waf, RECORDS);
    let lines = split_lines(&data);
    let parsed = parse_batches(Format::Waf, &lines, BATCH_RECORDS).expect("parsed WAF batches");
    let scored: Vec<_> = scored_batches(&parsed)
        .expect("scored batches")
        .iter()
        .map(|b| lake_file_batch(b).expect("file columns"))
        .collect();
    let batch = concat_batches(&scored[0].schema(), &scored).expect("one batch");
    let rows = batch.num_rows() as u64;
    let ndjson_bytes = data.len() as u64;

    let mut group = c.benchmark_group("parquet/waf");
    group.throughput(Throughput::ElementsAndBytes {
        elements: rows,
        bytes: ndjson_bytes,
    });
    for level in [1, 3] {
        let props = lake_writer_properties(level, ROW_GROUP_ROWS).expect("writer properties");
        let size = encode_parquet(&batch, &props).expect("encoded").len();
        eprintln!(
            "parquet/waf/zstd_{level}: {rows} rows, {ndjson_bytes} NDJSON bytes, {} Arrow bytes -> \
             {size} Parquet bytes ({:.1} bytes/row, {:.1}x smaller than NDJSON)",
            batch.get_array_memory_size(),
            size as f64 / rows as f64,
            ndjson_bytes as f64 / size as f64,
        );
        group.bench_function(format!("zstd_{level}"), |b| {
            b.iter(|| {
                encode_parquet(black_box(&batch), &props)
                    .expect("encoded")
                    .len()
            });
        });
    }

    let props = lake_writer_properties(3, ROW_GROUP_ROWS).expect("writer properties");
    group.bench_function("zstd_3_batches", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props.clone()))
                .expect("writer");
            for part in &scored {
                writer.write(black_box(part)).expect("written");
            }
            writer.close().expect("closed");
            out.len()
        });
    });
    group.finish();
}

criterion_group!(benches, parquet);
criterion_main!(benches);
