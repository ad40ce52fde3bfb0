-- WAF requests per hour of the day in the report's time zone, by action.
-- Counted per UTC minute first, so the time zone conversion runs on at most
-- 1,440 rows per action instead of every request (every zone's offset is a
-- whole number of minutes).
-- Parameters: :tz  an IANA time zone name, e.g. 'Asia/Seoul'
WITH minutes AS (
    SELECT date_trunc('minute', ts) AS minute, action, count(*) AS requests
    FROM waf_day
    GROUP BY 1, 2
)
SELECT
    date_trunc('hour', minute AT TIME ZONE :tz) AS hour_start,
    action,
    sum(requests) AS requests
FROM minutes
GROUP BY 1, 2
ORDER BY 1, 2
