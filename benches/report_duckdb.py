#!/usr/bin/env python3
"""The daily report's SQL in DuckDB, for `seclake-bench report`.

Runs the steps `seclake-bench` hands over (the `*_day` tables, then every
section, each as SQL text with its parameters already bound by seclake, so
both engines run the very same statements) over the lake's Parquet files,
and prints the timings as JSON on stdout.

    report_duckdb.py --lake DIR --steps STEPS.json [--threads N] [--repeat N]
                     [--explain NAME ...]

STEPS.json: [{"name": "waf_day", "table": true, "sql": "SELECT ..."}, ...].
A table step runs as `CREATE OR REPLACE TEMP TABLE <name> AS <sql>` and is
timed with a `count(*)` of the table, as seclake does; a section's result is
fetched as Arrow. Every repeat starts from a fresh in-memory database.
"""

import argparse
import json
import sys
import time

import duckdb
import pyarrow  # noqa: F401  (imported here, not lazily inside the first timed fetch)

SOURCES = ("waf", "falco", "app")


def sql_string(text):
    return "'" + text.replace("'", "''") + "'"


def connect(lake, threads):
    con = duckdb.connect(config={"threads": threads})
    # seclake's day bounds are UTC; DuckDB would read TIMESTAMP literals
    # against timestamptz columns in the machine's zone otherwise.
    con.sql("SET TimeZone = 'UTC'")
    for source in SOURCES:
        files = sql_string(f"{lake}/source={source}/**/*.parquet")
        # Partition values stay text, as in seclake (`dt BETWEEN '…' AND '…'`).
        con.sql(
            f"CREATE VIEW {source} AS SELECT * FROM read_parquet({files}, "
            "hive_partitioning = true, hive_types = {'dt': VARCHAR, 'hour': VARCHAR})"
        )
    return con


def run_step(con, step):
    """Runs one step; returns its row count and, for traffic_summary, its row."""
    if step["table"]:
        con.sql(f"CREATE OR REPLACE TEMP TABLE {step['name']} AS {step['sql']}")
        rows = con.sql(f"SELECT count(*) FROM {step['name']}").fetchall()[0][0]
        return rows, None
    table = con.sql(step["sql"]).to_arrow_table()
    first = table.slice(0, 1).to_pylist()
    return table.num_rows, first[0] if first else None


def run(lake, threads, steps):
    started = time.perf_counter()
    con = connect(lake, threads)
    timings = []
    traffic = None
    for step in steps:
        at = time.perf_counter()
        rows, first = run_step(con, step)
        timings.append(
            {"name": step["name"], "rows": rows, "seconds": time.perf_counter() - at}
        )
        if step["name"] == "traffic_summary":
            traffic = first
    return con, {
        "seconds": time.perf_counter() - started,
        "steps": timings,
        "traffic_summary": traffic,
    }


def explain(con, step):
    """EXPLAIN ANALYZE of a step, over the day tables `con` already holds."""
    rows = con.sql(f"EXPLAIN ANALYZE {step['sql']}").fetchall()
    return "\n".join(row[-1] for row in rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True, help="the lake's root directory")
    parser.add_argument("--steps", required=True, help="JSON file of bound SQL steps")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--explain", action="append", default=[], metavar="NAME")
    args = parser.parse_args()

    with open(args.steps, encoding="utf-8") as f:
        steps = json.load(f)
    by_name = {s["name"]: s for s in steps}
    unknown = [n for n in args.explain if n not in by_name]
    if unknown:
        sys.exit(f"--explain: no step named {', '.join(unknown)}")
    threads = args.threads or duckdb.connect().sql(
        "SELECT current_setting('threads')"
    ).fetchall()[0][0]

    runs = []
    con = None
    for _ in range(max(args.repeat, 1)):
        con = None  # the previous run's tables are freed before the next starts
        con, timing = run(args.lake, threads, steps)
        runs.append(timing)
    plans = {name: explain(con, by_name[name]) for name in args.explain}
    json.dump(
        {
            "engine": "duckdb",
            "version": duckdb.__version__,
            "threads": threads,
            "runs": runs,
            "explain": plans,
        },
        sys.stdout,
        default=str,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
