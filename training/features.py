"""Point-in-time user features from Feast, through the model's training FeatureService.

Each interaction is predicted with the user's features as of the start of its day (dbt stamps a
day's aggregates at the next midnight, so nothing of the day itself leaks in). One Feast
historical retrieval serves every distinct (user, day) of the data; positions then index into that
table. Serving computes the same vector from the online store with `user_feature_vector`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_repo.names import MODEL_USER_FEATURES, TRAINING_SERVICE, USER_KEY
from shoprec.config import Settings
from training.data import Interactions
from training.splits import DAY_US

NUMERIC = MODEL_USER_FEATURES
N_FEATURES = len(NUMERIC) + 1  # + "has features" flag


def user_feature_vector(values: dict[str, float | None]) -> list[float]:
    """log1p of each numeric feature (0 when missing) and a flag: 1 when Feast had a row."""
    present = any(values.get(f) is not None for f in NUMERIC)
    return [float(np.log1p(max(float(values.get(f) or 0.0), 0.0))) for f in NUMERIC] + [
        1.0 if present else 0.0]


def user_day_features(settings: Settings, x: Interactions, service_name: str = TRAINING_SERVICE
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(row -> feature-table index [len(x)], table [n_user_days, N_FEATURES] float32), through
    `service_name` (an export re-scored later names the service it was trained with)."""
    from shoprec.features.store import get_store
    from training.data import TrainingDataError

    exports = settings.feature_exports(x.dataset)
    if not any(exports.glob("*/*.parquet")):
        raise TrainingDataError(
            f"no Feast features for dataset {x.dataset!r} under "
            f"{exports}: run `shoprec features materialize --dataset "
            f"{x.dataset}` first, or train with --no-user-features")

    day = x.ts // DAY_US
    key = x.user * (day.max() + 1) + day
    keys, inverse = np.unique(key, return_inverse=True)
    users, days = keys // (day.max() + 1), keys % (day.max() + 1)
    entity_df = pd.DataFrame({
        USER_KEY: x.user_ids[users].astype(str),
        "event_timestamp": pd.to_datetime(days * DAY_US, unit="us", utc=True),
        "row": np.arange(len(keys)),
    })
    store = get_store(settings, x.dataset)
    # the service's numeric user features only: it also holds arrays (sequence, repeat
    # statistics) the model reads elsewhere, and a point-in-time join of those for every
    # (user, day) costs more than the rest of training's feature loading
    service = store.get_feature_service(service_name)
    refs = [f"{p.name_to_use()}:{f.name}" for p in service.feature_view_projections
            for f in p.features if f.name in NUMERIC]
    if sorted(r.split(":")[1] for r in refs) != sorted(NUMERIC):
        raise RuntimeError(f"feature service {service_name} lacks some of {NUMERIC}")
    df = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
    df = df.sort_values("row")
    if len(df) != len(keys):
        raise RuntimeError(f"Feast returned {len(df)} rows for {len(keys)} (user, day) keys")
    table = np.zeros((len(keys), N_FEATURES), dtype=np.float32)
    for j, f in enumerate(NUMERIC):
        v = pd.to_numeric(df[f], errors="coerce").to_numpy(dtype=np.float64)
        table[:, j] = np.log1p(np.clip(np.nan_to_num(v, nan=0.0), 0, None))
    table[:, -1] = df[NUMERIC].notna().any(axis=1).to_numpy()
    return inverse.astype(np.int64), table
