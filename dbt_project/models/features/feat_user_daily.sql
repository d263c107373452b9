{{ config(unique_key=['user_id', 'feature_date']) }}
-- Per user per active day: activity counts over 1/7/30 days, recency, top category, spend.
-- Windows are calendar windows ending on feature_date (7d = feature_date-6 .. feature_date).
-- Spend and mean price paid count the purchases with a known price only; unknown (NULL) when
-- every purchase of the window lacks a price.

with events as (
    select user_id, event_type, event_date, event_timestamp, price, quantity, category
    from {{ ref('int_events_enriched') }}
    where event_date >= {{ feature_start_day() }} - 30
),

-- each user's last active day before the events read: an incremental run reads 30 days before
-- its first feature day, and the first active day among them still has an earlier one
earlier as (
    select user_id, max(event_date) as prev_day
    from {{ ref('int_events_enriched') }}
    where event_date < {{ feature_start_day() }} - 30
    group by user_id
),

daily as (
    select
        user_id,
        event_date as feature_date,
        count(*) filter (where event_type = 'view') as views,
        count(*) filter (where event_type = 'click') as clicks,
        count(*) filter (where event_type = 'add_to_cart') as add_to_carts,
        count(*) filter (where event_type = 'purchase') as purchases,
        -- NULL when the day's purchases all lack a price (unknown, not 0)
        sum({{ money('price * quantity') }}) filter (where event_type = 'purchase') as spend,
        -- units with a known price: the denominator of the mean price paid
        coalesce(sum(quantity) filter (where event_type = 'purchase' and price is not null), 0)
            as units,
        max(event_timestamp) as last_event_at
    from events
    group by user_id, event_date
),

windowed as (
    select
        user_id,
        feature_date,
        views as views_1d,
        sum(views) over w7 as views_7d,
        sum(views) over w30 as views_30d,
        clicks as clicks_1d,
        sum(clicks) over w7 as clicks_7d,
        sum(clicks) over w30 as clicks_30d,
        add_to_carts as add_to_carts_1d,
        sum(add_to_carts) over w7 as add_to_carts_7d,
        sum(add_to_carts) over w30 as add_to_carts_30d,
        purchases as purchases_1d,
        sum(purchases) over w7 as purchases_7d,
        sum(purchases) over w30 as purchases_30d,
        -- the purchases with a known price; NULL when the window's purchases all lack one, 0
        -- when it has none
        cast(case when sum(purchases) over w30 = 0 then 0 else sum(spend) over w30 end
             as double) as spend_30d,
        cast(round(sum(spend) over w30 / nullif(sum(units) over w30, 0), 4) as double)
            as mean_price_paid_30d,
        feature_date - coalesce(lag(feature_date) over (partition by user_id
                                                        order by feature_date), e.prev_day)
            as days_since_prev_active,
        last_event_at
    from daily
    left join earlier as e using (user_id)
    window
        w7 as (partition by user_id order by feature_date
               range between interval 6 days preceding and current row),
        w30 as (partition by user_id order by feature_date
                range between interval 29 days preceding and current row)
),

category_daily as (
    select user_id, event_date, category, count(*) as n
    from events
    group by user_id, event_date, category
),

top_category as (
    select user_id, feature_date, category as top_category_30d,
           n_30d / total_30d as top_category_share_30d
    from (
        select
            d.user_id,
            d.feature_date,
            c.category,
            sum(c.n) as n_30d,
            sum(sum(c.n)) over (partition by d.user_id, d.feature_date) as total_30d,
            row_number() over (partition by d.user_id, d.feature_date
                               order by sum(c.n) desc, c.category) as rank
        from daily as d
        join category_daily as c
          on c.user_id = d.user_id
         and c.event_date between d.feature_date - 29 and d.feature_date
        group by d.user_id, d.feature_date, c.category
    )
    where rank = 1
)

select
    w.*,
    t.top_category_30d,
    t.top_category_share_30d,
    {{ available_at('w.feature_date') }} as event_timestamp,
    {{ build_audit_columns() }}
from windowed as w
join top_category as t using (user_id, feature_date)
where w.feature_date >= {{ feature_start_day() }}
