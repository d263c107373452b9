-- Every item with lifetime engagement, for analysts and training: the catalogue's items and the
-- items seen only in events (a shop may never send a catalogue; their attributes are NULL).
with engagement as (
    select
        item_id,
        count(*) filter (where event_type = 'view') as lifetime_views,
        count(*) filter (where event_type = 'purchase') as lifetime_purchases,
        min(event_timestamp) as first_event_at,
        max(event_timestamp) as last_event_at
    from {{ ref('int_events_enriched') }}
    group by item_id
)

select
    item_id,
    i.item_id is not null as in_catalogue,
    i.title,
    i.category,
    i.brand,
    i.price,
    i.created_at,
    coalesce(e.lifetime_views, 0) as lifetime_views,
    coalesce(e.lifetime_purchases, 0) as lifetime_purchases,
    e.first_event_at,
    e.last_event_at
from {{ ref('stg_shop__items') }} as i
full outer join engagement as e using (item_id)
