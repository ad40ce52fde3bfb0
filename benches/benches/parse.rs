//! JSON parsers compared on the same fixture lines, one group per format:
//!
//! - `sonic_rs_value` — `sonic_rs::from_slice::<sonic_rs::Value>` per line:
//!   **the floor** every seclake throughput is compared with;
//! - `serde_json_value` — `serde_json::from_slice::<serde_json::Value>`;
//! - `simd_json_borrowed` — `simd_json::to_borrowed_value` on a copy of the
//!   line (simd-json parses in place, so the copy is part of its price);
//! - `simd_json_tape` — `simd_json::to_tape_with_buffers` on a copy of the
//!   line with buffers reused across lines: how seclake's parsers parse;
//! - `seclake_parse_records` — `Enricher::parse_records` without GeoIP: the
//!   typed parse into Arrow builders, event ids, per-event threat rules and
//!   the finished `RecordBatch`: what a pipeline worker does per batch.
//!
//! Each iteration handles one batch of `BATCH_RECORDS` lines; throughput is
//! reported in lines (elements) and input bytes.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use seclake_benches::{
    BATCH_RECORDS, Format, enricher, fixture_ndjson, floor_parse_line, ingest_format, split_lines,
};

fn parsers(c: &mut Criterion) {
    for format in Format::ALL {
        let data = fixture_ndjson(format, BATCH_RECORDS);
        let lines = split_lines(&data);
        let bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        let mut group = c.benchmark_group(format!("parse/{}", format.as_str()));
        group.throughput(Throughput::ElementsAndBytes {
            elements: lines.len() as u64,
            bytes,
        });

        group.bench_function("sonic_rs_value", |b| {
            b.iter(|| {
                let mut ok = 0usize;
                for line in &lines {
                    ok += usize::from(floor_parse_line(black_box(line)));
                }
                ok
            });
        });

        group.bench_function("serde_json_value", |b| {
            b.iter(|| {
                let mut ok = 0usize;
                for line in &lines {
                    let v = serde_json::from_slice::<serde_json::Value>(black_box(line));
                    ok += usize::from(v.is_ok());
                }
                ok
            });
        });

        group.bench_function("simd_json_borrowed", |b| {
            let mut buf = Vec::with_capacity(64 * 1024);
            b.iter(|| {
                let mut ok = 0usize;
                for line in &lines {
                    buf.clear();
                    buf.extend_from_slice(black_box(line));
                    let v = simd_json::to_borrowed_value(&mut buf);
                    ok += usize::from(v.is_ok());
                }
                ok
            });
        });

        group.bench_function("simd_json_tape", |b| {
            let mut buf = Vec::with_capacity(64 * 1024);
            let mut buffers = simd_json::Buffers::new(4096);
            b.iter(|| {
                let mut ok = 0usize;
                for line in &lines {
                    buf.clear();
                    buf.extend_from_slice(black_box(line));
                    let tape = simd_json::to_tape_with_buffers(&mut buf, &mut buffers);
                    ok += usize::from(tape.is_ok());
                }
                ok
            });
        });

        group.bench_function("seclake_parse_records", |b| {
            let mut enricher = enricher();
            let fmt = ingest_format(format);
            b.iter(|| {
                let parsed = enricher
                    .parse_records(fmt, lines.iter().map(|l| (*l, None)), 0)
                    .expect("a record batch");
                black_box(parsed)
            });
        });

        group.finish();
    }
}

criterion_group!(benches, parsers);
criterion_main!(benches);
