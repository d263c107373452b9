"""Versioned feature services: the model's feature contract. A model records the service it was
trained with; a new feature set is a new version, never an edit of an old one."""

from __future__ import annotations

from feast import FeatureService, FeatureView

from feature_repo.names import (
    REPEAT,
    SEQUENCE,
    SERVING_SERVICE_V1,
    SERVING_SERVICE_V2,
    TRAINING_SERVICE_V1,
    TRAINING_SERVICE_V2,
    USER_ACTIVITY,
    USER_DAILY,
    USER_LIVE_SEQUENCE,
    USER_REPEAT,
    USER_SEQUENCE,
)


def services(views: dict[str, FeatureView]) -> list[FeatureService]:
    live, daily = views[USER_LIVE_SEQUENCE][SEQUENCE], views[USER_SEQUENCE][SEQUENCE]
    activity, repeat = views[USER_DAILY][USER_ACTIVITY], views[USER_REPEAT][REPEAT]
    return [
        FeatureService(
            name=SERVING_SERVICE_V1, features=[live, activity],
            description="Sequence recommender v1: live sequence + user activity features.",
        ),
        FeatureService(
            name=TRAINING_SERVICE_V1, features=[daily, activity],
            description=f"{SERVING_SERVICE_V1}'s features as of a past time (point-in-time "
                        "training sets read the daily sequence; serving reads the live one).",
        ),
        FeatureService(
            name=SERVING_SERVICE_V2, features=[live, activity, repeat],
            description="Recommender v2: live sequence + user activity + the repeat statistics "
                        "of the whole history (per item: sessions, purchase sessions, first "
                        "and last visit).",
        ),
        FeatureService(
            name=TRAINING_SERVICE_V2, features=[daily, activity, repeat],
            description=f"{SERVING_SERVICE_V2}'s features as of a past time (point-in-time "
                        "training sets read the daily sequence; serving reads the live one).",
        ),
    ]
