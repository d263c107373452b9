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

-- an event re-delivered in a later batch counts once: keep its first delivery
select * from renamed
qualify row_number() over (partition by event_id order by batch_id, event_timestamp) = 1
