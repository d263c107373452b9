{{ config(unique_key=['user_id', 'feature_date']) }}
-- What a user's whole history says about each item they came to, as of the end of each active
-- day: the ranker's repeat statistics (training/repeat.py holds the reference definitions; a
-- parity test holds the two equal). Per (user, item): the sessions that hold it, those in which it
-- was bought, the first event on it, and `last_us`, the first event on it in the latest session
-- that holds it (not the last event: that survives training's collapse of consecutive events).
-- Only the var('repeat_max_items') items with the latest last_us are kept, latest first, ties by
-- item id; with them the user's session count. Sessions are those of session_id (delivered or
-- derived), except that sessions of one user that interleave (two tabs at once) count as one, as
-- training counts them (training/data.py session_index).
--
-- Cost: events are read once and folded into visits, one row per (user, item, session). A
-- (user, item)'s figures change only on the days a visit starts or buys it: those changes are
-- accumulated once into item states, each valid over a run of the user's active days (numbered).
-- A state's place in the arrays (latest last visit first) is the same on every day it holds, so
-- each user's states are sorted once into one list, and a day's arrays are that list filtered to
-- the states valid on the day: no per-day sort, expansion or aggregation. An incremental run
-- reads the users active on the new days only and writes their new days only.
{% set max_items = var('repeat_max_items') | int %}

with
{% if is_incremental() %}
active as (
    select distinct user_id
    from {{ ref('int_events_enriched') }}
    where event_date >= {{ feature_start_day() }}
),
{% endif %}

events as (
    select user_id, item_id, session_id, event_type, event_timestamp, event_date,
           -- where the event stands in event_order() among the user's: compared within a user
           -- only, and an integer compares faster than a struct of event_order()'s columns
           row_number() over (partition by user_id order by {{ event_order() }}) as place
    from {{ ref('int_events_enriched') }}
    {% if is_incremental() %}
    where user_id in (select user_id from active)
    {% endif %}
),

-- one row per (user, item, session_id): its first event, the day of that event, and the day the
-- item was first bought in it (NULL: not bought). A session running past midnight counts from
-- its first day, its purchase from the purchase's day.
log_visits as (
    select
        user_id,
        item_id,
        session_id,
        min(epoch_us(event_timestamp)) as first_us,
        min(event_date) as first_date,
        min(event_date) filter (where event_type = 'purchase') as purchase_date
    from events
    group by user_id, item_id, session_id
),

log_sessions as (
    select user_id, session_id, min(place) as first_place, max(place) as last_place
    from events
    group by user_id, session_id
),

-- a session_id starts a session of its own only after every earlier one of the user ended (in
-- event_order()); one that begins inside another joins it
session_edges as (
    select
        user_id,
        session_id,
        first_place,
        max(last_place) over (partition by user_id order by first_place
                              rows between unbounded preceding and 1 preceding) as ended_before
    from log_sessions
),

sessions as (
    select
        user_id,
        session_id,
        sum(case when ended_before is null or first_place > ended_before then 1 else 0 end)
            over (partition by user_id order by first_place
                  rows between unbounded preceding and current row) as session_no
    from session_edges
),

-- one row per visit (user, item, session)
visits as (
    select
        v.user_id,
        v.item_id,
        s.session_no,
        min(v.first_us) as first_us,
        min(v.first_date) as first_date,
        min(v.purchase_date) as purchase_date
    from log_visits as v
    join sessions as s using (user_id, session_id)
    group by v.user_id, v.item_id, s.session_no
),

-- the user's active days, numbered; features are written from the first one on or after
-- feature_start_day()
days as (
    select
        user_id,
        event_date as feature_date,
        row_number() over (partition by user_id order by event_date) as day_no
    from (select distinct user_id, event_date from events)
),

bounds as (
    select
        user_id,
        min(day_no) filter (where feature_date >= {{ feature_start_day() }}) as first_no,
        max(day_no) as last_no
    from days
    group by user_id
),

