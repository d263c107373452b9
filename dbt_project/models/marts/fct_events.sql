{{ config(materialized='incremental', incremental_strategy='append',
          on_schema_change='append_new_columns') }}
-- Every event, typed and enriched; appended batch by batch. A user's events are ordered by
-- event_order(): event_timestamp, then delivery_position, event_seq, md5(event_id).
select
    event_id, user_id, item_id, event_type, event_timestamp, event_date, session_id,
    price, quantity, category, brand, batch_id, session_id_source, delivery_position, event_seq
from {{ ref('int_events_enriched') }}
{% if is_incremental() %}
where batch_id not in (select distinct batch_id from {{ this }})
{% endif %}
