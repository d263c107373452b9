"""Versioned feature services: the model's feature contract. A model records the service it was
trained with; a new feature set is a new version, never an edit of an old one."""

from __future__ import annotations

from feast import FeatureService, FeatureView

from feature_repo.names import (
    SEQUENCE,
    SERVING_SERVICE,
    TRAINING_SERVICE,
    USER_ACTIVITY,
    USER_DAILY,
    USER_LIVE_SEQUENCE,
    USER_SEQUENCE,
)


def services(views: dict[str, FeatureView]) -> list[FeatureService]:
    return [
        FeatureService(
            name=SERVING_SERVICE,
            features=[views[USER_LIVE_SEQUENCE][SEQUENCE], views[USER_DAILY][USER_ACTIVITY]],
            description="Sequence recommender v1: live sequence + user activity features.",
        ),
        FeatureService(
            name=TRAINING_SERVICE,
            features=[views[USER_SEQUENCE][SEQUENCE], views[USER_DAILY][USER_ACTIVITY]],
            description=f"{SERVING_SERVICE}'s features as of a past time (point-in-time "
                        "training sets read the daily sequence; serving reads the live one).",
        ),
    ]
