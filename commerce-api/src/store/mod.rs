//! The order store: SQLite in WAL mode. One writer thread places orders in
//! batches, one transaction and one fsync per batch (group commit), and
//! answers each request only after its batch is durable; a small pool of
//! read-only connections serves the GET routes.

mod checkpoint;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use serde::Serialize;
use tokio::sync::{Semaphore, oneshot};

use crate::config::StorageConfig;
use crate::order::{Item, NewOrder, Order};

pub use writer::Placed;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed.
    #[error("{path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The file was written by a newer build.
    #[error("{path} has schema version {found}; this build knows up to {known}")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// Ours.
        known: i64,
    },
    /// A stored order's lines are not the JSON this build writes.
    #[error("order {id} has unreadable items: {source}")]
    Corrupt {
        /// The order.
        id: String,
        /// Why.
        source: serde_json::Error,
    },
    /// The writer thread has stopped.
    #[error("the order writer has stopped")]
    Stopped,
}

/// Why an order was not placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// The idempotency key was used with another request.
    #[error("idempotency key already used for order {order_id} with another request")]
    Conflict {
        /// The first request's order.
        order_id: String,
    },
    /// A line names a product the catalog lacks.
    #[error("no product {product_id:?}")]
    UnknownProduct {
        /// The line's index.
        line: usize,
        /// What it named.
        product_id: String,
    },
    /// A line asks for more than is in stock.
    #[error("{product_id} has {available} in stock")]
    OutOfStock {
        /// The line's index.
        line: usize,
        /// Which product.
        product_id: String,
        /// Units left.
        available: i64,
    },
    /// A line's price is not the catalog's.
    #[error("{product_id} costs {price_krw} won")]
    PriceChanged {
        /// The line's index.
        line: usize,
        /// Which product.
        product_id: String,
        /// The catalog's price.
        price_krw: i64,
    },
    /// The writer's queue is full.
    #[error("too many orders waiting to be written")]
    Busy,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A catalog product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    /// `PROD001`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Unit price in won.
    pub price_krw: i64,
    /// Units left.
    pub stock: i64,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    orders: mpsc::SyncSender<writer::Command>,
    writer_alive: Arc<AtomicBool>,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<checkpoint::Checkpointer>>,
    readers: Mutex<Vec<Connection>>,
    read_permits: Semaphore,
}

