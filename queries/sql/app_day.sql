-- The report day's commerce API requests, one row per event_id: the first
-- ingested copy of each (as in waf_day.sql; docs/report.md). `leaked` marks
-- records in which the threat scorer found an AWS access key id.
--
-- Needs the table app_copies (app_copies.sql) made first.
--
-- Parameters: :first_dt, :last_dt, :first_hour, :last_hour, :start_ts, :end_ts
-- (as in waf_day.sql). Trino/Athena: array_to_string is array_join.
WITH day AS (
    SELECT
        event_id,
        ts,
        client_ip,
        http_method,
        app_route,
        status,
        latency_ms,
        user_id,
        amount,
        coalesce(app_error, message) AS text,
        array_to_string(threat_reasons, ',') LIKE '%app.leaked_aws_key%' AS leaked,
        threat_score,
        threat_level,
        ingest_ts
    FROM app
    WHERE dt BETWEEN :first_dt AND :last_dt
      AND concat(dt, 'T', hour) BETWEEN :first_hour AND :last_hour
      AND ts >= :start_ts AND ts < :end_ts
)
-- The events in app_copies are ranked in the second branch; every other
-- row is its event's only copy (as in waf_day.sql).
SELECT
    day.event_id,
    day.ts,
    day.client_ip,
    day.http_method,
    day.app_route,
    day.status,
    day.latency_ms,
    day.user_id,
    day.amount,
    day.text,
    day.leaked,
    day.threat_score,
    day.threat_level
-- The small side first: DataFusion builds its hash table from the left input.
FROM app_copies AS copied
RIGHT JOIN day ON day.event_id = copied.event_id
WHERE copied.event_id IS NULL
UNION ALL
SELECT
    event_id,
    ts,
    client_ip,
    http_method,
    app_route,
    status,
    latency_ms,
    user_id,
    amount,
    text,
    leaked,
    threat_score,
    threat_level
FROM (
    SELECT
        day.event_id,
        day.ts,
        day.client_ip,
        day.http_method,
        day.app_route,
        day.status,
        day.latency_ms,
        day.user_id,
        day.amount,
        day.text,
        day.leaked,
        day.threat_score,
        day.threat_level,
        row_number() OVER (
            PARTITION BY day.event_id
            ORDER BY day.ingest_ts, day.threat_score, day.threat_level
        ) AS copy
    FROM app_copies AS copied
    JOIN day ON day.event_id = copied.event_id
) AS copies
WHERE copy = 1
