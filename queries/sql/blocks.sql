-- The automatic response's decisions of the report day (`source=response`,
-- docs/operations.md "Blocking in AWS WAF"): every address blocked (or, in
-- a dry run, that would have been), kept out by the allow-list, evicted or
-- refused, newest first, with the deciding event's score and reasons and
-- the sentence that says until when. Expiries are left out.
--
-- Parameters: :first_dt, :last_dt, :first_hour, :last_hour, :start_ts, :end_ts
-- (as in waf_day.sql); :critical_limit  how many rows at most.
-- Trino/Athena: array_to_string(x, ', ') is array_join(x, ', ').
SELECT
    ts,
    action AS decision,
    client_ip,
    country_iso,
    asn,
    as_org,
    threat_score,
    threat_level,
    rule AS trigger,
    array_to_string(threat_reasons, ', ') AS reasons,
    message
FROM response
WHERE dt BETWEEN :first_dt AND :last_dt
  AND concat(dt, 'T', hour) BETWEEN :first_hour AND :last_hour
  AND ts >= :start_ts AND ts < :end_ts
  AND action IN ('blocked', 'dry_run', 'allow_listed', 'evicted', 'refused')
ORDER BY ts DESC, client_ip
LIMIT :critical_limit
