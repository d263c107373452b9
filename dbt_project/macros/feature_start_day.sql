{# First feature day an incremental run (re)computes: the day after the newest built one, minus
   var('feature_lookback_days') for late data. On a full build every day is computed. #}
{% macro feature_start_day() -%}
    {%- if is_incremental() -%}
    (select coalesce(max(feature_date), date '1900-01-01') - {{ var('feature_lookback_days') }} + 1
     from {{ this }})
    {%- else -%}
    date '1900-01-01'
    {%- endif -%}
{%- endmacro %}

{# Features of day D are known at the end of D: Feast sees them from D+1 00:00 UTC on, so a
   point-in-time join never hands a model a value computed from its own future. #}
{% macro available_at(day_column) -%}
    cast({{ day_column }} + 1 as timestamp) at time zone 'UTC'
{%- endmacro %}
