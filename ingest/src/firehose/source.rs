//! The running source: the endpoint on the pipeline's runtime, and on the
//! source's thread the drainer, which reads stored deliveries in order,
//! hands their records over as batches and deletes each delivery once the
//! sinks acknowledged all of it.

use std::fs::File;
use std::io::BufReader;
use std::net::TcpListener as StdListener;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::buffer::{Buffer, Delivery, Stored};
use super::config::FirehoseConfig;
use super::endpoint::{self, Endpoint};
use crate::kinesis::aggregate::{UNPACK_FACTOR, Unpacked, unpack};
use crate::source::{self as contract, Finished, KeyError, Outstanding, ReadStats, SourceContext};
use crate::{Ack, AckStatus, AckWaiter, Batch, Flaw, Format, Origin, Record, SourceError};

/// How long the drainer waits for a delivery before it looks at the stop
/// flag and the acknowledgements again.
const POLL: Duration = Duration::from_millis(50);

impl contract::SourceSpec for FirehoseConfig {
    fn format(&self) -> Format {
        self.format
    }

    fn check(&self) -> Result<(), KeyError> {
        FirehoseConfig::check(self)
    }

    fn build(&self) -> Result<Box<dyn contract::Source>, SourceError> {
        let error = |message: String| SourceError::Firehose {
            listen: self.listen.clone(),
            message,
        };
        let addr = self.listen_addr().map_err(|e| error(e.message))?;
        let (buffer, left) = Buffer::open(&self.buffer_dir, self.buffer_max_bytes)
            .map_err(|e| error(format!("buffer_dir {}: {e}", self.buffer_dir.display())))?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key).map_err(error)?),
            _ => None,
        };
        let listener = StdListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| error(format!("listening on {addr}: {e}")))?;
        Ok(Box::new(FirehoseSource {
            config: self.clone(),
            buffer: Arc::new(buffer),
            left,
            listener,
            tls,
        }))
    }
}

