-- Users with activity totals: every user the users export delivered and every user seen in the
-- events (a shop may never send a customer list). Only coarse attributes (country, segment)
-- reach the marts, so they are safe to share with analysts.
with activity as (
    select
        user_id,
        count(distinct session_id) as lifetime_sessions,
        count(*) filter (where event_type = 'purchase') as lifetime_purchases,
        {{ unpriced_purchases() }} as lifetime_unpriced_purchases,
        {{ purchase_revenue() }} as lifetime_revenue,
        min(event_timestamp) as first_event_at,
        max(event_timestamp) as last_event_at
    from {{ ref('int_events_enriched') }}
    group by user_id
)

select
    user_id,
    u.user_id is not null as in_users_export,
    u.signup_at,
    u.country,
    u.segment,
    coalesce(a.lifetime_sessions, 0) as lifetime_sessions,
    coalesce(a.lifetime_purchases, 0) as lifetime_purchases,
    coalesce(a.lifetime_unpriced_purchases, 0) as lifetime_unpriced_purchases,
    -- NULL (unknown) when every purchase lacked a price; 0 without purchases or events
    case when a.user_id is null then {{ money('0') }} else a.lifetime_revenue end
        as lifetime_revenue,
    a.first_event_at,
    a.last_event_at
from {{ ref('stg_shop__users') }} as u
full outer join activity as a using (user_id)
