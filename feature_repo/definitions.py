"""Every Feast object of Shoprec, built for one dataset's exports directory."""

from __future__ import annotations

from pathlib import Path

from feature_repo import data_sources, feature_services, feature_views
from feature_repo.entities import item, user
from feature_repo.names import (
    ITEM_DAILY,
    USER_DAILY,
    USER_LIVE_SEQUENCE,
    USER_REPEAT,
    USER_SEQUENCE,
)


def build(exports_dir: Path) -> list:
    src = data_sources.batch_sources(exports_dir)
    push = data_sources.live_events_push_source(src[USER_SEQUENCE])
    views = {
        USER_DAILY: feature_views.user_daily(src[USER_DAILY]),
        ITEM_DAILY: feature_views.item_daily(src[ITEM_DAILY]),
        USER_SEQUENCE: feature_views.user_sequence(src[USER_SEQUENCE]),
        USER_LIVE_SEQUENCE: feature_views.user_live_sequence(push),
        USER_REPEAT: feature_views.user_repeat(src[USER_REPEAT]),
    }
    return [user, item, *src.values(), push, *views.values(),
            *feature_services.services(views)]
