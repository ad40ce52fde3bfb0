#!/usr/bin/env python3
"""Helpers of benches/commerce/load-test (standard library only).

  targets   write Vegeta JSON targets: POST /api/v1/orders, one body per request
  durable   read `vegeta encode --to json` on stdin, check every 201 against SQLite
  read-urls write the URL list of the read mix (oha --urls-from-file)
  verdict   PASS/FAIL of a `vegeta report -type=json` against the acceptance
  oha       one-line summary of an `oha --output-format json` report
  selftest  check the above on made-up data (no server needed)
"""
import argparse
import base64
import json
import os
import random
import sqlite3
import sys
import tempfile

PRICE_KRW = 2_690_000
PRODUCT = "PROD001"
SEED_PRODUCTS = [f"PROD{i:03d}" for i in range(1, 21)]


# --- targets -----------------------------------------------------------------

def write_targets(out, base_url, count, users, prefix, seed):
    """One Vegeta JSON target per line, each with its own body (base64)."""
    rng = random.Random(seed)
    url = base_url.rstrip("/") + "/api/v1/orders"
    head = ('{"method":"POST","url":%s,"header":{"Content-Type":["application/json"]},"body":"'
            % json.dumps(url))
    b64 = base64.b64encode
    randrange = rng.randrange
    chunk = []
    with open(out, "w", buffering=1 << 20) as f:
        for seq in range(count):
            body = ('{"user_id":"u%d","items":[{"product_id":"%s","quantity":%d,"price":%d}],'
                    '"idempotency_key":"%s-%d"}'
                    % (randrange(1, users + 1), PRODUCT, randrange(1, 6), PRICE_KRW, prefix, seq))
            chunk.append(head + b64(body.encode()).decode() + '"}\n')
            if len(chunk) == 10_000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))


def cmd_targets(a):
    write_targets(a.out, a.url, a.count, a.users, a.prefix, a.seed)


# --- durability --------------------------------------------------------------

def read_created(lines):
    """From `vegeta encode --to json` lines: {order id: (total_krw, idempotency key, user)},
    status-code counts and the number of 201 bodies without an id."""
    created, codes, bad = {}, {}, 0
    for line in lines:
        if not line.strip():
            continue
        r = json.loads(line)
        code = r.get("code", 0)
        codes[code] = codes.get(code, 0) + 1
        if code != 201:
            continue
        try:
            order = json.loads(base64.b64decode(r.get("body") or ""))
            created[order["id"]] = (order.get("total_krw"), order.get("idempotency_key"),
                                    order.get("user_id"))
        except (ValueError, KeyError, TypeError):
            bad += 1
    return created, codes, bad


def check_durable(created, db):
    con = sqlite3.connect(db, timeout=30)
    try:
        rows = {r[0]: (r[1], r[2]) for r in
                con.execute("SELECT id, total_krw, idempotency_key FROM orders")}
    finally:
        con.close()
    missing = [i for i in created if i not in rows]
    differ = [i for i, (total, key, _) in created.items()
              if i in rows and (rows[i][0] != total or rows[i][1] != key)]
    return {"created_201": len(created), "durable": len(created) - len(missing),
            "missing": len(missing), "missing_sample": missing[:5],
            "differ": len(differ), "differ_sample": differ[:5], "rows_in_table": len(rows)}


def cmd_durable(a):
    created, codes, bad = read_created(sys.stdin)
    res = check_durable(created, a.db)
    res["status_codes"] = {str(k): v for k, v in sorted(codes.items())}
    res["bad_201_bodies"] = bad
    res["ok"] = res["missing"] == 0 and res["differ"] == 0 and bad == 0
    if a.ids_out:
        with open(a.ids_out, "w") as f:
            for i, (_, _, user) in created.items():
                f.write(f"{i}\t{user}\n")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=1)
    line = f"{a.label}201s: {res['created_201']}, durable: {res['durable']}"
    if res["missing"]:
        line += f", MISSING: {res['missing']} (e.g. {', '.join(res['missing_sample'])})"
    if res["differ"]:
        line += f", total/key differ from the row: {res['differ']} (e.g. {', '.join(res['differ_sample'])})"
    if bad:
        line += f", 201 bodies without an order id: {bad}"
    print(line)
    return 0 if res["ok"] else 1


