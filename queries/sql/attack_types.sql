-- Requests WAF did not simply allow, by kind of attack (see waf_day.sql).
SELECT
    attack_type,
    count(*) AS hits,
    count(*) FILTER (WHERE action = 'BLOCK') AS blocked,
    count(DISTINCT client_ip) AS client_ips
FROM waf_day
WHERE action <> 'ALLOW'
GROUP BY attack_type
ORDER BY hits DESC, attack_type
