-- Users with activity totals. Only coarse attributes (country, segment) reach the marts, so
-- they are safe to share with analysts.
with activity as (
    select
        user_id,
        count(distinct session_id) as lifetime_sessions,
        count(*) filter (where event_type = 'purchase') as lifetime_purchases,
        coalesce(sum({{ money('price * quantity') }}) filter (where event_type = 'purchase'), 0)
            as lifetime_revenue,
        min(event_timestamp) as first_event_at,
        max(event_timestamp) as last_event_at
    from {{ ref('int_events_enriched') }}
    group by user_id
)

select
    u.user_id,
    u.signup_at,
    u.country,
    u.segment,
    coalesce(a.lifetime_sessions, 0) as lifetime_sessions,
    coalesce(a.lifetime_purchases, 0) as lifetime_purchases,
    coalesce(a.lifetime_revenue, 0) as lifetime_revenue,
    a.first_event_at,
    a.last_event_at
from {{ ref('stg_shop__users') }} as u
left join activity as a using (user_id)
