-- AWS access key ids found in the commerce API's logs, redacted to their first
-- and last four characters, with where and how often each appeared.
WITH hits AS (
    SELECT
        ts,
        client_ip,
        app_route,
        user_id,
        text,
        CASE WHEN strpos(text, 'AKIA') > 0 THEN strpos(text, 'AKIA')
             ELSE strpos(text, 'ASIA') END AS key_at
    FROM app_day
    WHERE leaked
)
SELECT
    concat(substr(text, key_at, 4), '************', substr(text, key_at + 16, 4)) AS key_redacted,
    count(*) AS records,
    min(ts) AS first_seen,
    max(ts) AS last_seen,
    count(DISTINCT app_route) AS routes,
    count(DISTINCT user_id) AS users
FROM hits
WHERE key_at > 0
GROUP BY 1
ORDER BY records DESC, key_redacted
