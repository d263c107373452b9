{# Revenue of the purchases in a group, where a purchase line without a price is unknown, not 0:
   the sum of the lines with a price; NULL where the group has purchases but none has a price;
   0 only where it has no purchase at all. Lines with a price are summed even when others lack
   one: unpriced_purchases() says how many lines such a sum leaves out. #}
{% macro purchase_revenue(price='price', quantity='quantity') -%}
    case when count(*) filter (where event_type = 'purchase') = 0 then {{ money('0') }}
         else sum({{ money(price ~ ' * ' ~ quantity) }}) filter (where event_type = 'purchase')
    end
{%- endmacro %}

{# Purchase lines whose revenue is unknown (delivered without a price). #}
{% macro unpriced_purchases(price='price') -%}
    count(*) filter (where event_type = 'purchase' and {{ price }} is null)
{%- endmacro %}
