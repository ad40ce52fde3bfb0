//! The sink contract as the pipeline sees it: a batch's Ack resolves only
//! when every acknowledging sink that took it let go, a failing sink fails
//! it, and a sink that takes no part in acknowledgement never holds it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use seclake_enrich::schema::{EventBuilder, EventRow};
use seclake_ingest::{Ack, AckStatus, Format, Position};
use seclake_sink::{
    Fanout, Lanes, Rejected, Sink, SinkBatch, SinkError, SinkSpec, SinkStats, Takes,
};
use tokio::sync::Notify;

/// What a test sink does with the batches it gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Durable at once: drops the Ack clone when the write returns.
    Durable,
    /// Durable only at close: holds every Ack clone until then.
    HoldsUntilClose,
    /// Every write fails (after failing the Ack, as the contract says).
    Fails,
    /// Every write waits until the test opens the gate.
    Blocks,
}

struct TestSink {
    name: &'static str,
    behaviour: Behaviour,
    acknowledges: bool,
    takes: Takes,
    gate: Arc<Gate>,
    writes: Arc<AtomicU64>,
}

/// Closed until the test opens it; `Blocks` sinks wait at it.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    notify: Notify,
}

impl Gate {
    async fn pass(&self) {
        if !self.open.load(Ordering::SeqCst) {
            self.notify.notified().await;
        }
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        // Stored as a permit if the sink is not waiting yet.
        self.notify.notify_one();
    }
}

impl TestSink {
    fn new(name: &'static str, behaviour: Behaviour) -> TestSink {
        TestSink {
            name,
            behaviour,
            acknowledges: true,
            takes: Takes::Events,
            gate: Arc::new(Gate::default()),
            writes: Arc::new(AtomicU64::new(0)),
        }
    }
}

struct Running {
    behaviour: Behaviour,
    gate: Arc<Gate>,
    writes: Arc<AtomicU64>,
    held: Vec<Ack>,
    rows: u64,
}

#[async_trait]
impl Sink for Running {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        match self.behaviour {
            Behaviour::Durable => {}
            Behaviour::HoldsUntilClose => self.held.push(batch.ack.clone()),
            Behaviour::Fails => {
                batch.ack.fail();
                return Err(SinkError::Schema("the test sink fails every write"));
            }
            Behaviour::Blocks => {
                self.held.push(batch.ack.clone());
                self.gate.pass().await;
            }
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.rows += batch.events.num_rows() as u64;
        Ok(())
    }

    async fn roll_due(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.held.clear();
        Ok(())
    }

    fn stats(&self) -> SinkStats {
        SinkStats {
            rows: self.rows,
            ..SinkStats::default()
        }
    }
}

#[async_trait]
impl SinkSpec for TestSink {
    fn name(&self) -> &'static str {
        self.name
    }

    fn takes(&self) -> Takes {
        self.takes
    }

    fn lanes(&self) -> Lanes {
        Lanes::One
    }

    fn acknowledges(&self) -> bool {
        self.acknowledges
    }

    fn check(&self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn open(&self) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(Running {
            behaviour: self.behaviour,
            gate: Arc::clone(&self.gate),
            writes: Arc::clone(&self.writes),
            held: Vec::new(),
            rows: 0,
        }))
    }
}

fn events(n: usize) -> RecordBatch {
    let mut builder = EventBuilder::with_capacity(n);
    let ids: Vec<String> = (0..n).map(|i| format!("{i:032x}")).collect();
    for id in &ids {
        builder.append(&EventRow {
            event_id: id,
            source: "app",
            ts: 1_764_374_400_000_000,
            ingest_ts: 1_764_374_400_000_000,
            threat_level: "none",
            ..EventRow::default()
        });
    }
    builder.finish().expect("a valid batch")
}

