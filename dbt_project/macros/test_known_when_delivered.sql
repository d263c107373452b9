{# A generic test: every value of the column is a `field` of a row of `to` where `delivered`
   holds, once any such row exists. A table no delivery ever brought (a shop that sends no
   catalogue or no customer list) says nothing about the ids used elsewhere: no failure then. #}
{% test known_when_delivered(model, column_name, to, field, delivered) %}
with known as (
    select {{ field }} as id from {{ to }} where {{ delivered }}
)

select c.{{ column_name }}
from {{ model }} as c
where c.{{ column_name }} is not null
  and exists (select 1 from known)
  and not exists (select 1 from known as k where k.id = c.{{ column_name }})
{% endtest %}
