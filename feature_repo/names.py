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
EXPORTS = {
    USER_DAILY: "features.feat_user_daily",
    ITEM_DAILY: "features.feat_item_daily",
    USER_SEQUENCE: "features.feat_user_recent_sequence",
}

LIVE_EVENTS = "live_events"  # push source of USER_LIVE_SEQUENCE

# feature lists
SEQUENCE = ["recent_item_ids", "recent_event_types", "recent_event_times_us"]
USER_ACTIVITY = ["views_7d", "purchases_30d", "spend_30d", "mean_price_paid_30d",
                 "top_category_30d", "days_since_prev_active"]
# the numeric user features the model reads, in the order of its input vector
MODEL_USER_FEATURES = ["views_7d", "purchases_30d", "spend_30d", "mean_price_paid_30d",
                       "days_since_prev_active"]
assert set(MODEL_USER_FEATURES) <= set(USER_ACTIVITY)

# versioned feature services: the model's feature contract. Serving reads SERVING_SERVICE from
# the online store; training reads its twin point-in-time. A new feature set is a new version.
SERVING_SERVICE = "recommender_v1"
TRAINING_SERVICE = "recommender_training_v1"
