-- The WAF rules that terminated requests other than by allowing them.
-- Parameters: :top  how many rows
SELECT
    rule,
    action,
    max(attack_type) AS attack_type,
    count(*) AS hits,
    count(DISTINCT client_ip) AS client_ips
FROM waf_day
WHERE action <> 'ALLOW'
GROUP BY rule, action
ORDER BY hits DESC, rule, action
LIMIT :top
