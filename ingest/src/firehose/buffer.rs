//! The delivery buffer: every accepted delivery is one file, written,
//! fsynced and renamed into place (and the directory fsynced) before the
//! endpoint answers 200, and deleted only once the sinks acknowledged its
//! records. A crash leaves complete deliveries and temporary files; opening
//! the buffer deletes the temporary ones (never answered 200) and hands back
//! the complete ones, oldest first, to be drained again.
//!
//! A delivery file is, little-endian: the magic `SLFH`, a version byte, the
//! request id (u16 length, bytes), the record count (u32), each record (u32
//! length, bytes), then the CRC-32 of everything before it.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

const MAGIC: &[u8; 4] = b"SLFH";
const VERSION: u8 = 1;
const SUFFIX: &str = "fhd";
const TEMP_SUFFIX: &str = "tmp";

/// An on-disk buffer of Firehose deliveries with a size limit.
#[derive(Debug)]
pub struct Buffer {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The sequence number the next delivery gets.
    next: u64,
    /// Bytes of the files in the buffer and of the writes under way.
    used: u64,
    /// Request ids of the deliveries in the buffer: a retry of one of them
    /// is answered without storing it again.
    request_ids: HashSet<Arc<str>>,
}

/// A delivery held in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its place in the buffer's order.
    pub seq: u64,
    /// Its file's size.
    pub bytes: u64,
    /// Its request id.
    pub request_id: Arc<str>,
}

/// A delivery read back from the buffer.
#[derive(Debug)]
pub struct Delivery {
    /// The file's bytes, which the records point into.
    pub data: Bytes,
    /// Each record's bytes in `data`, in the delivery's order.
    pub records: Vec<Range<usize>>,
}

/// A delivery file's bytes, built in memory as the records are decoded
/// into it, then written with one call.
#[derive(Debug)]
pub struct Image {
    request_id: Arc<str>,
    bytes: Vec<u8>,
    /// Each record's bytes in `bytes`, as pushed.
    records: Vec<Range<usize>>,
    count_at: usize,
}

impl Image {
    /// An image with no record yet, room for about `capacity` bytes of them.
    pub fn new(request_id: &str, capacity: usize) -> Result<Image, &'static str> {
        let id_len = u16::try_from(request_id.len()).map_err(|_| "request id too long")?;
        let mut bytes = Vec::with_capacity(capacity + 16 + request_id.len());
        bytes.extend_from_slice(MAGIC);
        bytes.push(VERSION);
        bytes.extend_from_slice(&id_len.to_le_bytes());
        bytes.extend_from_slice(request_id.as_bytes());
        let count_at = bytes.len();
        bytes.extend_from_slice(&[0; 4]);
        Ok(Image {
            request_id: request_id.into(),
            bytes,
            records: Vec::new(),
            count_at,
        })
    }

    /// Appends a record that `fill` writes into a buffer of `max` bytes,
    /// returning how many it wrote (at most `max`).
    pub fn push_with<E>(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<(), E> {
        let at = self.bytes.len();
        self.bytes.resize(at + 4 + max, 0);
        match fill(&mut self.bytes[at + 4..]) {
            Ok(n) => {
                let n = n.min(max);
                self.bytes.truncate(at + 4 + n);
                self.bytes[at..at + 4].copy_from_slice(&(n as u32).to_le_bytes());
                self.records.push(at + 4..at + 4 + n);
                Ok(())
            }
            Err(e) => {
                self.bytes.truncate(at);
                Err(e)
            }
        }
    }

    /// Appends a record.
    pub fn push(&mut self, record: &[u8]) {
        let _ = self.push_with(record.len(), |out| {
            out.copy_from_slice(record);
            Ok::<_, std::convert::Infallible>(record.len())
        });
    }

    /// Records in the image.
    pub fn records(&self) -> usize {
        self.records.len()
    }

    /// The file's bytes (count and checksum filled in) and the delivery
    /// they hold, which needs no decoding or checking again.
    fn finish(mut self) -> Delivery {
        let count = self.records.len() as u32;
        self.bytes[self.count_at..self.count_at + 4].copy_from_slice(&count.to_le_bytes());
        let crc = crc32fast::hash(&self.bytes);
        self.bytes.extend_from_slice(&crc.to_le_bytes());
        Delivery {
            data: Bytes::from(self.bytes),
            records: self.records,
        }
    }
}

/// Why a delivery was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Storing it would take the buffer past its limit.
    #[error("the buffer is full ({used} of {max} bytes); retry once the sinks catch up")]
    Full {
        /// Bytes in use.
        used: u64,
        /// The limit.
        max: u64,
    },
    /// Writing or syncing the file failed.
    #[error("writing the delivery buffer: {0}")]
    Io(#[from] io::Error),
}

/// Why a buffer file can't be read back as a delivery.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file can't be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is not a complete delivery (its checksum or layout is wrong).
    #[error("{path} is damaged: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

