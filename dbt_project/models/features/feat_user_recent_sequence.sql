{{ config(unique_key=['user_id', 'feature_date']) }}
-- The user's last N interactions (items and event types, oldest first) as of the end of each
-- active day: the sequence model's input. An incremental run reads the whole history of the
-- users active on the new days only.
{% set n = var('recent_sequence_length') | int %}

with
{% if is_incremental() %}
active as (
    select distinct user_id
    from {{ ref('int_events_enriched') }}
    where event_date >= {{ feature_start_day() }}
),
{% endif %}

events as (
    select user_id, item_id, event_type, event_timestamp, event_date, event_id,
           delivery_position, event_seq
    from {{ ref('int_events_enriched') }}
    {% if is_incremental() %}
    where user_id in (select user_id from active)
    {% endif %}
),

ranked as (
    select
        *,
        -- ties in time as training orders them: no item property (macro event_order)
        row_number() over (partition by user_id order by {{ event_order() }}) as rn
    from events
),

day_end as (
    select user_id, event_date, max(rn) as rn_end, max(event_timestamp) as last_event_at
    from ranked
    where event_date >= {{ feature_start_day() }}
    group by user_id, event_date
),

-- the positions of the last N events at each day's end: an equi-join on (user, position) is
-- far cheaper than a framed list() window over every event
wanted as (
    select user_id, event_date, last_event_at,
           unnest(range(greatest(rn_end - {{ n }} + 1, 1), rn_end + 1)) as rn
    from day_end
)

select
    w.user_id,
    w.event_date as feature_date,
    list(r.item_id order by r.rn) as recent_item_ids,
    list(r.event_type order by r.rn) as recent_event_types,
    list(epoch_us(r.event_timestamp) order by r.rn) as recent_event_times_us,
    count(*) as sequence_length,
    w.last_event_at,
    {{ available_at('w.event_date') }} as event_timestamp,
    {{ build_audit_columns() }}
from wanted as w
join ranked as r using (user_id, rn)
group by w.user_id, w.event_date, w.last_event_at
