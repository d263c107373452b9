with source as (
    select * from {{ source('shop', 'users') }}
),

renamed as (
    select
        user_id,
        signup_at,
        country,
        segment,
        regexp_extract(filename, '([^/]+)/users\.parquet$', 1) as batch_id
    from source
)

select * from renamed
qualify row_number() over (partition by user_id order by batch_id desc) = 1
