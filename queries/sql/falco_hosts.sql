-- Falco alerts by node.
-- Parameters: :top  how many rows
SELECT
    hostname,
    count(*) AS alerts,
    count(*) FILTER (WHERE severity IN ('emergency', 'alert', 'critical')) AS critical
FROM falco_day
GROUP BY hostname
ORDER BY alerts DESC, hostname
LIMIT :top
