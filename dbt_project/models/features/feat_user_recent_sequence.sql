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

-- each user's events numbered in event_order() once: ordering the aggregate by that one integer
-- costs a third of ordering it by event_order()'s columns (md5 strings among them)
ranked as (
    select user_id, item_id, event_type, event_timestamp, event_date,
           row_number() over (partition by user_id order by {{ event_order() }}) as rn
    from events
),

-- each user's events in that order, once: a day's sequence is a slice of it
sequences as (
    select
        user_id,
        list({'item_id': item_id, 'event_type': event_type,
              'us': epoch_us(event_timestamp)} order by rn) as seq
    from ranked
    group by user_id
),

-- where a day ends in that order: event_order() sorts by time first, so the events of a day and
-- the days before it are the first rn_end (no join per event)
day_end as (
    select user_id, event_date, max(event_timestamp) as last_event_at, max(rn) as rn_end
    from ranked
    group by user_id, event_date
),

kept as (
    select d.user_id, d.event_date, d.last_event_at,
           s.seq[greatest(d.rn_end - {{ n }} + 1, 1):d.rn_end] as k
    from day_end as d
    join sequences as s using (user_id)
    where d.event_date >= {{ feature_start_day() }}
)

select
    user_id,
    event_date as feature_date,
    list_transform(k, lambda e: e.item_id) as recent_item_ids,
    list_transform(k, lambda e: e.event_type) as recent_event_types,
    list_transform(k, lambda e: e.us) as recent_event_times_us,
    len(k) as sequence_length,
    last_event_at,
    {{ available_at('event_date') }} as event_timestamp,
    {{ build_audit_columns() }}
from kept
