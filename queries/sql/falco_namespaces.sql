-- Falco alerts by Kubernetes namespace (null: not in a pod).
-- Parameters: :top  how many rows
SELECT
    k8s_namespace AS namespace,
    count(*) AS alerts,
    count(*) FILTER (WHERE severity IN ('emergency', 'alert', 'critical')) AS critical
FROM falco_day
GROUP BY k8s_namespace
ORDER BY alerts DESC, namespace
LIMIT :top
