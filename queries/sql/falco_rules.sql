-- Falco rules that fired, with the worst priority each reached.
-- Parameters: :top  how many rows
SELECT
    rule,
    count(*) AS alerts,
    count(*) FILTER (WHERE severity IN ('emergency', 'alert', 'critical')) AS critical,
    count(DISTINCT hostname) AS hosts
FROM falco_day
GROUP BY rule
ORDER BY alerts DESC, rule
LIMIT :top
