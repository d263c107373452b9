{# Plain schema names (staging, marts, features) instead of dbt's <target>_<custom> default:
   analysts query marts.fct_orders, not main_marts.fct_orders. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
