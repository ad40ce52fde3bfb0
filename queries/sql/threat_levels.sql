-- Events of every source by threat level.
SELECT source, threat_level, count(*) AS events
FROM (
    SELECT 'waf' AS source, threat_level FROM waf_day
    UNION ALL
    SELECT 'falco' AS source, threat_level FROM falco_day
    UNION ALL
    SELECT 'app' AS source, threat_level FROM app_day
) AS day
GROUP BY source, threat_level
ORDER BY source, threat_level
