"""Versioned feature services: the model's feature contract. A model records the service it was
trained with; a new feature set is a new version, never an edit of an old one."""

from __future__ import annotations

from feast import FeatureService, FeatureView

SEQUENCE = ["recent_item_ids", "recent_event_types", "recent_event_times_us"]
USER_ACTIVITY = ["views_7d", "purchases_30d", "spend_30d", "mean_price_paid_30d",
                 "top_category_30d", "days_since_prev_active"]


def services(views: dict[str, FeatureView]) -> list[FeatureService]:
    return [
        FeatureService(
            name="recommender_v1",
            features=[views["user_live_sequence"][SEQUENCE],
                      views["user_daily"][USER_ACTIVITY]],
            description="Sequence recommender v1: live sequence + user activity features.",
        ),
        FeatureService(
            name="recommender_training_v1",
            features=[views["user_sequence"][SEQUENCE], views["user_daily"][USER_ACTIVITY]],
            description="recommender_v1's features as of a past time (point-in-time training "
                        "sets read the daily sequence; serving reads the live one).",
        ),
    ]
