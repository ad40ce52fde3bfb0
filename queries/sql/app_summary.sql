-- The commerce API's day: requests, errors, orders placed and their revenue.
-- An order is a POST to the order-creating route answered 201 Created: the
-- route is `/api/v1/orders` in the commerce API (commerce-api/) and `/orders`
-- in older logs and the fixture generator. Idempotent replays (200) and the
-- users' order lists (`/api/v1/users/{id}/orders`, GET) are not orders.
SELECT
    count(*) AS requests,
    count(*) FILTER (WHERE status >= 500) AS server_errors,
    count(*) FILTER (WHERE status >= 400 AND status < 500) AS client_errors,
    count(*) FILTER (
        WHERE http_method = 'POST' AND status = 201 AND app_route IN ('/orders', '/api/v1/orders')
    ) AS orders,
    coalesce(sum(amount) FILTER (
        WHERE http_method = 'POST' AND status = 201 AND app_route IN ('/orders', '/api/v1/orders')
    ), 0) AS revenue_krw
FROM app_day
