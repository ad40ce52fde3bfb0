//! An order answered 201 survives `kill -9` of the process that answered.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;

use serde_json::{Value, json};

/// Starts the binary on `db` and a free port; returns it and its address.
fn start(db: &Path) -> (Child, String) {
    let env = [("COMMERCE_API_ACCESS_LOG__STDOUT", "false")];
    let (child, addr, _) = support::spawn_binary(db, Stdio::null(), &env);
    (child, addr)
}

fn order(i: usize) -> Value {
    json!({
        "user_id": format!("user-{}", i % 97),
        "items": [{"product_id": "PROD001", "quantity": 1 + i % 5, "price": 2_690_000}],
        "idempotency_key": format!("durable-{i}"),
    })
}

#[test]
fn every_201_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orders.db");
    let (mut child, addr) = start(&db);

    // Eight clients place orders until the server dies; each 201's order id
    // is reported as it arrives.
    let (created, answers) = mpsc::channel::<(usize, String)>();
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let created = created.clone();
            let url = format!("http://{addr}/api/v1/orders");
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                for i in (c..).step_by(8) {
                    let Ok(resp) = client.post(&url).json(&order(i)).send() else {
                        return;
                    };
                    if resp.status().as_u16() != 201 {
                        continue;
                    }
                    let Ok(body) = resp.json::<Value>() else {
                        return;
                    };
                    let id = body["id"].as_str().unwrap().to_owned();
                    if created.send((i, id)).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    drop(created);
    let mut ids: Vec<(usize, String)> = answers.iter().take(2000).collect();
    // SAFETY: kill(2) on our own child's pid.
    let killed = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(killed, 0);
    // 201s that were on the wire when the process died count too.
    ids.extend(answers.iter());
    for c in clients {
        c.join().unwrap();
    }
    child.wait().unwrap();

    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: HashSet<String> = conn
        .prepare("SELECT id FROM orders")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let lost: Vec<&(usize, String)> = ids.iter().filter(|(_, id)| !stored.contains(id)).collect();
    assert!(ids.len() >= 2000);
    assert!(
        lost.is_empty(),
        "{} of {} answered 201 are gone: {:?}",
        lost.len(),
        ids.len(),
        &lost[..lost.len().min(5)]
    );
    drop(conn);

    // Restarted on the same file, it serves them, and a retry of one is the
    // same order, not a second one.
    let (mut child, addr) = start(&db);
    let client = reqwest::blocking::Client::new();
    let (i, id) = &ids[ids.len() / 2];
    let resp = client
        .get(format!("http://{addr}/api/v1/orders/{id}"))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = client
        .post(format!("http://{addr}/api/v1/orders"))
        .json(&order(*i))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.json::<Value>().unwrap()["id"], id.as_str());
    child.kill().unwrap();
    child.wait().unwrap();
}
