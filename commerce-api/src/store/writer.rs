//! The one thread that writes orders: group commit.
//!
//! It takes every order waiting (up to `max_batch`), checks and inserts them
//! in one transaction, commits (one fsync of the log), and only then answers
//! them all. Idempotency keys are checked inside that transaction, so two
//! requests with one key, in one batch or in two, place one order.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::{ORDER_COLUMNS, PlaceError, StoreError, order_row};
use crate::order::{NewOrder, Order};

/// What a placed order was.
#[derive(Debug, Clone)]
pub enum Placed {
    /// A new order (201).
    Created(Order),
    /// The order an earlier request with the same key and body placed (200).
    Replayed(Order),
}

pub(super) enum Command {
    Place {
        order: NewOrder,
        reply: oneshot::Sender<Result<Placed, PlaceError>>,
    },
    Stop,
}

struct Stock {
    price_krw: i64,
    units: i64,
}

pub(super) struct Writer {
    conn: Connection,
    path: PathBuf,
    max_batch: usize,
    commit_delay: Duration,
    commits: Arc<AtomicU64>,
    catalog: HashMap<String, Stock>,
}

type Reply = (
    oneshot::Sender<Result<Placed, PlaceError>>,
    Result<Placed, PlaceError>,
);

impl Writer {
    pub(super) fn new(
        conn: Connection,
        path: PathBuf,
        max_batch: usize,
        commit_delay: Duration,
        commits: Arc<AtomicU64>,
    ) -> rusqlite::Result<Writer> {
        let mut writer = Writer {
            conn,
            path,
            max_batch,
            commit_delay,
            commits,
            catalog: HashMap::new(),
        };
        writer.load_catalog()?;
        Ok(writer)
    }