/// A TLS acceptor for the PEM certificate chain and key.
fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let read = |path: &Path| {
        File::open(path)
            .map(BufReader::new)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_reader_iter(read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("tls_cert {}: no certificate in it", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_reader(read(key)?)
        .map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, private))
        .map_err(|e| format!("tls_cert and tls_key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

struct FirehoseSource {
    config: FirehoseConfig,
    buffer: Arc<Buffer>,
    /// Deliveries an earlier run stored and the sinks never acknowledged.
    left: Vec<Stored>,
    listener: StdListener,
    tls: Option<TlsAcceptor>,
}

impl contract::Source for FirehoseSource {
    fn run(self: Box<Self>, ctx: &SourceContext) -> Result<Finished, SourceError> {
        let FirehoseSource {
            config,
            buffer,
            left,
            listener,
            tls,
        } = *self;
        if !left.is_empty() {
            tracing::info!(
                deliveries = left.len(),
                bytes = buffer.used(),
                "firehose: draining deliveries stored by an earlier run"
            );
        }
        let (stored_tx, stored_rx) = crossbeam_channel::unbounded();
        for stored in left {
            let _ = stored_tx.send(Handoff {
                stored,
                delivery: None,
            });
        }
        let refusing = Arc::new(AtomicBool::new(false));
        // With `until_caught_up` the source only drains what an earlier run
        // left, without listening: the channel closes once that is queued.
        let server = if ctx.until_caught_up {
            drop(stored_tx);
            None
        } else {
            if config.access_key.is_none() {
                tracing::warn!(
                    listen = config.listen,
                    "firehose: no access_key set: every request is accepted"
                );
            }
            let endpoint = Arc::new(Endpoint {
                access_key: config.access_key.as_ref().map(|k| k.as_bytes().to_vec()),
                max_body_bytes: config.max_body_bytes,
                buffer: Arc::clone(&buffer),
                stored: stored_tx,
                refusing: Arc::clone(&refusing),
                shutdown: ctx.shutdown.clone(),
            });
            let listener = {
                let _guard = ctx.runtime.enter();
                tokio::net::TcpListener::from_std(listener).map_err(|e| SourceError::Firehose {
                    listen: config.listen.clone(),
                    message: e.to_string(),
                })?
            };
            tracing::info!(
                listen = config.listen,
                tls = tls.is_some(),
                "firehose endpoint listening"
            );
            let router = endpoint::router(endpoint);
            Some(
                ctx.runtime
                    .spawn(endpoint::serve(listener, tls, router, ctx.shutdown.clone())),
            )
        };
        let mut drainer = Drainer {
            config: &config,
            buffer: Arc::clone(&buffer),
            refusing,
            in_flight: Vec::new(),
            failed: 0,
            stats: ReadStats::default(),
        };
        let drained = drainer.drain(&stored_rx, ctx);
        if let Some(server) = server {
            // Stops on the same flag; requests under way are answered first.
            let _ = ctx.runtime.block_on(server);
        }
        drained?;
        Ok(Finished {
            stats: drainer.stats,
            outstanding: Box::new(Trim {
                buffer,
                in_flight: drainer.in_flight,
                failed: drainer.failed,
            }),
        })
    }
}

/// A stored delivery on its way to the drainer, with its records when the
/// endpoint still had them in memory (else the drainer reads the file).
pub(crate) struct Handoff {
    pub stored: Stored,
    pub delivery: Option<Delivery>,
}

/// A delivery handed to the pipeline, waiting for its batches' acks.
struct InFlight {
    stored: Stored,
    waiters: Vec<AckWaiter>,
    /// False when the source stopped before all of it was handed over: it
    /// stays in the buffer to be drained again.
    whole: bool,
}

struct Drainer<'a> {
    config: &'a FirehoseConfig,
    buffer: Arc<Buffer>,
    refusing: Arc<AtomicBool>,
    in_flight: Vec<InFlight>,
    /// Batches the sinks failed.
    failed: u64,
    stats: ReadStats,
}

impl Drainer<'_> {
    /// Hands over every stored delivery until the pipeline stops (or, when
    /// the channel closes, once all are handed over).
    fn drain(
        &mut self,
        stored: &Receiver<Handoff>,
        ctx: &SourceContext,
    ) -> Result<(), SourceError> {
        while !ctx.shutdown.is_set() {
            self.trim();
            match stored.recv_timeout(POLL) {
                Ok(next) => self.hand_over(next, ctx)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        Ok(())
    }

    fn hand_over(&mut self, next: Handoff, ctx: &SourceContext) -> Result<(), SourceError> {
        let Handoff { stored, delivery } = next;
        let read = match delivery {
            Some(delivery) => Ok(delivery),
            None => self.buffer.read(&stored),
        };
        let delivery = match read {
            Ok(delivery) => delivery,
            Err(e) => {
                // Answered 200 and then damaged on disk: nothing to parse,
                // so kept aside for an operator rather than dropped.
                metrics::counter!("seclake_firehose_damaged_deliveries_total").increment(1);
                match self.buffer.set_aside(&stored) {
                    Ok(path) => tracing::error!("firehose: {e}; moved to {}", path.display()),
                    Err(io) => tracing::error!("firehose: {e}; setting it aside: {io}"),
                }
                return Ok(());
            }
        };
        let batches = batches(
            &delivery,
            &stored.request_id,
            self.config.format,
            self.config.max_record_bytes,
        );
        let mut flight = InFlight {
            stored,
            waiters: Vec::with_capacity(batches.len()),
            whole: true,
        };
        for mut batch in batches {
            let (ack, waiter) = Ack::new();
            batch.ack = ack;
            self.stats.records += batch.records.len() as u64;
            self.stats.bytes += batch.data.len() as u64;
            self.stats.batches += 1;
            let mut next = Some(batch);
            while let Some(batch) = next.take() {
                if ctx.shutdown.is_set() {
                    flight.whole = false;
                    break;
                }
                next = ctx.out.send_timeout(batch, POLL)?;
                if next.is_some() {
                    self.trim();
                }
            }
            if !flight.whole {
                break;
            }
            flight.waiters.push(waiter);
        }
        self.in_flight.push(flight);
        Ok(())
    }

    /// Deletes the deliveries the sinks acknowledged in full; after a failed
    /// one the endpoint refuses new deliveries (the pipeline is stopping).
    fn trim(&mut self) {
        let buffer = &self.buffer;
        let refusing = &self.refusing;
        let failed = &mut self.failed;
        self.in_flight.retain_mut(|flight| {
            flight.waiters.retain_mut(|w| match w.try_status() {
                Some(AckStatus::Delivered) => false,
                Some(AckStatus::Failed) => {
                    *failed += 1;
                    refusing.store(true, Ordering::Release);
                    flight.whole = false;
                    false
                }
                None => true,
            });
            if !flight.waiters.is_empty() {
                return true;
            }
            if flight.whole {
                remove(buffer, &flight.stored);
            }
            false
        });
    }
}

fn remove(buffer: &Buffer, stored: &Stored) {
    if let Err(e) = buffer.remove(stored) {
        tracing::warn!("firehose: deleting delivered {}: {e}", stored.request_id);
    }
    metrics::gauge!("seclake_firehose_buffer_bytes").set(buffer.used() as f64);
}

/// The deliveries still in flight when the source stopped.
struct Trim {
    buffer: Arc<Buffer>,
    in_flight: Vec<InFlight>,
    /// Batches the sinks failed before the source stopped.
    failed: u64,
}

impl Outstanding for Trim {
    fn settle(self: Box<Self>) -> u64 {
        let mut failed = self.failed;
        for flight in self.in_flight {
            let mut delivered = flight.whole;
            for waiter in flight.waiters {
                if waiter.wait_blocking() == AckStatus::Failed {
                    failed += 1;
                    delivered = false;
                }
            }
            if delivered {
                remove(&self.buffer, &flight.stored);
            }
        }
        failed
    }
}

/// A delivery's records as batches of about `BATCH_BYTES` each. Each
/// Firehose record may hold several lines (one event each) or a CloudWatch
/// Logs subscription payload; every event keeps its record's index. Plain
/// records are not copied: their batches are slices of the delivery's bytes.
fn batches(delivery: &Delivery, request_id: &Arc<str>, format: Format, max: usize) -> Vec<Batch> {
    let mut batches = Batches {
        delivery: &delivery.data,
        request_id,
        format,
        max,
        batch_bytes: crate::file::default_batch_bytes(),
        out: Vec::new(),
        records: Vec::new(),
        bytes: Pending::Empty,
    };
    for (index, range) in delivery.records.iter().enumerate() {
        let seq = index as u64;
        let payload = &delivery.data[range.clone()];
        match unpack(payload, max.saturating_mul(UNPACK_FACTOR)) {
            Unpacked::Plain => for_each_line(payload, |line| {
                batches.in_place(range.start + line.start, range.start + line.end, seq, None);
            }),
            Unpacked::Records(users) => {
                for user in &users {
                    for_each_line(&user.data, |line| {
                        batches.copied(&user.data[line], seq, None);
                    });
                }
            }
            Unpacked::Flawed(flaw) => {
                batches.in_place(range.start, range.end, seq, Some(Flaw::Payload(flaw)));
            }
            Unpacked::Empty => {}
        }
        if batches.bytes.len() >= batches.batch_bytes {
            batches.cut();
        }
    }
    batches.cut();
    batches.out
}

/// Builds one delivery's batches.
struct Batches<'a> {
    delivery: &'a Bytes,
    request_id: &'a Arc<str>,
    format: Format,
    max: usize,
    batch_bytes: usize,
    out: Vec<Batch>,
    records: Vec<Record>,
    bytes: Pending,
}

/// Where the bytes of the batch being built are.
enum Pending {
    Empty,
    /// `delivery[start..end]`.
    InPlace {
        start: usize,
        end: usize,
    },
    /// Records unpacked from the payload (KPL, CloudWatch Logs).
    Copied(Vec<u8>),
}

impl Pending {
    fn len(&self) -> usize {
        match self {
            Pending::Empty => 0,
            Pending::InPlace { start, end } => end - start,
            Pending::Copied(data) => data.len(),
        }
    }
}

impl Batches<'_> {
    /// Adds `delivery[start..end]`, cut at `max` bytes.
    fn in_place(&mut self, start: usize, end: usize, seq: u64, flaw: Option<Flaw>) {
        let (end, flaw) = self.cap(start, end, flaw);
        if matches!(self.bytes, Pending::Copied(_)) {
            self.cut();
        }
        let base = match self.bytes {
            Pending::InPlace { start: base, .. } => base,
            _ => start,
        };
        self.bytes = Pending::InPlace { start: base, end };
        self.records.push(Record {
            start: (start - base) as u32,
            end: (end - base) as u32,
            seq,
            flaw,
        });
    }

    /// Adds bytes that are not in the delivery as they are, cut at `max`.
    fn copied(&mut self, bytes: &[u8], seq: u64, flaw: Option<Flaw>) {
        let (end, flaw) = self.cap(0, bytes.len(), flaw);
        if matches!(self.bytes, Pending::InPlace { .. }) {
            self.cut();
        }
        let mut data = match std::mem::replace(&mut self.bytes, Pending::Empty) {
            Pending::Copied(data) => data,
            _ => Vec::new(),
        };
        let start = data.len();
        data.extend_from_slice(&bytes[..end]);
        self.records.push(Record {
            start: start as u32,
            end: data.len() as u32,
            seq,
            flaw,
        });
        self.bytes = Pending::Copied(data);
    }

    /// The end of a record starting at `start`, at most `max` bytes long.
    fn cap(&self, start: usize, end: usize, flaw: Option<Flaw>) -> (usize, Option<Flaw>) {
        if end - start > self.max {
            (start + self.max, flaw.or(Some(Flaw::Truncated)))
        } else {
            (end, flaw)
        }
    }

    /// Ends the batch being built, if it holds any record.
    fn cut(&mut self) {
        let data = match std::mem::replace(&mut self.bytes, Pending::Empty) {
            Pending::Empty => return,
            Pending::InPlace { start, end } => self.delivery.slice(start..end),
            Pending::Copied(data) => data.into(),
        };
        self.out.push(Batch {
            format: self.format,
            origin: Origin::Firehose {
                request_id: Arc::clone(self.request_id),
            },
            data,
            records: std::mem::take(&mut self.records),
            // Replaced by the drainer's own before the batch is sent.
            ack: Ack::detached(),
        });
    }
}

/// Calls `f` with the range of each line of `bytes` that is not blank,
/// without its `\n` or `\r\n`, as the file source reads lines.
fn for_each_line(bytes: &[u8], mut f: impl FnMut(Range<usize>)) {
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len())) {
        let line = start..end;
        start = end + 1;
        let line = if line.end > line.start && bytes[line.end - 1] == b'\r' {
            line.start..line.end - 1
        } else {
            line
        };
        if !bytes[line.clone()].iter().all(u8::is_ascii_whitespace) {
            f(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_into_lines_that_keep_their_record_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (buffer, _) = Buffer::open(dir.path(), 1 << 20).expect("opens");
        let records = vec![
            b"{\"a\":1}\n".to_vec(),
            b"{\"b\":2}\r\n\n{\"c\":3}".to_vec(),
            b"   \n".to_vec(),
            b"0123456789".to_vec(),
        ];
        let mut image = super::super::buffer::Image::new("req", 64).expect("image");
        for record in &records {
            image.push(record);
        }
        let (stored, _) = buffer.store(image).expect("stores").expect("new");
        let delivery = buffer.read(&stored).expect("reads");
        let batches = batches(&delivery, &"req".into(), Format::Waf, 8);
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        let lines: Vec<(&[u8], u64, Option<Flaw>)> =
            b.iter().map(|(bytes, r)| (bytes, r.seq, r.flaw)).collect();
        assert_eq!(
            lines,
            vec![
                (&b"{\"a\":1}"[..], 0, None),
                (&b"{\"b\":2}"[..], 1, None),
                (&b"{\"c\":3}"[..], 1, None),
                (&b"01234567"[..], 3, Some(Flaw::Truncated)),
            ]
        );
        assert_eq!(b.position(2).to_string(), "firehose:req#1");
    }

    #[test]
    fn plain_records_stay_in_the_delivery_and_unpacked_ones_are_copied_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (buffer, _) = Buffer::open(dir.path(), 1 << 20).expect("opens");
        let kpl = crate::kinesis::aggregate::aggregate(&[("k", b"{\"k\":1}\n{\"k\":2}")]);
        let mut image = super::super::buffer::Image::new("req", 256).expect("image");
        image.push(b"{\"a\":1}\n{\"a\":2}");
        image.push(&kpl);
        image.push(b"{\"b\":1}\n");
        image.push(b"{\"b\":2}");
        let (stored, _) = buffer.store(image).expect("stores").expect("new");
        let delivery = buffer.read(&stored).expect("reads");
        let batches = batches(&delivery, &"req".into(), Format::Waf, 1024);
        let seen: Vec<Vec<(&[u8], u64)>> = batches
            .iter()
            .map(|b| b.iter().map(|(bytes, r)| (bytes, r.seq)).collect())
            .collect();
        assert_eq!(
            seen,
            vec![
                vec![(&b"{\"a\":1}"[..], 0), (&b"{\"a\":2}"[..], 0)],
                vec![(&b"{\"k\":1}"[..], 1), (&b"{\"k\":2}"[..], 1)],
                vec![(&b"{\"b\":1}"[..], 2), (&b"{\"b\":2}"[..], 3)],
            ]
        );
        // The plain batches share the delivery's memory.
        let within = |b: &Batch| {
            let (d, b) = (delivery.data.as_ptr_range(), b.data.as_ptr_range());
            d.start <= b.start && b.end <= d.end
        };
        assert!(within(&batches[0]) && within(&batches[2]));
        assert!(!within(&batches[1]));
    }
}
