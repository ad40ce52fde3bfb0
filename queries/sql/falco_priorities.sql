-- Falco alerts by priority, most severe first.
SELECT
    falco_priority AS priority,
    count(*) AS alerts
FROM falco_day
GROUP BY falco_priority
ORDER BY CASE lower(falco_priority)
    WHEN 'emergency' THEN 0 WHEN 'alert' THEN 1 WHEN 'critical' THEN 2
    WHEN 'error' THEN 3 WHEN 'warning' THEN 4 WHEN 'notice' THEN 5
    WHEN 'informational' THEN 6 WHEN 'debug' THEN 7 ELSE 8 END, priority
