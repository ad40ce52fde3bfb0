-- The report day's Falco alerts, one row per event_id: the first ingested
-- copy of each (as in waf_day.sql; docs/report.md).
--
-- Needs the table falco_copies (falco_copies.sql) made first.
--
-- Parameters: :first_dt, :last_dt, :first_hour, :last_hour, :start_ts, :end_ts
-- (as in waf_day.sql).
WITH day AS (
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
        ingest_ts
    FROM falco
    WHERE dt BETWEEN :first_dt AND :last_dt
      AND concat(dt, 'T', hour) BETWEEN :first_hour AND :last_hour
      AND ts >= :start_ts AND ts < :end_ts
)
-- The events in falco_copies are ranked in the second branch; every other
-- row is its event's only copy (as in waf_day.sql).
SELECT
    day.event_id,
    day.ts,
    day.rule,
    day.severity,
    day.falco_priority,
    day.hostname,
    day.k8s_namespace,
    day.k8s_pod,
    day.container_image,
    day.proc_cmdline,
    day.falco_output,
    day.threat_score,
    day.threat_level
-- The small side first: DataFusion builds its hash table from the left input.
FROM falco_copies AS copied
RIGHT JOIN day ON day.event_id = copied.event_id
WHERE copied.event_id IS NULL
UNION ALL
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
        day.event_id,
        day.ts,
        day.rule,
        day.severity,
        day.falco_priority,
        day.hostname,
        day.k8s_namespace,
        day.k8s_pod,
        day.container_image,
        day.proc_cmdline,
        day.falco_output,
        day.threat_score,
        day.threat_level,
        row_number() OVER (
            PARTITION BY day.event_id
            ORDER BY day.ingest_ts, day.threat_score, day.threat_level
        ) AS copy
    FROM falco_copies AS copied
    JOIN day ON day.event_id = copied.event_id
) AS copies
WHERE copy = 1
