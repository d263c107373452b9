with source as (
    select * from {{ source('shop', 'deliveries') }}
),

renamed as (
    select
        regexp_extract(filename, '([^/]+)/_delivery\.json$', 1) as batch_id,
        cast(arrival as bigint) as arrival,
        -- where the batch's rows stand in the delivery order: a corrected version keeps the
        -- position of the batch it corrects
        cast(coalesce(position, arrival) as bigint) as position,
        cast(landed_at as timestamptz) as landed_at,
        cast(source as varchar) as delivered_from
    from source
)

select * from renamed
