-- User–item interaction strength: a purchase says more than a view. Weights are the usual
-- implicit-feedback ladder (view 1, click 2, add_to_cart 4, purchase 8).
select
    user_id,
    item_id,
    sum(case event_type
            when 'view' then 1 when 'click' then 2 when 'add_to_cart' then 4
            when 'purchase' then 8 end) as weight,
    count(*) as n_events,
    count(*) filter (where event_type = 'purchase') as n_purchases,
    min(event_timestamp) as first_interaction_at,
    max(event_timestamp) as last_interaction_at
from {{ ref('int_events_enriched') }}
group by user_id, item_id
