-- The report day's commerce API requests, one row per event_id: the first
-- ingested copy of each (as in waf_day.sql; docs/report.md). `leaked` marks
-- records in which the threat scorer found an AWS access key id.
--
-- Parameters: :first_dt, :last_dt, :first_hour, :last_hour, :start_ts, :end_ts
-- (as in waf_day.sql). Trino/Athena: array_to_string is array_join.
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
        row_number() OVER (
            PARTITION BY event_id
            ORDER BY ingest_ts, threat_score, threat_level
        ) AS copy
    FROM app
    WHERE dt BETWEEN :first_dt AND :last_dt
      AND concat(dt, 'T', hour) BETWEEN :first_hour AND :last_hour
      AND ts >= :start_ts AND ts < :end_ts
) AS copies
WHERE copy = 1
