"""For the Feast CLI (`feast -c feature_repo apply`): the objects for $SHOPREC_FEATURES_DIR.
`shoprec features apply` builds the same objects in-process instead."""

import os
from pathlib import Path

from definitions import build  # type: ignore[import-not-found]

objects = build(Path(os.environ.get("SHOPREC_FEATURES_DIR", ".shoprec/features/shop")))
(user, item, user_daily_source, item_daily_source, user_sequence_source, live_events,
 user_daily, item_daily, user_sequence, user_live_sequence,
 recommender_v1, recommender_training_v1) = objects
