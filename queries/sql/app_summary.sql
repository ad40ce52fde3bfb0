-- The commerce API's day: requests, errors, orders placed and their revenue.
SELECT
    count(*) AS requests,
    count(*) FILTER (WHERE status >= 500) AS server_errors,
    count(*) FILTER (WHERE status >= 400 AND status < 500) AS client_errors,
    count(*) FILTER (WHERE http_method = 'POST' AND app_route = '/orders' AND status = 201) AS orders,
    coalesce(sum(amount) FILTER (WHERE http_method = 'POST' AND app_route = '/orders' AND status = 201), 0) AS revenue_krw
FROM app_day
