-- The report day's AWS WAF requests, one row per event_id. The lake is
-- written at least once, so an event can be there more than once, and its
-- copies need not be equal: a GeoIP database reloaded or threat windows
-- rebuilt between two reads of the same record enrich it differently. The
-- copy kept is the first ingested (earliest ingest_ts); among copies ingested
-- at the same instant, the one first in the window's ORDER BY (docs/report.md).
-- `attack_type` names what a non-allowed request was stopped or counted for.
--
-- Needs the table waf_copies (waf_copies.sql) made first.
--
-- Parameters (literals put in by `report`; see docs/report.md):
--   :first_dt, :last_dt      'YYYY-MM-DD' partitions that overlap the day
--   :first_hour, :last_hour  'YYYY-MM-DDTHH' first and last overlapping hour partitions
--   :start_ts, :end_ts       the day's first instant and the instant after it (UTC)
-- Trino/Athena: array_to_string(x, ',') is array_join(x, ',').
WITH day AS (
    SELECT
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
        threat_level,
        ingest_ts
    FROM waf
    WHERE dt BETWEEN :first_dt AND :last_dt
      AND concat(dt, 'T', hour) BETWEEN :first_hour AND :last_hour
      AND ts >= :start_ts AND ts < :end_ts
)
-- The events in waf_copies are ranked in the second branch; every other row
-- is its event's only copy. Columns read from the record itself are equal in
-- every copy (the id is the record's hash); the enrichment decides among the
-- rest.
SELECT
    day.event_id,
    day.ts,
    day.client_ip,
    day.country_iso,
    day.country_name,
    day.asn,
    day.as_org,
    day.action,
    day.rule,
    day.attack_type,
    day.threat_score,
    day.threat_level
-- The small side first: DataFusion builds its hash table from the left input.
FROM waf_copies AS copied
RIGHT JOIN day ON day.event_id = copied.event_id
WHERE copied.event_id IS NULL
UNION ALL
SELECT
    event_id,
    ts,
    client_ip,
    country_iso,
    country_name,
    asn,
    as_org,
    action,
    rule,
    attack_type,
    threat_score,
    threat_level
FROM (
    SELECT
        day.event_id,
        day.ts,
        day.client_ip,
        day.country_iso,
        day.country_name,
        day.asn,
        day.as_org,
        day.action,
        day.rule,
        day.attack_type,
        day.threat_score,
        day.threat_level,
        row_number() OVER (
            PARTITION BY day.event_id
            ORDER BY day.ingest_ts, day.threat_score, day.threat_level,
                day.country_iso NULLS LAST, day.country_name NULLS LAST,
                day.asn NULLS LAST, day.as_org NULLS LAST
        ) AS copy
    FROM waf_copies AS copied
    JOIN day ON day.event_id = copied.event_id
) AS copies
WHERE copy = 1
