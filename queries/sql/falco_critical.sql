-- The day's critical (or worse) Falco alerts, newest first.
-- Parameters: :critical_limit  how many rows at most
SELECT
    ts,
    falco_priority AS priority,
    rule,
    hostname,
    k8s_namespace AS namespace,
    k8s_pod AS pod,
    container_image,
    proc_cmdline,
    falco_output AS output
FROM falco_day
WHERE severity IN ('emergency', 'alert', 'critical')
ORDER BY ts DESC, rule
LIMIT :critical_limit
