-- The report day's AWS WAF requests, one row per event_id: the lake is written
-- at least once, so a replayed record can be there twice (with equal columns).
-- `attack_type` names what a non-allowed request was stopped or counted for.
--
-- Parameters (literals put in by `report`; see docs/report.md):
--   :first_dt, :last_dt      'YYYY-MM-DD' partitions that overlap the day
--   :first_hour, :last_hour  'YYYY-MM-DDTHH' first and last overlapping hour partitions
--   :start_ts, :end_ts       the day's first instant and the instant after it (UTC)
-- Trino/Athena: array_to_string(x, ',') is array_join(x, ',').
SELECT DISTINCT
    event_id,
    ts,
    client_ip,
    country_iso,
    country_name,
    asn,
    as_org,
    action,
    rule,
    CASE
        WHEN action = 'ALLOW' THEN NULL
        WHEN waf_terminating_rule_type = 'RATE_BASED' THEN 'rate limit'
        WHEN rule LIKE '%SQLi%' THEN 'SQL injection'
        WHEN array_to_string(waf_labels, ',') LIKE '%CrossSiteScripting%' THEN 'XSS'
        WHEN array_to_string(waf_labels, ',') LIKE '%LFI%'
            OR array_to_string(waf_labels, ',') LIKE '%RFI%' THEN 'file inclusion'
        WHEN array_to_string(waf_labels, ',') LIKE '%SSRF%' THEN 'SSRF'
        WHEN rule LIKE '%KnownBadInputs%' THEN 'bad inputs'
        WHEN rule LIKE '%IpReputation%' OR rule LIKE '%AnonymousIp%' THEN 'IP reputation'
        WHEN rule LIKE '%BotControl%' THEN 'bots'
        ELSE 'other'
    END AS attack_type,
    threat_score,
    threat_level
FROM waf
WHERE dt BETWEEN :first_dt AND :last_dt
  AND concat(dt, 'T', hour) BETWEEN :first_hour AND :last_hour
  AND ts >= :start_ts AND ts < :end_ts
