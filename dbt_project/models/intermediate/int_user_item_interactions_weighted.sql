-- User–item interaction strength: a purchase says more than a view. Weights are the usual
-- implicit-feedback ladder (view 1, click 2, add_to_cart 4, purchase 8). Incremental: a run
-- recomputes whole the (user, item) pairs that newly loaded events touch.
{{ config(materialized='incremental', incremental_strategy='delete+insert',
          unique_key=['user_id', 'item_id'], on_schema_change='append_new_columns') }}

with events as (
    select e.* from {{ ref('int_events_enriched') }} as e
    {% if is_incremental() %}
    semi join (select distinct user_id, item_id from {{ ref('int_events_enriched') }}
               where {{ loaded_since_last_build() }}) as touched using (user_id, item_id)
    {% endif %}
)

select
    user_id,
    item_id,
    sum(case event_type
            when 'view' then 1 when 'click' then 2 when 'add_to_cart' then 4
            when 'purchase' then 8 end) as weight,
    count(*) as n_events,
    count(*) filter (where event_type = 'purchase') as n_purchases,
    min(event_timestamp) as first_interaction_at,
    max(event_timestamp) as last_interaction_at,
    {{ build_audit_columns() }}
from events
group by user_id, item_id
