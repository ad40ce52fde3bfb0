-- The report day's commerce API requests, one row per event_id. `leaked` marks
-- records in which the threat scorer found an AWS access key id.
--
-- Parameters: :first_dt, :last_dt, :first_hour, :last_hour, :start_ts, :end_ts
-- (as in waf_day.sql). Trino/Athena: array_to_string is array_join.
SELECT DISTINCT
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
    threat_level
FROM app
WHERE dt BETWEEN :first_dt AND :last_dt
  AND concat(dt, 'T', hour) BETWEEN :first_hour AND :last_hour
  AND ts >= :start_ts AND ts < :end_ts
