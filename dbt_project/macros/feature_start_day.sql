{# First feature day an incremental run (re)computes: the earliest event day among the events
   loaded since this table was last built (a new batch, its sessions that ran past midnight,
   late events), minus var('feature_lookback_days'). Every later day is recomputed too, since
   windows depend on it; with nothing new it is far in the future and nothing is rebuilt. #}
{% macro feature_start_day() -%}
    {%- if is_incremental() -%}
    (select coalesce(min(event_date), date '9999-12-31') - {{ var('feature_lookback_days') }}
     from {{ ref('int_events_enriched') }}
     where {{ loaded_since_last_build() }})
    {%- else -%}
    date '1900-01-01'
    {%- endif -%}
{%- endmacro %}

{# Events of int_events_enriched that the incremental model being built has not seen: loaded
   after its newest row was built (every event when it holds none, or was built as a table
   without audit columns before it became incremental). #}
{% macro loaded_since_last_build() -%}
    {%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
    {%- if 'built_at' in columns -%}
    loaded_at > (select coalesce(max(built_at), timestamptz '1900-01-01') from {{ this }})
    {%- else -%}
    true
    {%- endif -%}
{%- endmacro %}

{# Features of day D are known at the end of D: Feast sees them from D+1 00:00 UTC on, so a
   point-in-time join never hands a model a value computed from its own future. #}
{% macro available_at(day_column) -%}
    cast({{ day_column }} + 1 as timestamp) at time zone 'UTC'
{%- endmacro %}

{# Audit columns of incremental tables: which dbt run wrote the row, and when that run started. #}
{% macro build_audit_columns() -%}
    '{{ invocation_id }}' as dbt_invocation_id,
    cast('{{ run_started_at }}' as timestamptz) as built_at
{%- endmacro %}

{# Money is summed as DECIMAL: a float sum depends on the order threads add it up, and two builds
   of the same input must give the same bytes. #}
{% macro money(expr) -%}
    cast({{ expr }} as decimal(18, 2))
{%- endmacro %}
