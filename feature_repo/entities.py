"""Entities: the keys features hang on."""

from feast import Entity
from feast.value_type import ValueType

from feature_repo.names import ITEM, ITEM_KEY, USER, USER_KEY

user = Entity(name=USER, join_keys=[USER_KEY], value_type=ValueType.STRING,
              description="A shopper (contract users.user_id).")
item = Entity(name=ITEM, join_keys=[ITEM_KEY], value_type=ValueType.STRING,
              description="A catalogue item (contract items.item_id).")
