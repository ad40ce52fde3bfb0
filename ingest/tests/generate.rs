//! The `generate` source: the fixture generator as a source.

use std::time::Instant;

use chrono::NaiveDate;
use seclake_ingest::{Batch, BatchSender, Format, SourceConfig, SourceContext};

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 25).expect("a day")
}

fn config(text: &str) -> SourceConfig {
    toml::from_str(&format!("type = \"generate\"\n{text}")).expect("a generate config")
}

/// Runs a source to its end; every batch it sent, and its read stats.
fn run(source: &SourceConfig) -> (Vec<Batch>, seclake_ingest::ReadStats) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let ctx = SourceContext::new(BatchSender::new(tx), runtime.handle().clone());
    let finished = source
        .spec()
        .build()
        .expect("builds")
        .run(&ctx)
        .expect("runs");
    drop(ctx);
    let batches: Vec<Batch> = rx.iter().collect();
    (batches, finished.stats)
}

fn lines(batches: &[Batch]) -> Vec<Vec<u8>> {
    batches
        .iter()
        .flat_map(|b| (0..b.len()).map(move |i| b.record(i).to_vec()))
        .collect()
}

#[test]
fn count_gives_exactly_the_lines_seclake_gen_writes() {
    let source =
        config("format = \"waf\"\ncount = 5000\nseed = 7\ndate = 2026-11-25\nbatch_bytes = 65536");
    let (batches, stats) = run(&source);
    let mut expected = Vec::new();
    seclake_fixtures::write_lines(Format::Waf, 7, day(), 5000, &mut expected).expect("generated");
    let expected: Vec<Vec<u8>> = expected
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(stats.records, 5000);
    assert!(batches.len() > 1, "cut into batches of batch_bytes");
    assert_eq!(lines(&batches), expected);
    let last = batches.last().expect("a batch");
    assert_eq!(
        last.position(last.len() - 1).to_string(),
        "generate:waf:7:2026-11-25:5000"
    );
    assert!(batches.iter().all(|b| b.format == Format::Waf));
}

#[test]
fn the_same_seed_gives_the_same_records_and_another_seed_others() {
    let a = lines(
        &run(&config(
            "format = \"falco\"\ncount = 800\nseed = 3\ndate = \"2026-11-25\"",
        ))
        .0,
    );
    let b = lines(
        &run(&config(
            "format = \"falco\"\ncount = 800\nseed = 3\ndate = \"2026-11-25\"",
        ))
        .0,
    );
    let c = lines(
        &run(&config(
            "format = \"falco\"\ncount = 800\nseed = 4\ndate = \"2026-11-25\"",
        ))
        .0,
    );
    assert_eq!(a.len(), 800);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn a_rate_spaces_the_records_in_tenths_of_a_second() {
    let source = config("format = \"app\"\ncount = 300\nrate = \"1k/s\"\ndate = 2026-11-25");
    let started = Instant::now();
    let (batches, stats) = run(&source);
    let elapsed = started.elapsed();
    assert_eq!(stats.records, 300);
    assert!(
        batches.iter().all(|b| b.len() <= 100),
        "a batch holds at most a tenth of a second of records: {:?}",
        batches.iter().map(Batch::len).collect::<Vec<_>>()
    );
    // Three batches of 100 at 1,000 records/s: the third may leave at 0.2 s,
    // not before. (A lower bound: a slow machine cannot make it fail.)
    assert!(elapsed.as_secs_f64() >= 0.2, "{elapsed:?}");
}

#[test]
fn without_a_count_it_runs_until_stopped_and_numbers_lines_on() {
    let source = config("format = \"app\"\nbatch_bytes = 4096");
    let (tx, rx) = crossbeam_channel::bounded(4);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let ctx = SourceContext::new(BatchSender::new(tx), runtime.handle().clone());
    let shutdown = ctx.shutdown.clone();
    let source = source.spec().build().expect("builds");
    let reader = std::thread::spawn(move || source.run(&ctx).map(|f| f.stats));
    let mut seen = 0;
    let mut next_line = 1;
    // More than one generated day of app lines (50,000), then stop.
    while seen < 60_000 {
        let batch = rx.recv().expect("the generator keeps going");
        for i in 0..batch.len() {
            assert_eq!(batch.records[i].seq, next_line);
            next_line += 1;
        }
        seen += batch.len();
    }
    shutdown.trigger();
    let drained: usize = rx.iter().map(|b| b.len()).sum();
    let stats = reader.join().expect("no panic").expect("stops cleanly");
    assert_eq!(stats.records as usize, seen + drained);
}

#[test]
fn bad_values_name_the_key() {
    for (text, key) in [
        ("format = \"waf\"\nrate = \"fast\"", "fast"),
        ("format = \"waf\"\ndate = \"yesterday\"", "yesterday"),
        ("format = \"waf\"\ncounts = 5", "counts"),
    ] {
        let err = toml::from_str::<SourceConfig>(&format!("type = \"generate\"\n{text}"))
            .expect_err(text)
            .to_string();
        assert!(err.contains(key), "{err}");
    }
}
