"""Every Feast object of Shoprec, built for one features directory."""

from __future__ import annotations

from pathlib import Path

import data_sources  # type: ignore[import-not-found]
import feature_services  # type: ignore[import-not-found]
import feature_views  # type: ignore[import-not-found]
from entities import item, user  # type: ignore[import-not-found]


def build(features_dir: Path) -> list:
    src = data_sources.batch_sources(features_dir)
    push = data_sources.live_events_push_source(features_dir)
    views = {
        "user_daily": feature_views.user_daily(src["user_daily"]),
        "item_daily": feature_views.item_daily(src["item_daily"]),
        "user_sequence": feature_views.user_sequence(src["user_sequence"]),
        "user_live_sequence": feature_views.user_live_sequence(push),
    }
    return [user, item, *src.values(), push, *views.values(),
            *feature_services.services(views)]
