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

-- the newest delivery of an item (by arrival) wins: price or title changes
select r.* from renamed as r
left join {{ ref('stg_shop__deliveries') }} as d using (batch_id)
qualify row_number() over (partition by r.item_id
                           order by d.position desc nulls last, r.batch_id desc) = 1
