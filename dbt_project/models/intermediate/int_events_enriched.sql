{{ config(materialized='incremental', incremental_strategy='append',
          on_schema_change='append_new_columns') }}
-- Events with their item's category/brand, built once so every downstream model reads a table
-- instead of re-running staging's dedup and session windows. Incremental by batch: a run appends
-- only the batches it has not seen. Items missing from the catalogue, or delivered without a
-- category or brand, read 'unknown'.

with events as (
    select * from {{ ref('stg_shop__events') }}
    {% if is_incremental() %}
    where batch_id not in (select distinct batch_id from {{ this }})
    {% endif %}
),

items as (
    select item_id, category, brand from {{ ref('stg_shop__items') }}
)

select
    e.event_id,
    e.user_id,
    e.item_id,
    e.event_type,
    e.event_timestamp,
    e.event_date,
    e.session_id,
    e.session_id_source,
    e.price,
    e.quantity,
    coalesce(i.category, 'unknown') as category,
    coalesce(i.brand, 'unknown') as brand,
    e.batch_id,
    e.delivery_position,
    e.event_seq,
    cast('{{ run_started_at }}' as timestamptz) as loaded_at  -- drives the features' increments
from events as e
left join items as i using (item_id)
