with source as (
    select * from {{ source('shop', 'items') }}
),

renamed as (
    select
        item_id,
        title,
        category,
        brand,
        cast(price as double) as price,
        created_at,
        regexp_extract(filename, '([^/]+)/items\.parquet$', 1) as batch_id
    from source
)

-- the newest delivery of an item wins (price or title changes)
select * from renamed
qualify row_number() over (partition by item_id order by batch_id desc) = 1
