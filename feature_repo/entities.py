"""Entities: the keys features hang on."""

from feast import Entity
from feast.value_type import ValueType

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING,
              description="A shopper (contract users.user_id).")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING,
              description="A catalogue item (contract items.item_id).")
