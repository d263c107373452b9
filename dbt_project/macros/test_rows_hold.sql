{# A generic test: every row of the model satisfies `expression` (a SQL boolean over its
   columns); the rows where it is false or NULL fail. #}
{% test rows_hold(model, expression) %}
select *
from {{ model }}
where not coalesce(({{ expression }}), false)
{% endtest %}