impl Buffer {
    /// Opens (creating) the buffer in `dir`: deletes unfinished writes and
    /// returns the deliveries an earlier run left, oldest first.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Buffer, Vec<Stored>)> {
        fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let Some((seq, suffix)) = parse_name(&path) else {
                continue;
            };
            match suffix {
                TEMP_SUFFIX => fs::remove_file(&path)?,
                SUFFIX => {
                    let bytes = entry.metadata()?.len();
                    let request_id = read_request_id(&path).unwrap_or_else(|_| "".into());
                    found.push(Stored {
                        seq,
                        bytes,
                        request_id,
                    });
                }
                _ => {}
            }
        }
        found.sort_by_key(|s| s.seq);
        let state = State {
            next: found.last().map_or(0, |s| s.seq + 1),
            used: found.iter().map(|s| s.bytes).sum(),
            request_ids: found.iter().map(|s| Arc::clone(&s.request_id)).collect(),
        };
        let buffer = Buffer {
            dir: dir.to_owned(),
            max_bytes,
            state: Mutex::new(state),
        };
        Ok((buffer, found))
    }

    /// Stores one delivery durably: its file written, fsynced and renamed
    /// into place. `None` when a delivery with this request id is already
    /// in the buffer (a retry of one stored before); else where it is and
    /// the delivery.
    pub fn store(&self, image: Image) -> Result<Option<(Stored, Delivery)>, StoreError> {
        let request_id = image.request_id.clone();
        let delivery = image.finish();
        let size = delivery.data.len() as u64;
        let seq = {
            let mut state = self.lock();
            if state.request_ids.contains(&request_id) {
                return Ok(None);
            }
            if state.used.saturating_add(size) > self.max_bytes {
                return Err(StoreError::Full {
                    used: state.used,
                    max: self.max_bytes,
                });
            }
            state.used += size;
            state.next += 1;
            state.next - 1
        };
        match self.write(seq, &delivery.data) {
            Ok(()) => {
                self.lock().request_ids.insert(Arc::clone(&request_id));
                let stored = Stored {
                    seq,
                    bytes: size,
                    request_id,
                };
                Ok(Some((stored, delivery)))
            }
            Err(e) => {
                self.lock().used -= size;
                let _ = fs::remove_file(self.path(seq, TEMP_SUFFIX));
                Err(StoreError::Io(e))
            }
        }
    }

    fn write(&self, seq: u64, bytes: &[u8]) -> io::Result<()> {
        let temp = self.path(seq, TEMP_SUFFIX);
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, self.path(seq, SUFFIX))?;
        File::open(&self.dir)?.sync_all()
    }

    /// Reads a stored delivery back.
    pub fn read(&self, stored: &Stored) -> Result<Delivery, ReadError> {
        let path = self.path(stored.seq, SUFFIX);
        let data = fs::read(&path).map_err(|source| ReadError::Io {
            path: path.clone(),
            source,
        })?;
        let records = decode(&data).map_err(|reason| ReadError::Damaged { path, reason })?;
        Ok(Delivery {
            data: Bytes::from(data),
            records,
        })
    }

    /// Deletes a delivery the sinks acknowledged and frees its bytes.
    pub fn remove(&self, stored: &Stored) -> io::Result<()> {
        let result = fs::remove_file(self.path(stored.seq, SUFFIX));
        let mut state = self.lock();
        state.used = state.used.saturating_sub(stored.bytes);
        state.request_ids.remove(&stored.request_id);
        result
    }

    /// Renames a damaged delivery out of the buffer's way (`.damaged`), so an
    /// operator can look at it, and frees its bytes.
    pub fn set_aside(&self, stored: &Stored) -> io::Result<PathBuf> {
        let to = self.path(stored.seq, "damaged");
        let result = fs::rename(self.path(stored.seq, SUFFIX), &to);
        let mut state = self.lock();
        state.used = state.used.saturating_sub(stored.bytes);
        state.request_ids.remove(&stored.request_id);
        result.map(|()| to)
    }

    /// Bytes in use (stored deliveries and writes under way).
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    fn path(&self, seq: u64, suffix: &str) -> PathBuf {
        self.dir.join(format!("{seq:020}.{suffix}"))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `00000000000000000042.fhd` → (42, "fhd").
fn parse_name(path: &Path) -> Option<(u64, &str)> {
    let name = path.file_name()?.to_str()?;
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 {
        return None;
    }
    Some((stem.parse().ok()?, suffix))
}

fn read_request_id(path: &Path) -> io::Result<Arc<str>> {
    let mut head = [0u8; 7];
    let mut file = File::open(path)?;
    file.read_exact(&mut head)?;
    let len = usize::from(u16::from_le_bytes([head[5], head[6]]));
    let mut id = vec![0u8; len];
    file.read_exact(&mut id)?;
    Ok(String::from_utf8_lossy(&id).into())
}

/// The record ranges of a delivery file, its layout and checksum checked.
fn decode(data: &[u8]) -> Result<Vec<Range<usize>>, &'static str> {
    let body_len = data
        .len()
        .checked_sub(4)
        .ok_or("shorter than its checksum")?;
    let (body, crc) = data.split_at(body_len);
    let expected = u32::from_le_bytes(crc.try_into().map_err(|_| "no checksum")?);
    if crc32fast::hash(body) != expected {
        return Err("checksum mismatch");
    }
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<Range<usize>, &'static str> {
        let end = at
            .checked_add(n)
            .filter(|&e| e <= body.len())
            .ok_or("truncated")?;
        let range = at..end;
        at = end;
        Ok(range)
    };
    if body[take(4)?] != MAGIC[..] || body[take(1)?] != [VERSION] {
        return Err("not a delivery file of this version");
    }
    let id_len = take(2)?;
    let id_len = usize::from(u16::from_le_bytes([
        body[id_len.start],
        body[id_len.start + 1],
    ]));
    take(id_len)?;
    let count = read_u32(body, take(4)?);
    let mut records = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let len = read_u32(body, take(4)?);
        records.push(take(len)?);
    }
    if at != body.len() {
        return Err("bytes after the last record");
    }
    Ok(records)
}

