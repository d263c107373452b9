-- One row per session: its span, funnel counts and whether it converted.
select
    session_id,
    any_value(user_id) as user_id,
    min(event_timestamp) as started_at,
    max(event_timestamp) as ended_at,
    cast(min(event_timestamp) as date) as session_date,
    count(*) as n_events,
    count(distinct item_id) as n_items,
    count(*) filter (where event_type = 'view') as n_views,
    count(*) filter (where event_type = 'click') as n_clicks,
    count(*) filter (where event_type = 'add_to_cart') as n_add_to_carts,
    count(*) filter (where event_type = 'purchase') as n_purchases,
    coalesce(sum({{ money('price * quantity') }}) filter (where event_type = 'purchase'), 0) as revenue,
    count(*) filter (where event_type = 'purchase') > 0 as converted
from {{ ref('int_events_enriched') }}
group by session_id
