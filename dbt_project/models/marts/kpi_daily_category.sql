-- Daily funnel KPIs by category: the first dashboard every shop asks for.
with daily as (
    select
        event_date,
        category,
        count(*) filter (where event_type = 'view') as views,
        count(*) filter (where event_type = 'click') as clicks,
        count(*) filter (where event_type = 'add_to_cart') as add_to_carts,
        count(*) filter (where event_type = 'purchase') as purchases,
        coalesce(sum({{ money('price * quantity') }}) filter (where event_type = 'purchase'), 0) as revenue,
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
