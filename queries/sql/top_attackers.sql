-- Client addresses with the most blocked requests.
-- Parameters: :top  how many rows
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
