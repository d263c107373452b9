"""Feature views over dbt's feature tables, and the stream view fed by live pushes.

TTLs: daily aggregates go stale after their longest window (30 days); a user's sequence and
repeat statistics stay meaningful for 90 days of inactivity.
"""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field, FileSource, PushSource
from feast.stream_feature_view import StreamFeatureView
from feast.types import Array, Float64, Int64, String, UnixTimestamp

from feature_repo.entities import item, user
from feature_repo.names import (
    ITEM_DAILY,
    REPEAT,
    SEQUENCE,
    USER_DAILY,
    USER_LIVE_SEQUENCE,
    USER_REPEAT,
    USER_SEQUENCE,
)


def user_daily(source: FileSource) -> FeatureView:
    counts = [f"{t}_{w}" for t in ("views", "clicks", "add_to_carts", "purchases")
              for w in ("1d", "7d", "30d")]
    return FeatureView(
        name=USER_DAILY, entities=[user], ttl=timedelta(days=30), source=source, online=True,
        schema=[*(Field(name=c, dtype=Int64) for c in counts),
                Field(name="spend_30d", dtype=Float64),
                Field(name="mean_price_paid_30d", dtype=Float64),
                Field(name="days_since_prev_active", dtype=Int64),
                Field(name="top_category_30d", dtype=String),
                Field(name="top_category_share_30d", dtype=Float64),
                Field(name="last_event_at", dtype=UnixTimestamp)],
        description="User activity per day (dbt features.feat_user_daily).",
    )


def item_daily(source: FileSource) -> FeatureView:
    return FeatureView(
        name=ITEM_DAILY, entities=[item], ttl=timedelta(days=30), source=source, online=True,
        schema=[*(Field(name=f"{t}_{w}", dtype=Int64) for t in ("views", "purchases")
                  for w in ("1d", "7d", "30d")),
                Field(name="ctr_30d", dtype=Float64),
                Field(name="add_to_cart_rate_30d", dtype=Float64),
                Field(name="conversion_30d", dtype=Float64),
                Field(name="price", dtype=Float64),
                Field(name="category", dtype=String),
                Field(name="brand", dtype=String),
                Field(name="age_days", dtype=Int64)],
        description="Item popularity and conversion per day (dbt features.feat_item_daily).",
    )


_SEQUENCE_TYPES = dict(zip(SEQUENCE, (Array(String), Array(String), Array(Int64)), strict=True))
SEQUENCE_FIELDS = [*(Field(name=n, dtype=t) for n, t in _SEQUENCE_TYPES.items()),
                   Field(name="sequence_length", dtype=Int64)]


def user_sequence(source: FileSource) -> FeatureView:
    return FeatureView(
        name=USER_SEQUENCE, entities=[user], ttl=timedelta(days=90), source=source,
        online=True, schema=SEQUENCE_FIELDS,
        description="The last N interactions at the end of each day (dbt, for training sets).",
    )


def user_live_sequence(push: PushSource) -> StreamFeatureView:
    return StreamFeatureView(
        name=USER_LIVE_SEQUENCE, entities=[user], ttl=timedelta(days=90), source=push,
        online=True, schema=SEQUENCE_FIELDS, timestamp_field="event_timestamp",
        description="The last N interactions up to the latest pushed event (real-time).",
    )


_REPEAT_TYPES = dict(zip(REPEAT, (Array(String), Array(Int64), Array(Int64), Array(Int64),
                                  Array(Int64), Int64), strict=True))


def user_repeat(source: FileSource) -> FeatureView:
    return FeatureView(
        name=USER_REPEAT, entities=[user], ttl=timedelta(days=90), source=source, online=True,
        schema=[Field(name=n, dtype=t) for n, t in _REPEAT_TYPES.items()],
        description="Per item of the whole history, latest last visit first: sessions, purchase "
                    "sessions, first and last visit (µs); and the session count (dbt "
                    "features.feat_user_item_history, at the end of each active day).",
    )
