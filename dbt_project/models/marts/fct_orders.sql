-- One row per purchased order line. A line delivered without a price has unit_price and revenue
-- NULL (unknown), never 0.
select
    event_id as order_line_id,
    session_id,
    user_id,
    item_id,
    category,
    brand,
    event_timestamp as ordered_at,
    event_date as order_date,
    quantity,
    price as unit_price,
    price * quantity as revenue
from {{ ref('int_events_enriched') }}
where event_type = 'purchase'