impl Store {
    /// Opens (creating, migrating and seeding as needed) the database at
    /// `path` and starts the writer thread.
    pub fn open(path: &Path, config: &StorageConfig) -> Result<Store, StoreError> {
        let fail = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "wal")
            .map_err(fail)?;
        // In WAL mode, FULL syncs the log at every commit: a 201 survives
        // power loss, not only a crash of this process.
        conn.pragma_update(None, "synchronous", config.synchronous.as_str())
            .map_err(fail)?;
        conn.busy_timeout(config.busy_timeout).map_err(fail)?;
        // Checkpoints run on their own thread (checkpoint.rs), never inside
        // a commit; the index pages the writer touches stay in its cache.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(fail)?;
        conn.pragma_update(None, "cache_size", -65_536)
            .map_err(fail)?;
        conn.pragma_update(None, "journal_size_limit", 64 << 20)
            .map_err(fail)?;
        if let Err(found) = schema::migrate(&mut conn).map_err(fail)? {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found,
                known: schema::VERSION,
            });
        }
        let readers = (0..config.read_connections)
            .map(|_| {
                let r = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                r.busy_timeout(config.busy_timeout)?;
                Ok(r)
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(fail)?;
        let commits = Arc::new(AtomicU64::new(0));
        let checkpointer = checkpoint::Checkpointer::start(
            path,
            config.busy_timeout,
            config.wal_limit_mb.saturating_mul(1 << 20),
            Arc::clone(&commits),
        )
        .map_err(fail)?;
        let (orders, queue) = mpsc::sync_channel(config.queue);
        let writer_alive = Arc::new(AtomicBool::new(true));
        let writer = writer::Writer::new(
            conn,
            path.to_owned(),
            config.max_batch,
            config.commit_delay,
            commits,
        )
        .map_err(fail)?;
        let alive = Arc::clone(&writer_alive);
        let handle = std::thread::Builder::new()
            .name("order-writer".into())
            .spawn(move || {
                writer.run(queue);
                alive.store(false, Ordering::Release);
            })
            .map_err(|e| StoreError::Sqlite {
                path: path.to_owned(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                orders,
                writer_alive,
                writer: Mutex::new(Some(handle)),
                checkpointer: Mutex::new(Some(checkpointer)),
                read_permits: Semaphore::new(readers.len()),
                readers: Mutex::new(readers),
            }),
        })
    }

    /// Places an order; returns once it is durable (or known from its key).
    pub async fn place(&self, order: NewOrder) -> Result<Placed, PlaceError> {
        let (reply, answer) = oneshot::channel();
        match self
            .inner
            .orders
            .try_send(writer::Command::Place { order, reply })
        {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => return Err(PlaceError::Busy),
            Err(mpsc::TrySendError::Disconnected(_)) => {
                return Err(StoreError::Stopped.into());
            }
        }
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// One order by id.
    pub async fn order(&self, id: String) -> Result<Option<Order>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?1"))?
                .query_row([&id], order_row)
                .optional()
        })
        .await?
        .map(Stored::into_order)
        .transpose()
    }

    /// A user's orders, newest first, older than the order `before` if given.
    pub async fn user_orders(
        &self,
        user_id: String,
        before: Option<String>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let rows = self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {ORDER_COLUMNS} FROM orders
                     WHERE user_id = ?1 AND (?2 IS NULL OR id < ?2)
                     ORDER BY id DESC LIMIT ?3"
                ))?;
                stmt.query_map(params![user_id, before, limit as i64], order_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        rows.into_iter().map(Stored::into_order).collect()
    }

    /// The catalog.
    pub async fn products(&self) -> Result<Vec<Product>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT id, name, price_krw, stock FROM products ORDER BY id")?
                .query_map([], product_row)?
                .collect()
        })
        .await
    }

    /// One product.
    pub async fn product(&self, id: String) -> Result<Option<Product>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT id, name, price_krw, stock FROM products WHERE id = ?1")?
                .query_row([&id], product_row)
                .optional()
        })
        .await
    }

    /// Whether orders can be written and the database read.
    pub async fn ready(&self) -> Result<(), StoreError> {
        if !self.inner.writer_alive.load(Ordering::Acquire) {
            return Err(StoreError::Stopped);
        }
        self.read(|conn| {
            conn.query_row("SELECT count(*) FROM products", [], |r| r.get::<_, i64>(0))
        })
        .await
        .map(drop)
    }

    /// Lets the writer finish the orders queued so far, then stops it and
    /// waits for it (blocking). Orders sent later fail with
    /// [`StoreError::Stopped`].
    pub fn close(&self) {
        // The other connections first: the last one to close checkpoints
        // the log into the database file and removes it.
        let checkpointer = self
            .inner
            .checkpointer
            .lock()
            .ok()
            .and_then(|mut c| c.take());
        if let Some(checkpointer) = checkpointer {
            checkpointer.stop();
        }
        if let Ok(mut readers) = self.inner.readers.lock() {
            readers.clear();
        }
        let handle = self.inner.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = self.inner.orders.send(writer::Command::Stop);
            let _ = handle.join();
        }
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let _permit = self
            .inner
            .read_permits
            .acquire()
            .await
            .map_err(|_| StoreError::Stopped)?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let conn = inner
                .readers
                .lock()
                .map_err(|_| StoreError::Stopped)?
                .pop()
                .ok_or(StoreError::Stopped)?;
            let result = f(&conn);
            if let Ok(mut pool) = inner.readers.lock() {
                pool.push(conn);
            }
            result.map_err(|source| StoreError::Sqlite {
                path: inner.path.clone(),
                source,
            })
        })
        .await
        .map_err(|_| StoreError::Stopped)?
    }
}

const ORDER_COLUMNS: &str =
    "id, user_id, idempotency_key, fingerprint, total_krw, items, created_at";

/// An order row before its lines are decoded.
struct Stored {
    order: Order,
    fingerprint: i64,
    items: String,
}

impl Stored {
    fn into_order(self) -> Result<Order, StoreError> {
        let mut order = self.order;
        order.items = serde_json::from_str::<Vec<Item>>(&self.items).map_err(|source| {
            StoreError::Corrupt {
                id: order.id.clone(),
                source,
            }
        })?;
        Ok(order)
    }
}

fn order_row(r: &Row<'_>) -> rusqlite::Result<Stored> {
    Ok(Stored {
        order: Order {
            id: r.get(0)?,
            user_id: r.get(1)?,
            idempotency_key: r.get(2)?,
            total_krw: r.get(4)?,
            items: Vec::new(),
            currency: "KRW".to_owned(),
            created_at: r.get(6)?,
        },
        fingerprint: r.get(3)?,
        items: r.get(5)?,
    })
}

fn product_row(r: &Row<'_>) -> rusqlite::Result<Product> {
    Ok(Product {
        id: r.get(0)?,
        name: r.get(1)?,
        price_krw: r.get(2)?,
        stock: r.get(3)?,
    })
}
