-- The report day's Falco alerts, one row per event_id.
--
-- Parameters: :first_dt, :last_dt, :first_hour, :last_hour, :start_ts, :end_ts
-- (as in waf_day.sql).
SELECT DISTINCT
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
FROM falco
WHERE dt BETWEEN :first_dt AND :last_dt
  AND concat(dt, 'T', hour) BETWEEN :first_hour AND :last_hour
  AND ts >= :start_ts AND ts < :end_ts
