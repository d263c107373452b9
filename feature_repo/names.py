"""Every Feast name Shoprec uses, defined once. The definitions in this folder, the exports, the
live pushes, training and serving import these; nothing spells a name again or derives one by
editing another."""

from __future__ import annotations

# entities and their join keys (contract columns)
USER, USER_KEY = "user", "user_id"
ITEM, ITEM_KEY = "item", "item_id"

# feature views, and the dbt table each one's offline source is exported from
USER_DAILY = "user_daily"
ITEM_DAILY = "item_daily"
USER_SEQUENCE = "user_sequence"
USER_LIVE_SEQUENCE = "user_live_sequence"  # stream view fed by pushes (real time)
USER_REPEAT = "user_repeat"  # per (user, item) repeat statistics of the whole history
EXPORTS = {
    USER_DAILY: "features.feat_user_daily",
    ITEM_DAILY: "features.feat_item_daily",
    USER_SEQUENCE: "features.feat_user_recent_sequence",
    USER_REPEAT: "features.feat_user_item_history",
}

LIVE_EVENTS = "live_events"  # push source of USER_LIVE_SEQUENCE

# feature lists
SEQUENCE = ["recent_item_ids", "recent_event_types", "recent_event_times_us"]
USER_ACTIVITY = ["views_7d", "purchases_30d", "spend_30d", "mean_price_paid_30d",
                 "top_category_30d", "days_since_prev_active"]
# repeat statistics (training/repeat.py's definitions): one array element per item, the items
# with the latest last visit first, and the user's session count
REPEAT = ["repeat_item_ids", "repeat_sessions", "repeat_purchase_sessions",
          "repeat_first_times_us", "repeat_last_times_us", "total_sessions"]
# the numeric user features the model reads, in the order of its input vector
MODEL_USER_FEATURES = ["views_7d", "purchases_30d", "spend_30d", "mean_price_paid_30d",
                       "days_since_prev_active"]
assert set(MODEL_USER_FEATURES) <= set(USER_ACTIVITY)

# versioned feature services: the model's feature contract. Serving reads SERVING_SERVICE from
# the online store; training reads its twin point-in-time. A new feature set is a new version;
# the old ones stay defined, since the models trained with them name them.
SERVING_SERVICE_V1 = "recommender_v1"  # live sequence + user activity
TRAINING_SERVICE_V1 = "recommender_training_v1"
SERVING_SERVICE_V2 = "recommender_v2"  # v1 + repeat statistics
TRAINING_SERVICE_V2 = "recommender_training_v2"
SERVING_SERVICE = SERVING_SERVICE_V2
TRAINING_SERVICE = TRAINING_SERVICE_V2