# --- read mix ----------------------------------------------------------------

# share of each kind of GET in the read mix
READ_MIX = (("order", 40), ("product", 30), ("user_orders", 20), ("products", 10))


def write_read_urls(out, base_url, ids_file, count, seed):
    rng = random.Random(seed)
    base = base_url.rstrip("/")
    orders, users = [], set()
    with open(ids_file) as f:
        for line in f:
            oid, _, user = line.rstrip("\n").partition("\t")
            if oid:
                orders.append(oid)
            if user and user != "None":
                users.add(user)
    users = sorted(users) or ["u1"]
    kinds = [k for k, w in READ_MIX if orders or k != "order"]
    weights = [w for k, w in READ_MIX if orders or k != "order"]
    with open(out, "w") as f:
        for kind in rng.choices(kinds, weights, k=count):
            if kind == "order":
                url = f"{base}/api/v1/orders/{rng.choice(orders)}"
            elif kind == "product":
                url = f"{base}/api/v1/products/{rng.choice(SEED_PRODUCTS)}"
            elif kind == "user_orders":
                url = f"{base}/api/v1/users/{rng.choice(users)}/orders?limit=20"
            else:
                url = f"{base}/api/v1/products"
            f.write(url + "\n")


def cmd_read_urls(a):
    write_read_urls(a.out, a.url, a.ids, a.count, a.seed)


# --- timeline ----------------------------------------------------------------

