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
        cast(event_seq as bigint) as event_seq,
        regexp_extract(filename, '([^/]+)/events\.parquet$', 1) as batch_id
    from source
),

-- an event re-delivered in a later batch counts once: keep its first delivery by arrival
-- (not by batch name: a late batch may carry an older date), within one its first source row.
-- delivery_position (the batch's place in the arrival order) and event_seq break ties in time
-- (macro event_order)
deduplicated as (
    select r.*, d.position as delivery_position from renamed as r
    left join {{ ref('stg_shop__deliveries') }} as d using (batch_id)
    qualify row_number() over (partition by r.event_id
                               order by d.position nulls last, r.batch_id,
                                        r.event_seq nulls last, r.event_timestamp) = 1
),

-- Sessions of events delivered without a session_id, derived here where a user's whole history
-- is visible: a user's session-less events in event_order(); a session starts at the first of
-- them and after any gap longer than var('session_gap_minutes'). Its id is
-- '<user_id>~s<epoch microseconds of its first event>': the same input gives the same ids.
sessionless as (
    select
        *,
        coalesce(epoch_us(event_timestamp) - lag(epoch_us(event_timestamp)) over by_user
                 > {{ var('session_gap_minutes') | int }} * 60000000, true) as starts_session
    from deduplicated
    where session_id is null
    window by_user as (partition by user_id order by {{ event_order() }})
),

derived as (
    select
        * exclude (starts_session) replace (
            user_id || '~s' || max(case when starts_session then epoch_us(event_timestamp) end)
                over (partition by user_id order by {{ event_order() }}
                      rows between unbounded preceding and current row) as session_id),
        'derived' as session_id_source
    from sessionless
)

select *, 'delivered' as session_id_source from deduplicated where session_id is not null
union all by name
select * from derived
