-- Commerce API routes: requests, error rate and exact latency percentiles.
-- Trino/Athena: percentile_cont(p) WITHIN GROUP (ORDER BY x) is
-- approx_percentile(x, p).
-- Parameters: :top  how many rows
SELECT
    app_route AS route,
    count(*) AS requests,
    count(*) FILTER (WHERE status >= 500) AS server_errors,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50_ms,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_ms,
    percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99_ms
FROM app_day
WHERE app_route IS NOT NULL
GROUP BY app_route
ORDER BY requests DESC, route
LIMIT :top
