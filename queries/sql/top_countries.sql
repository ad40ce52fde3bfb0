-- Source countries by WAF requests (GeoIP; null when the address is private
-- or not in the database).
-- Parameters: :top  how many rows
SELECT
    country_iso,
    max(country_name) AS country_name,
    count(*) AS requests,
    count(*) FILTER (WHERE action = 'BLOCK') AS blocked
FROM waf_day
GROUP BY country_iso
ORDER BY requests DESC, country_iso
LIMIT :top