def timeline(rows):
    """Per second of the attack, from `vegeta encode --to csv` rows (timestamp ns,
    code, latency ns, ...): requests sent, 2xx, other codes, errors, p50/p99/max."""
    results = [(int(r[0]), int(r[1]), int(r[2])) for r in rows if r]
    t0 = min((ts for ts, _, _ in results), default=0)
    per = {}
    for ts, code, lat in results:
        per.setdefault((ts - t0) // 1_000_000_000, []).append((code, lat))
    out = []
    for sec in sorted(per):
        v = per[sec]
        lats = sorted(l for _, l in v)
        ok = sum(1 for c, _ in v if 200 <= c < 400)
        failed = sum(1 for c, _ in v if c == 0)
        out.append((sec, len(v), ok, len(v) - ok - failed, failed, lats[len(lats) // 2],
                    lats[min(len(lats) - 1, int(len(lats) * 0.99))], lats[-1]))
    return out


def cmd_timeline(_a):
    import csv
    print("  second    sent     2xx  4xx/5xx  no answer    p50 ms    p99 ms    max ms")
    for sec, n, ok, bad, failed, p50, p99, mx in timeline(csv.reader(sys.stdin)):
        print(f"  {sec:6d} {n:7d} {ok:7d} {bad:8d} {failed:10d} {ms(p50):9.1f} {ms(p99):9.1f} {ms(mx):9.1f}")


def access_timeline(lines, since, until, route="/api/v1/orders", method="POST"):
    """Per second (UTC clock), from the server's JSON access log: requests of
    `method route` the server answered, its own latency_ms p50/p99/max, and
    answers other than 201."""
    from datetime import datetime
    per = {}
    for line in lines:
        if route not in line:
            continue
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("route") != route or r.get("method") != method:
            continue
        t = datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).timestamp()
        if t < since or t > until:
            continue
        per.setdefault(int(t), []).append((float(r.get("latency_ms", 0)), r.get("status")))
    out = []
    for sec in sorted(per):
        lats = sorted(l for l, _ in per[sec])
        out.append((sec, len(lats), sum(1 for _, st in per[sec] if st != 201), lats[len(lats) // 2],
                    lats[min(len(lats) - 1, int(len(lats) * 0.99))], lats[-1]))
    return out


def cmd_access_timeline(a):
    import time
    rows = access_timeline(open(a.log, errors="replace"), a.since, a.until)
    print("  UTC clock  answered  not 201  server p50 ms  p99 ms   max ms")
    for sec, n, bad, p50, p99, mx in rows:
        print(f"  {time.strftime('%H:%M:%S', time.gmtime(sec))} {n:9d} {bad:8d} {p50:14.2f} {p99:7.2f} {mx:8.1f}")


# --- verdicts ----------------------------------------------------------------

def ms(ns):
    return ns / 1e6


def verdict(rep, target_rate, min_rate, p95_ms, p99_ms, max_err, tolerance, durable_ok):
    lat = rep["latencies"]
    codes = rep.get("status_codes") or {}
    requests = rep["requests"]
    err = 1.0 - rep["success"] if requests else 1.0
    fails = []
    if target_rate < min_rate:
        fails.append(f"attack rate {target_rate:g}/s is below the {min_rate:g}/s of the acceptance")
    floor = min_rate * (1 - tolerance)
    if rep["throughput"] < floor:
        fails.append(f"throughput {rep['throughput']:.0f}/s < {floor:.0f}/s")
    if ms(lat["95th"]) >= p95_ms:
        fails.append(f"p95 {ms(lat['95th']):.1f} ms >= {p95_ms:g} ms")
    if ms(lat["99th"]) >= p99_ms:
        fails.append(f"p99 {ms(lat['99th']):.1f} ms >= {p99_ms:g} ms")
    if err >= max_err:
        fails.append(f"errors {err * 100:.3f}% >= {max_err * 100:g}%")
    if durable_ok is False:
        fails.append("some 201s are not durable")
    summary = (f"POST /api/v1/orders: sent {rep['rate']:.0f} req/s, throughput {rep['throughput']:.0f} req/s, "
               f"p50 {ms(lat['50th']):.2f} ms, p95 {ms(lat['95th']):.2f} ms, p99 {ms(lat['99th']):.2f} ms, "
               f"max {ms(lat['max']):.1f} ms, errors {err * 100:.3f}% of {requests} "
               f"(codes {', '.join(f'{k}: {v}' for k, v in sorted(codes.items()))})")
    return summary, fails


def cmd_verdict(a):
    with open(a.report) as f:
        rep = json.load(f)
    durable_ok = None
    for path in a.durable or []:
        with open(path) as f:
            durable_ok = (durable_ok is not False) and json.load(f)["ok"]
    summary, fails = verdict(rep, a.rate, a.min_rate, a.p95_ms, a.p99_ms, a.max_error,
                             a.tolerance, durable_ok)
    print(summary)
    if rep.get("errors"):
        print("  vegeta errors: " + "; ".join(rep["errors"][:5]))
    crit = (f"throughput >= {a.min_rate * (1 - a.tolerance):.0f}/s at -rate >= {a.min_rate:g}/s, "
            f"p95 < {a.p95_ms:g} ms, p99 < {a.p99_ms:g} ms, errors < {a.max_error * 100:g}%"
            + (", every 201 durable" if a.durable else ""))
    if fails:
        print(f"FAIL ({'; '.join(fails)})  [needs {crit}]")
        return 1
    print(f"PASS  [{crit}]")
    return 0


def cmd_oha(a):
    with open(a.report) as f:
        rep = json.load(f)
    s = rep["summary"]
    pct = rep.get("latencyPercentiles") or {}
    codes = rep.get("statusCodeDistribution") or {}
    errs = rep.get("errorDistribution") or {}
    total = sum(codes.values()) + sum(errs.values())
    bad = sum(v for k, v in codes.items() if not str(k).startswith("2")) + sum(errs.values())

    def p(key):
        v = pct.get(key)
        return "n/a" if v is None else f"{v * 1000:.2f} ms"
    print(f"{a.label}: {s['requestsPerSec']:.0f} req/s, p50 {p('p50')}, p95 {p('p95')}, "
          f"p99 {p('p99')}, errors {(bad / total * 100 if total else 100):.3f}% of {total} "
          f"(codes {', '.join(f'{k}: {v}' for k, v in sorted(codes.items()))}"
          + (f"; errors {errs}" if errs else "") + ")")


# --- selftest ----------------------------------------------------------------

def cmd_selftest(_a):
    with tempfile.TemporaryDirectory(prefix="commerce-bench-selftest-") as d:
        selftest(d)
    print("selftest: ok")


def selftest(d):
    tf = os.path.join(d, "t.json")
    write_targets(tf, "http://127.0.0.1:9/", 25_000, 10_000, "k-test", 1)
    keys, users, quantities = set(), set(), set()
    with open(tf) as f:
        lines = f.readlines()
    assert len(lines) == 25_000
    for line in lines:
        t = json.loads(line)
        assert t["method"] == "POST" and t["url"] == "http://127.0.0.1:9/api/v1/orders", t
        assert t["header"] == {"Content-Type": ["application/json"]}, t
        b = json.loads(base64.b64decode(t["body"]))
        assert set(b) == {"user_id", "items", "idempotency_key"}, b
        assert len(b["items"]) == 1 and b["items"][0]["product_id"] == "PROD001"
        assert b["items"][0]["price"] == 2_690_000
        quantities.add(b["items"][0]["quantity"])
        keys.add(b["idempotency_key"])
        users.add(b["user_id"])
    assert quantities == {1, 2, 3, 4, 5}, quantities
    assert len(keys) == 25_000, "idempotency keys repeat"
    assert 8_000 < len(users) <= 10_000, len(users)

    # durability against a made-up DB and made-up vegeta results
    db = os.path.join(d, "o.db")
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE orders (id TEXT PRIMARY KEY, user_id TEXT, idempotency_key TEXT, total_krw INTEGER)")
    con.executemany("INSERT INTO orders VALUES (?,?,?,?)",
                    [("a", "u1", "k-1", 2_690_000), ("b", "u2", "k-2", 5_380_000)])
    con.commit()
    con.close()

    def res(code, order):
        body = base64.b64encode(json.dumps(order).encode()).decode() if order else ""
        return json.dumps({"code": code, "body": body})
    lines = [res(201, {"id": "a", "user_id": "u1", "total_krw": 2_690_000, "idempotency_key": "k-1"}),
             res(201, {"id": "b", "user_id": "u2", "total_krw": 5_380_000, "idempotency_key": "k-2"}),
             res(0, None), res(409, {"error": "conflict"})]
    created, codes, bad = read_created(lines)
    r = check_durable(created, db)
    assert r["created_201"] == 2 and r["durable"] == 2 and r["missing"] == 0 and r["differ"] == 0, r
    assert codes == {201: 2, 0: 1, 409: 1} and bad == 0, (codes, bad)
    lines.append(res(201, {"id": "c", "user_id": "u3", "total_krw": 1, "idempotency_key": "k-3"}))
    lines.append(res(201, {"id": "b", "user_id": "u2", "total_krw": 1, "idempotency_key": "k-2"}))
    created, _, _ = read_created(lines)
    r = check_durable(created, db)
    assert r["missing"] == 1 and r["missing_sample"] == ["c"] and r["differ"] == 1, r

    # read-mix URLs
    ids = os.path.join(d, "ids.tsv")
    with open(ids, "w") as f:
        f.write("a\tu1\nb\tu2\n")
    uf = os.path.join(d, "urls.txt")
    write_read_urls(uf, "http://127.0.0.1:9", ids, 2_000, 1)
    with open(uf) as f:
        urls = f.read().split()
    assert len(urls) == 2_000
    kinds = {"/api/v1/orders/a", "/api/v1/orders/b", "/api/v1/users/u1/orders?limit=20",
             "/api/v1/users/u2/orders?limit=20", "/api/v1/products"}
    kinds |= {f"/api/v1/products/{p}" for p in SEED_PRODUCTS}
    seen = {u[len("http://127.0.0.1:9"):] for u in urls}
    assert seen <= kinds and "/api/v1/products" in seen and "/api/v1/orders/a" in seen, seen - kinds

    # timeline (seconds from the first request)
    t = timeline([["1000000000", "201", "2000000"], ["1500000000", "0", "1000000000"],
                  ["2100000000", "500", "4000000"], []])
    assert t == [(0, 2, 1, 0, 1, 1_000_000_000, 1_000_000_000, 1_000_000_000),
                 (1, 1, 0, 1, 0, 4_000_000, 4_000_000, 4_000_000)], t

    # the server's view, from its access log
    log = ['{"ts":"2026-12-07T04:34:14.1Z","method":"POST","route":"/api/v1/orders","status":201,"latency_ms":2.0}',
           '{"ts":"2026-12-07T04:34:14.9Z","method":"POST","route":"/api/v1/orders","status":409,"latency_ms":4.0}',
           '{"ts":"2026-12-07T04:34:14.9Z","method":"GET","route":"/api/v1/orders/{id}","status":200,"latency_ms":1}',
           '{"ts":"2026-12-07T04:34:16.0Z","method":"POST","route":"/api/v1/orders","status":201,"latency_ms":3.0}',
           'not json /api/v1/orders']
    t = access_timeline(log, 0, float("inf"))
    assert [(n, bad, p50, mx) for _, n, bad, p50, _, mx in t] == [(2, 1, 4.0, 4.0), (1, 0, 3.0, 3.0)], t
    assert t[1][0] - t[0][0] == 2, t
    assert len(access_timeline(log, t[1][0], float("inf"))) == 1

    # verdicts
    rep = {"requests": 100_000, "rate": 12_500.0, "throughput": 12_499.1, "success": 0.9995,
           "latencies": {"50th": 2e6, "95th": 30e6, "99th": 90e6, "max": 400e6},
           "status_codes": {"201": 99_950, "0": 50}}
    _, fails = verdict(rep, 12_500, 12_500, 78, 145, 0.001, 0.01, True)
    assert not fails, fails
    _, fails = verdict(rep, 12_500, 12_500, 78, 145, 0.001, 0.01, False)
    assert fails == ["some 201s are not durable"], fails
    rep["latencies"]["99th"] = 150e6
    rep["success"] = 0.99
    _, fails = verdict(rep, 1_000, 12_500, 78, 145, 0.001, 0.01, None)
    assert len(fails) == 3, fails


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("targets")
    p.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--prefix", required=True, help="idempotency key prefix (unique per run)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(f=cmd_targets)
    p = sub.add_parser("durable")
    p.add_argument("--db", required=True)
    p.add_argument("--ids-out", help="write 'order id<TAB>user id' of every 201")
    p.add_argument("--json-out")
    p.add_argument("--label", default="")
    p.set_defaults(f=cmd_durable)
    p = sub.add_parser("read-urls")
    p.add_argument("--url", required=True)
    p.add_argument("--ids", required=True)
    p.add_argument("--count", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(f=cmd_read_urls)
    p = sub.add_parser("timeline")
    p.set_defaults(f=cmd_timeline)
    p = sub.add_parser("access-timeline")
    p.add_argument("--log", required=True)
    p.add_argument("--since", type=float, default=0)
    p.add_argument("--until", type=float, default=float("inf"))
    p.set_defaults(f=cmd_access_timeline)
    p = sub.add_parser("verdict")
    p.add_argument("--report", required=True)
    p.add_argument("--durable", action="append", help="a `durable --json-out` file (repeatable)")
    p.add_argument("--rate", type=float, required=True, help="the -rate of the attack, per second")
    p.add_argument("--min-rate", type=float, default=12_500)
    p.add_argument("--p95-ms", type=float, default=78)
    p.add_argument("--p99-ms", type=float, default=145)
    p.add_argument("--max-error", type=float, default=0.001)
    p.add_argument("--tolerance", type=float, default=0.01)
    p.set_defaults(f=cmd_verdict)
    p = sub.add_parser("oha")
    p.add_argument("--report", required=True)
    p.add_argument("--label", default="read mix")
    p.set_defaults(f=cmd_oha)
    p = sub.add_parser("selftest")
    p.set_defaults(f=cmd_selftest)
    a = ap.parse_args()
    sys.exit(a.f(a) or 0)


if __name__ == "__main__":
    main()
