-- WAF traffic of the day by action.
SELECT
    count(*) AS requests,
    count(*) FILTER (WHERE action = 'ALLOW') AS allowed,
    count(*) FILTER (WHERE action = 'BLOCK') AS blocked,
    count(*) FILTER (WHERE action = 'COUNT') AS counted,
    count(*) FILTER (WHERE action = 'CAPTCHA') AS captcha,
    count(*) FILTER (WHERE action = 'CHALLENGE') AS challenge,
    count(DISTINCT client_ip) AS unique_ips
FROM waf_day