fn read_u32(body: &[u8], range: Range<usize>) -> usize {
    let mut word = [0u8; 4];
    word.copy_from_slice(&body[range]);
    u32::from_le_bytes(word) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, texts: &[&str]) -> Image {
        let mut image = Image::new(id, 64).expect("image");
        for t in texts {
            image.push(t.as_bytes());
        }
        image
    }

    fn store(buffer: &Buffer, id: &str, texts: &[&str]) -> Option<Stored> {
        buffer
            .store(image(id, texts))
            .expect("stores")
            .map(|(s, _)| s)
    }

    fn contents(buffer: &Buffer, stored: &Stored) -> Vec<String> {
        let delivery = buffer.read(stored).expect("reads");
        delivery
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(&delivery.data[r.clone()]).into_owned())
            .collect()
    }

    #[test]
    fn deliveries_survive_a_reopen_in_order_and_leave_once_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (buffer, left) = Buffer::open(dir.path(), 1 << 20).expect("opens");
        assert!(left.is_empty());
        let a = store(&buffer, "req-a", &["a1", "", "a3"]).expect("new");
        let b = store(&buffer, "req-b", &["b1"]).expect("new");
        assert_eq!(store(&buffer, "req-a", &["a1"]), None);
        assert_eq!(buffer.used(), a.bytes + b.bytes);
        // An unfinished write from a crash: never answered, so dropped.
        fs::write(dir.path().join(format!("{:020}.tmp", 7)), b"partial").expect("writes");
        drop(buffer);

        let (buffer, left) = Buffer::open(dir.path(), 1 << 20).expect("reopens");
        assert_eq!(left, vec![a.clone(), b.clone()]);
        assert_eq!(contents(&buffer, &a), ["a1", "", "a3"]);
        assert_eq!(contents(&buffer, &b), ["b1"]);
        assert!(!dir.path().join(format!("{:020}.tmp", 7)).exists());
        buffer.remove(&a).expect("removes");
        assert_eq!(buffer.used(), b.bytes);
        let c = store(&buffer, "req-c", &["c1"]).expect("new");
        assert!(
            c.seq > b.seq,
            "sequence numbers keep growing after a reopen"
        );
    }

    #[test]
    fn a_full_buffer_refuses_until_space_is_freed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (buffer, _) = Buffer::open(dir.path(), 100).expect("opens");
        let first = store(&buffer, "r1", &[&"x".repeat(60)]).expect("new");
        let err = buffer
            .store(image("r2", &[&"y".repeat(60)]))
            .expect_err("full");
        assert!(matches!(err, StoreError::Full { max: 100, .. }), "{err}");
        buffer.remove(&first).expect("removes");
        store(&buffer, "r2", &[&"y".repeat(60)]).expect("new");
    }

    #[test]
    fn a_damaged_file_is_reported_never_read_as_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (buffer, _) = Buffer::open(dir.path(), 1 << 20).expect("opens");
        let stored = store(&buffer, "r", &["hello"]).expect("new");
        let path = dir.path().join(format!("{:020}.fhd", stored.seq));
        let mut bytes = fs::read(&path).expect("reads");
        let at = bytes.len() - 6;
        bytes[at] ^= 0xff;
        fs::write(&path, &bytes).expect("writes");
        let err = buffer.read(&stored).expect_err("damaged");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        let aside = buffer.set_aside(&stored).expect("sets aside");
        assert!(aside.exists() && !path.exists());
        assert_eq!(buffer.used(), 0);
    }
}
