//! The database's tables, created and upgraded in order; the version applied
//! last is SQLite's `user_version`.

use rusqlite::Connection;

/// Each step moves the schema one version up; never edit a released step,
/// add one.
const MIGRATIONS: &[&str] = &[
    // 1: products with the seed catalog, orders (immutable once placed; the
    // lines are a JSON array, read and written as a whole).
    r#"
    CREATE TABLE products (
        id        TEXT PRIMARY KEY,
        name      TEXT NOT NULL,
        price_krw INTEGER NOT NULL CHECK (price_krw > 0),
        stock     INTEGER NOT NULL CHECK (stock >= 0)
    ) STRICT;
    CREATE TABLE orders (
        id              TEXT PRIMARY KEY,
        user_id         TEXT NOT NULL,
        idempotency_key TEXT UNIQUE,
        fingerprint     INTEGER NOT NULL,
        total_krw       INTEGER NOT NULL,
        items           TEXT NOT NULL,
        created_at      TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX orders_by_user ON orders (user_id, id);
    INSERT INTO products (id, name, price_krw, stock) VALUES
        ('PROD001', 'Galaxy Book4 Pro 16"', 2690000, 1000000000000),
        ('PROD002', 'Galaxy S25 Ultra 512GB', 1976800, 50000),
        ('PROD003', 'Galaxy Tab S10+ Wi-Fi', 1399000, 20000),
        ('PROD004', 'Galaxy Watch7 44mm', 369000, 80000),
        ('PROD005', 'Galaxy Buds3 Pro', 329000, 120000),
        ('PROD006', 'Odyssey OLED G8 32"', 1590000, 8000),
        ('PROD007', 'Bespoke AI Jet Vacuum', 1290000, 15000),
        ('PROD008', 'Portable SSD T9 2TB', 329000, 60000),
        ('PROD009', 'Smart Monitor M8 32"', 899000, 12000),
        ('PROD010', 'The Frame 65" QLED', 2490000, 4000),
        ('PROD011', '45W USB-C Charger', 49000, 300000),
        ('PROD012', 'Galaxy SmartTag2 4-pack', 89000, 150000),
        ('PROD013', 'Mechanical Keyboard K7', 159000, 40000),
        ('PROD014', 'Wireless Mouse M3', 39000, 200000),
        ('PROD015', 'Laptop Sleeve 16"', 45000, 90000),
        ('PROD016', 'USB-C Hub 7-in-1', 79000, 70000),
        ('PROD017', 'Webcam 4K Pro', 219000, 25000),
        ('PROD018', 'Noise-cancelling Headphones', 449000, 30000),
        ('PROD019', 'Limited Edition Galaxy Z Fold6', 3790000, 3),
        ('PROD020', 'Galaxy Ring (sold out)', 499000, 0);
    "#,
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`VERSION`]; refuses one written by a newer build.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<Result<(), i64>> {
    let at: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if at > VERSION {
        return Ok(Err(at));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(at as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(Ok(()))
}
