-- The report day's Falco alerts, one row per event_id: the first ingested
-- copy of each (as in waf_day.sql; docs/report.md).
--
-- Parameters: :first_dt, :last_dt, :first_hour, :last_hour, :start_ts, :end_ts
-- (as in waf_day.sql).
SELECT
    event_id,
    ts,
    rule,
    severity,
    falco_priority,
    hostname,
    k8s_namespace,
    k8s_pod,
    container_image,
    proc_cmdline,
    falco_output,
    threat_score,
    threat_level
FROM (
    SELECT
        event_id,
        ts,
        rule,
        severity,
        falco_priority,
        hostname,
        k8s_namespace,
        k8s_pod,
        container_image,
        proc_cmdline,
        falco_output,
        threat_score,
        threat_level,
        row_number() OVER (
            PARTITION BY event_id
            ORDER BY ingest_ts, threat_score, threat_level
        ) AS copy
    FROM falco
    WHERE dt BETWEEN :first_dt AND :last_dt
      AND concat(dt, 'T', hour) BETWEEN :first_hour AND :last_hour
      AND ts >= :start_ts AND ts < :end_ts
) AS copies
WHERE copy = 1
