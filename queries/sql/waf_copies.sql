-- The `event_id`s of the report day's AWS WAF requests stored more than once
-- in the lake (re-deliveries: it is written at least once). waf_day.sql keeps
-- one copy of each; only these are ranked for it, so a day delivered once
-- needs no sort. A table of its own, made once and read by both branches of
-- waf_day.sql.
--
-- Parameters: :first_dt, :last_dt, :first_hour, :last_hour, :start_ts, :end_ts
-- (as in waf_day.sql).
SELECT event_id
FROM waf
WHERE dt BETWEEN :first_dt AND :last_dt
  AND concat(dt, 'T', hour) BETWEEN :first_hour AND :last_hour
  AND ts >= :start_ts AND ts < :end_ts
GROUP BY event_id
HAVING count(*) > 1
