-- Top attackers (as in top_attackers.sql) whose address made no WAF request in
-- the seven days before the report day. The history is reduced to distinct
-- addresses first, so the anti-join probes a small table once per attacker.
-- Parameters: :top; :history_first_dt, :history_start_ts (seven days before
-- the day) and :first_dt, :start_ts (the day, as in waf_day.sql)
WITH attackers AS (
    SELECT
        client_ip,
        max(country_iso) AS country_iso,
        max(asn) AS asn,
        max(as_org) AS as_org,
        count(*) AS requests,
        count(*) FILTER (WHERE action = 'BLOCK') AS blocked,
        max(threat_score) AS max_threat_score
    FROM waf_day
    WHERE client_ip IS NOT NULL
    GROUP BY client_ip
    HAVING count(*) FILTER (WHERE action = 'BLOCK') > 0
    ORDER BY blocked DESC, max_threat_score DESC, client_ip
    LIMIT :top
),
seen AS (
    SELECT DISTINCT client_ip
    FROM waf
    WHERE dt BETWEEN :history_first_dt AND :first_dt
      AND ts >= :history_start_ts AND ts < :start_ts
      AND client_ip IS NOT NULL
)
SELECT a.*
FROM attackers AS a
LEFT JOIN seen AS s ON s.client_ip = a.client_ip
WHERE s.client_ip IS NULL
ORDER BY a.blocked DESC, a.max_threat_score DESC, a.client_ip
