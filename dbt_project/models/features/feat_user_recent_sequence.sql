{{ config(unique_key=['user_id', 'feature_date']) }}
-- The user's last N interactions (items and event types, oldest first) as of the end of each
-- active day: the sequence model's input. An incremental run reads the whole history of the
-- users active on the new days only.
{% set n = var('recent_sequence_length') %}

with
{% if is_incremental() %}
active as (
    select distinct user_id
    from {{ ref('int_events_enriched') }}
    where event_date >= {{ feature_start_day() }}
),
{% endif %}

events as (
    select user_id, item_id, event_type, event_timestamp, event_date, event_id
    from {{ ref('int_events_enriched') }}
    {% if is_incremental() %}
    where user_id in (select user_id from active)
    {% endif %}
),

sequenced as (
    select
        user_id,
        event_date,
        event_timestamp,
        list(item_id) over w as recent_item_ids,
        list(event_type) over w as recent_event_types,
        row_number() over (partition by user_id, event_date
                           order by event_timestamp desc, event_id desc) as from_day_end
    from events
    window w as (partition by user_id order by event_timestamp, event_id
                 rows between {{ n - 1 }} preceding and current row)
)

select
    user_id,
    event_date as feature_date,
    recent_item_ids,
    recent_event_types,
    len(recent_item_ids) as sequence_length,
    event_timestamp as last_event_at,
    {{ available_at('event_date') }} as event_timestamp
from sequenced
where from_day_end = 1
  and event_date >= {{ feature_start_day() }}
