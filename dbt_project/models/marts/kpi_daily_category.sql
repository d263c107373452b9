-- Daily funnel KPIs by category: the first dashboard every shop asks for. Events of items with
-- no known category count under 'unknown'. Revenue sums the purchases with a known price: NULL
-- when every purchase of the day and category lacked one, 0 when there was no purchase;
-- unpriced_purchases says how many lines the sum leaves out.
with daily as (
    select
        event_date,
        category,
        count(*) filter (where event_type = 'view') as views,
        count(*) filter (where event_type = 'click') as clicks,
        count(*) filter (where event_type = 'add_to_cart') as add_to_carts,
        count(*) filter (where event_type = 'purchase') as purchases,
        {{ purchase_revenue() }} as revenue,
        {{ unpriced_purchases() }} as unpriced_purchases,
        count(distinct user_id) as active_users
    from {{ ref('int_events_enriched') }}
    group by event_date, category
)

select
    *,
    clicks / nullif(views, 0) as ctr,
    add_to_carts / nullif(views, 0) as add_to_cart_rate,
    purchases / nullif(views, 0) as conversion_rate
from daily
