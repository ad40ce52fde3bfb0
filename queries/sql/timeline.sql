-- WAF requests per hour of the day in the report's time zone, by action.
-- Parameters: :tz  an IANA time zone name, e.g. 'Asia/Seoul'
SELECT
    date_trunc('hour', ts AT TIME ZONE :tz) AS hour_start,
    action,
    count(*) AS requests
FROM waf_day
GROUP BY 1, 2
ORDER BY 1, 2