    fn load_catalog(&mut self) -> rusqlite::Result<()> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, price_krw, stock FROM products")?;
        self.catalog = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Stock {
                        price_krw: r.get(1)?,
                        units: r.get(2)?,
                    },
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(())
    }

    pub(super) fn run(mut self, queue: mpsc::Receiver<Command>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        let mut replies: Vec<Reply> = Vec::with_capacity(self.max_batch);
        let mut loaded = false;
        loop {
            let mut stop = false;
            match queue.recv() {
                Ok(Command::Place { order, reply }) => batch.push((order, reply)),
                Ok(Command::Stop) | Err(_) => stop = true,
            }
            if loaded && !stop && !self.commit_delay.is_zero() {
                // Sleeping, not waiting on the queue: senders wake nobody
                // while the batch gathers.
                std::thread::sleep(self.commit_delay);
            }
            while !stop && batch.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(Command::Place { order, reply }) => batch.push((order, reply)),
                    Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => stop = true,
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            loaded = batch.len() > 1;
            if !batch.is_empty() {
                self.write(&mut batch, &mut replies);
                for (reply, result) in replies.drain(..) {
                    // The request may have timed out and gone; its order stands.
                    let _ = reply.send(result);
                }
            }
            if stop {
                return;
            }
        }
    }

    fn write(
        &mut self,
        batch: &mut Vec<(NewOrder, oneshot::Sender<Result<Placed, PlaceError>>)>,
        replies: &mut Vec<Reply>,
    ) {
        let started = std::time::Instant::now();
        let size = batch.len();
        // Every request gets its answer slot first, so none goes unanswered
        // whatever fails below.
        let orders: Vec<NewOrder> = batch
            .drain(..)
            .map(|(order, reply)| {
                replies.push((reply, Err(PlaceError::Store(StoreError::Stopped))));
                order
            })
            .collect();
        let outcome = self.transaction(orders, replies);
        self.commits.fetch_add(1, Ordering::Relaxed);
        if let Err(source) = outcome {
            tracing::error!(path = %self.path.display(), "order batch rolled back: {source}");
            if let Err(e) = self.load_catalog() {
                tracing::error!("reloading the catalog's stock failed: {e}");
            }
            // Conflicts and replays may rest on orders of this very batch:
            // the whole batch failed, and a retry with the same key is safe.
            for (_, result) in replies.iter_mut() {
                *result = Err(PlaceError::Store(StoreError::Sqlite {
                    path: self.path.clone(),
                    source: rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                        Some(format!("the batch's commit failed: {source}")),
                    ),
                }));
            }
        }
        metrics::histogram!("commerce_order_batch_size").record(size as f64);
        metrics::histogram!("commerce_order_commit_seconds")
            .record(started.elapsed().as_secs_f64());
    }

    fn transaction(
        &mut self,
        orders: Vec<NewOrder>,
        replies: &mut [Reply],
    ) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut taken: HashMap<String, i64> = HashMap::new();
        {
            let mut by_key = tx.prepare_cached(&format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE idempotency_key = ?1"
            ))?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO orders (id, user_id, idempotency_key, fingerprint, total_krw, items, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (order, (_, answer)) in orders.into_iter().zip(replies.iter_mut()) {
                let fingerprint = order.fingerprint();
                if let Some(key) = &order.idempotency_key
                    && let Some(stored) = by_key.query_row([key], order_row).optional()?
                {
                    let result = if stored.fingerprint == fingerprint {
                        stored
                            .into_order()
                            .map(Placed::Replayed)
                            .map_err(PlaceError::from)
                    } else {
                        Err(PlaceError::Conflict {
                            order_id: stored.order.id,
                        })
                    };
                    *answer = result;
                    continue;
                }
                let total = match reserve(&mut self.catalog, &order, &mut taken) {
                    Ok(total) => total,
                    Err(e) => {
                        *answer = Err(e);
                        continue;
                    }
                };
                let placed = Order {
                    id: uuid::Uuid::now_v7().to_string(),
                    user_id: order.user_id,
                    items: order.items,
                    total_krw: total,
                    currency: "KRW".to_owned(),
                    idempotency_key: order.idempotency_key,
                    created_at: chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                };
                let items = serde_json::to_string(&placed.items)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                insert.execute(params![
                    placed.id,
                    placed.user_id,
                    placed.idempotency_key,
                    fingerprint,
                    placed.total_krw,
                    items,
                    placed.created_at,
                ])?;
                *answer = Ok(Placed::Created(placed));
            }
            let mut take =
                tx.prepare_cached("UPDATE products SET stock = stock - ?1 WHERE id = ?2")?;
            for (product, units) in &taken {
                take.execute(params![units, product])?;
            }
        }
        tx.commit()
    }
}

/// Checks an order's lines against the catalog and takes its units from the
/// stock; returns the order's total in won.
fn reserve(
    catalog: &mut HashMap<String, Stock>,
    order: &NewOrder,
    taken: &mut HashMap<String, i64>,
) -> Result<i64, PlaceError> {
    let mut wanted: HashMap<&str, i64> = HashMap::new();
    let mut total: i64 = 0;
    for (line, item) in order.items.iter().enumerate() {
        let Some(stock) = catalog.get(&item.product_id) else {
            return Err(PlaceError::UnknownProduct {
                line,
                product_id: item.product_id.clone(),
            });
        };
        if i64::try_from(item.price).ok() != Some(stock.price_krw) {
            return Err(PlaceError::PriceChanged {
                line,
                product_id: item.product_id.clone(),
                price_krw: stock.price_krw,
            });
        }
        let units = wanted.entry(&item.product_id).or_default();
        *units += i64::from(item.quantity);
        if *units > stock.units {
            return Err(PlaceError::OutOfStock {
                line,
                product_id: item.product_id.clone(),
                available: stock.units,
            });
        }
        total = total.saturating_add(stock.price_krw.saturating_mul(i64::from(item.quantity)));
    }
    for (product, units) in wanted {
        if let Some(stock) = catalog.get_mut(product) {
            stock.units -= units;
        }
        *taken.entry(product.to_owned()).or_default() += units;
    }
    Ok(total)
}
