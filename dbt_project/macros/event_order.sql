{# The order of a user's events: time, then ties by a rule that uses no item property
   (contract.TIE_ORDER, the same in training and evaluation): the delivery's place in the
   arrival order, the event's place in its delivery (event_seq: the source's row order), and
   where both are missing or equal an md5 of the event id, never the id's text (an id may spell
   the item). `alias`: the relation's prefix, e.g. 'r.'. #}
{% macro event_order(alias='') -%}
    {{ alias }}event_timestamp, {{ alias }}delivery_position nulls last,
    {{ alias }}event_seq nulls last, md5({{ alias }}event_id)
{%- endmacro %}
