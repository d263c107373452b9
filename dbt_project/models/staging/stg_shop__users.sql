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

select r.* from renamed as r
left join {{ ref('stg_shop__deliveries') }} as d using (batch_id)
qualify row_number() over (partition by r.user_id
                           order by d.position desc nulls last, r.batch_id desc) = 1
