//! An in-process API on a free port with its own database.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use commerce_api::{Config, Stopped};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running API.
pub struct Api {
    pub base: String,
    pub db: PathBuf,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<Stopped, commerce_api::server::ServeError>>,
    _dir: Option<tempfile::TempDir>,
}

impl Api {
    /// Starts on a fresh database; `tune` edits the config first.
    pub async fn start(tune: impl FnOnce(&mut Config)) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let mut api = Api::start_on(dir.path().join("orders.db"), tune).await;
        api._dir = Some(dir);
        api
    }

    /// Starts on the database at `db`.
    pub async fn start_on(db: PathBuf, tune: impl FnOnce(&mut Config)) -> Api {
        let mut config = Config {
            db: db.clone(),
            ..Config::default()
        };
        config.access_log.stdout = false;
        tune(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(commerce_api::serve(config, listener, async {
            let _ = stopped.await;
        }));
        Api {
            base,
            db,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task,
            _dir: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs `body` as JSON to the orders route.
    pub async fn order(&self, body: &Value) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url("/api/v1/orders"))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.client.get(self.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The `/metrics` page.
    pub async fn metrics(&self) -> String {
        let resp = self.client.get(self.url("/metrics")).send().await.unwrap();
        resp.text().await.unwrap()
    }

    /// Asks for a graceful stop and waits for it.
    pub async fn stop(mut self) -> Stopped {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().unwrap()
    }
}

/// The seed's order: `PROD001` × `quantity` at 2,690,000 won.
pub fn seed_order(user: &str, quantity: u32, key: &str) -> Value {
    json!({
        "user_id": user,
        "items": [{"product_id": "PROD001", "quantity": quantity, "price": 2_690_000}],
        "idempotency_key": key,
    })
}

/// Runs the `commerce-api` binary on `db` and a free port, its stdout going
/// to `stdout`; returns it, its address and a thread collecting its stderr.
pub fn spawn_binary(
    db: &Path,
    stdout: Stdio,
    env: &[(&str, &str)],
) -> (Child, String, std::thread::JoinHandle<Vec<String>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_commerce-api"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .envs(env.iter().copied())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("commerce-api exited before serving")
            .unwrap();
        if let Some(at) = line.find("serving on http://") {
            let rest = &line[at + "serving on http://".len()..];
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect());
    (child, addr, rest)
}
