with source as (
    select * from {{ source('shop', 'events') }}
),

renamed as (
    select
        event_id,
        user_id,
        item_id,
        event_type,
        event_timestamp,
        cast(event_timestamp as date) as event_date,
        session_id,
        cast(price as double) as price,
        coalesce(quantity, 1) as quantity,
        regexp_extract(filename, '([^/]+)/events\.parquet$', 1) as batch_id
    from source
)

-- an event re-delivered in a later batch counts once: keep its first delivery by arrival
-- (not by batch name: a late batch may carry an older date)
select r.* from renamed as r
left join {{ ref('stg_shop__deliveries') }} as d using (batch_id)
qualify row_number() over (partition by r.event_id
                           order by d.position nulls last, r.batch_id, r.event_timestamp) = 1