fn batch(ack: &Ack, dead_letters: usize) -> SinkBatch {
    let rejected: Arc<[Rejected]> = (0..dead_letters)
        .map(|i| Rejected {
            position: Position::Line {
                origin: "t.ndjson".into(),
                line: i as u64 + 1,
            },
            reason: "invalid app record".into(),
            raw: bytes::Bytes::from_static(b"{"),
        })
        .collect();
    SinkBatch {
        format: Format::App,
        events: events(3),
        dead_letters: rejected,
        ack: ack.clone(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Waits for the Ack's outcome on the test's thread, bounded: the lanes
/// resolve it on their own threads.
fn outcome(waiter: seclake_ingest::AckWaiter) -> Option<AckStatus> {
    let rt = runtime();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), waiter.wait())
            .await
            .ok()
    })
}

#[test]
fn the_ack_resolves_only_when_every_acknowledging_sink_let_go() {
    let rt = runtime();
    let quick = TestSink::new("quick", Behaviour::Durable);
    let slow = TestSink::new("slow", Behaviour::HoldsUntilClose);
    let fanout = Fanout::start(&[&quick, &slow], &[Format::App], rt.handle()).unwrap();
    let (ack, mut waiter) = Ack::new();
    fanout.send(&batch(&ack, 0)).unwrap();
    drop(ack);
    assert_eq!(
        waiter.try_status(),
        None,
        "the slow sink holds it until it closes"
    );
    let stats = fanout.finish().unwrap();
    assert_eq!(waiter.try_status(), Some(AckStatus::Delivered));
    assert_eq!((stats["quick"].rows, stats["slow"].rows), (3, 3));
}

#[test]
fn a_failing_sink_fails_the_batch_and_the_fanout() {
    let rt = runtime();
    let good = TestSink::new("good", Behaviour::Durable);
    let bad = TestSink::new("bad", Behaviour::Fails);
    let fanout = Fanout::start(&[&good, &bad], &[Format::App], rt.handle()).unwrap();
    let (ack, waiter) = Ack::new();
    fanout.send(&batch(&ack, 0)).unwrap();
    drop(ack);
    assert_eq!(outcome(waiter), Some(AckStatus::Failed));
    let err = fanout.finish().unwrap_err().to_string();
    assert!(
        err.contains("bad") && err.contains("fails every write"),
        "{err}"
    );
}

#[test]
fn a_sink_that_takes_no_part_in_acks_never_holds_or_slows_a_batch() {
    let rt = runtime();
    let lake = TestSink::new("lake", Behaviour::Durable);
    let mut response = TestSink::new("response", Behaviour::Blocks);
    response.acknowledges = false;
    let gate = Arc::clone(&response.gate);
    let fanout = Fanout::start(&[&lake, &response], &[Format::App], rt.handle()).unwrap();
    // The response sink blocks inside its first write; far more batches than
    // its queue holds still go through without waiting, and each one's Ack
    // resolves as soon as the lake has it.
    for _ in 0..50 {
        let (ack, waiter) = Ack::new();
        fanout.send(&batch(&ack, 0)).unwrap();
        drop(ack);
        assert_eq!(outcome(waiter), Some(AckStatus::Delivered));
    }
    assert_eq!(response.writes.load(Ordering::SeqCst), 0, "still blocked");
    gate.open();
    let stats = fanout.finish().unwrap();
    assert_eq!(stats["lake"].rows, 150);
    assert!(
        stats["response"].rows < 150,
        "batches it had no room for were skipped"
    );
}

#[test]
fn each_sink_gets_only_what_it_takes() {
    let rt = runtime();
    let events_only = TestSink::new("events", Behaviour::Durable);
    let mut letters_only = TestSink::new("letters", Behaviour::Durable);
    letters_only.takes = Takes::DeadLetters;
    let fanout =
        Fanout::start(&[&events_only, &letters_only], &[Format::App], rt.handle()).unwrap();
    let (ack, waiter) = Ack::new();
    fanout.send(&batch(&ack, 0)).unwrap();
    fanout.send(&batch(&ack, 2)).unwrap();
    drop(ack);
    assert_eq!(outcome(waiter), Some(AckStatus::Delivered));
    fanout.finish().unwrap();
    assert_eq!(events_only.writes.load(Ordering::SeqCst), 2);
    assert_eq!(letters_only.writes.load(Ordering::SeqCst), 1);
}
