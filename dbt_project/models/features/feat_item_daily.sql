{{ config(unique_key=['item_id', 'feature_date']) }}
-- Per item per day with traffic: popularity over 1/7/30 days, CTR, conversion, price and age.

with events as (
    select item_id, event_type, event_date
    from {{ ref('int_events_enriched') }}
    where event_date >= {{ feature_start_day() }} - 30
),

daily as (
    select
        item_id,
        event_date as feature_date,
        count(*) filter (where event_type = 'view') as views,
        count(*) filter (where event_type = 'click') as clicks,
        count(*) filter (where event_type = 'add_to_cart') as add_to_carts,
        count(*) filter (where event_type = 'purchase') as purchases
    from events
    group by item_id, event_date
),

windowed as (
    select
        item_id,
        feature_date,
        views as views_1d,
        sum(views) over w7 as views_7d,
        sum(views) over w30 as views_30d,
        purchases as purchases_1d,
        sum(purchases) over w7 as purchases_7d,
        sum(purchases) over w30 as purchases_30d,
        sum(clicks) over w30 / nullif(sum(views) over w30, 0) as ctr_30d,
        sum(add_to_carts) over w30 / nullif(sum(views) over w30, 0) as add_to_cart_rate_30d,
        sum(purchases) over w30 / nullif(sum(views) over w30, 0) as conversion_30d
    from daily
    window
        w7 as (partition by item_id order by feature_date
               range between interval 6 days preceding and current row),
        w30 as (partition by item_id order by feature_date
                range between interval 29 days preceding and current row)
)

select
    w.*,
    i.price,
    i.category,
    i.brand,
    w.feature_date - cast(i.created_at as date) as age_days,
    {{ available_at('w.feature_date') }} as event_timestamp,
    {{ build_audit_columns() }}
from windowed as w
left join {{ ref('stg_shop__items') }} as i using (item_id)
where w.feature_date >= {{ feature_start_day() }}