-- sessions as of each active day: a session counts from the day of its first event
session_starts as (
    select user_id, first_date as feature_date, count(*) as n
    from (
        select user_id, min(first_date) as first_date
        from visits
        group by user_id, session_no
    )
    group by user_id, first_date
),

totals as (
    select
        d.user_id,
        d.feature_date,
        d.day_no,
        cast(sum(coalesce(s.n, 0)) over (partition by d.user_id order by d.day_no
                                         rows between unbounded preceding and current row)
             as bigint) as total_sessions
    from days as d
    left join session_starts as s using (user_id, feature_date)
),

-- what changes a (user, item) on a day: visits starting (a session more, maybe a later last
-- visit) and visits whose first purchase falls on it
changes as (
    select user_id, item_id, first_date as change_date, 1 as new_sessions, 0 as new_purchases,
           first_us
    from visits
    union all
    select user_id, item_id, purchase_date, 0, 1, null
    from visits
    where purchase_date is not null
),

daily_changes as (
    select
        c.user_id,
        c.item_id,
        d.day_no,
        sum(c.new_sessions) as new_sessions,
        sum(c.new_purchases) as new_purchases,
        min(c.first_us) as first_us,
        max(c.first_us) as last_us
    from changes as c
    join days as d on d.user_id = c.user_id and d.feature_date = c.change_date
    group by c.user_id, c.item_id, d.day_no
),

-- an item's figures from one change to the next: valid on day numbers [from_no, to_no)
item_states as (
    select
        c.user_id,
        c.item_id,
        c.day_no as from_no,
        coalesce(lead(c.day_no) over by_item, b.last_no + 1) as to_no,
        b.first_no,
        cast(sum(c.new_sessions) over upto as bigint) as sessions,
        cast(sum(c.new_purchases) over upto as bigint) as purchase_sessions,
        min(c.first_us) over upto as first_us,
        max(c.last_us) over upto as last_us
    from daily_changes as c
    join bounds as b using (user_id)
    where b.first_no is not null
    window
        by_item as (partition by c.user_id, c.item_id order by c.day_no),
        upto as (partition by c.user_id, c.item_id order by c.day_no
                 rows between unbounded preceding and current row)
),

-- each user's item states in the order the arrays keep (latest last visit first, ties by item
-- id): one order for every day, since a state's figures hold over its whole run of days. The
-- states are numbered in that order first: a list ordered by one integer is built ~3x faster
ordered_states as (
    select
        *,
        row_number() over (partition by user_id order by last_us desc, item_id) as state_no
    from item_states
    where to_no > first_no
),

user_states as (
    select
        user_id,
        list({'from_no': from_no, 'to_no': to_no, 'item_id': item_id, 'sessions': sessions,
              'purchase_sessions': purchase_sessions, 'first_us': first_us, 'last_us': last_us}
             order by state_no) as states
    from ordered_states
    group by user_id
),

-- per written day: the states valid on it, in that order, the first repeat_max_items of them (a
-- filter of one sorted list per user: no sort, no aggregation per day)
kept as (
    select
        t.user_id,
        t.feature_date,
        t.total_sessions,
        list_filter(u.states, lambda s: s.from_no <= t.day_no and t.day_no < s.to_no)
            [1:{{ max_items }}] as k
    from totals as t
    join bounds as b using (user_id)
    join user_states as u using (user_id)
    where t.day_no >= b.first_no
)

select
    user_id,
    feature_date,
    list_transform(k, lambda s: s.item_id) as repeat_item_ids,
    list_transform(k, lambda s: s.sessions) as repeat_sessions,
    list_transform(k, lambda s: s.purchase_sessions) as repeat_purchase_sessions,
    list_transform(k, lambda s: s.first_us) as repeat_first_times_us,
    list_transform(k, lambda s: s.last_us) as repeat_last_times_us,
    total_sessions,
    {{ available_at('feature_date') }} as event_timestamp,
    {{ build_audit_columns() }}
from kept
