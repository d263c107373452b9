"""Online and offline scores are equal: serving reads the model's inputs from Feast's online store
(live sequence, user activity, repeat statistics) and scores one user exactly as evaluation scores
the same user from the warehouse, at the same time."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch

from feature_repo.names import MODEL_USER_FEATURES, USER_KEY
from serving.model import LoadedModel, OnlineFeatures
from shoprec.config import Settings, TrainingSettings
from shoprec.features.store import get_store
from training.data import load_interactions
from training.features import user_feature_vector
from training.ranker import Ranker, features
from training.repeat import repeat_stats
from training.splits import DAY_US, EvalSet
from training.tensors import window_times, windows

USERS = 40


@pytest.fixture(scope="module")
def parity_run(built_shop, tmp_path_factory):
    """One short run with user features and the blend, on the built shop's Feast features; the
    run folder lives outside the shared home (which stays as other tests read it)."""
    import training.ranker
    from training.train import train

    s = built_shop.model_copy(update={"training": TrainingSettings(
        max_epochs=1, dim=16, user_features=True)})
    with pytest.MonkeyPatch.context() as mp:  # the ranker's grid: one short setting
        mp.setattr(training.ranker, "STEP_GRID", (20,))
        mp.setattr(training.ranker, "L2_GRID", (1e-2,))
        result = train(s, "shop", seed=5, progress=False,
                       run_dir=tmp_path_factory.mktemp("parity") / "run")
    return s, result


def _whole_history_users(s: Settings, x, n: int) -> np.ndarray:
    """Users whose every event the online sequence holds (fewer raw events than it keeps), with
    at least two interactions, sampled."""
    with duckdb.connect(str(s.internal_snapshot("shop")), read_only=True) as con:
        counts = dict(con.execute("select user_id, count(*) from marts.fct_events "
                                  "group by 1").fetchall())
    b = x.user_bounds()
    ok = [u for u in range(x.n_users)
          if counts[x.user_ids[u]] < s.feast.sequence_length and b[u + 1] - b[u] >= 2]
    rng = np.random.default_rng(0)
    return np.sort(rng.choice(ok, size=min(n, len(ok)), replace=False))


def _offline(s: Settings, m: LoadedModel, x, users: np.ndarray, now_us: int) -> torch.Tensor:
    """Evaluation's scoring (training.evaluate.evaluate_export) of each user's whole history:
    windows from the warehouse's interactions, user features from Feast's offline store as of
    `now`, repeat statistics from training.repeat, the export's ranker as evaluation runs it
    (Ranker over the whole batch; serving runs its one-user form)."""
    b = x.user_bounds()
    w = windows(x, b[users], b[users + 1], m.max_len)
    to_export = torch.tensor([0] + [m.index.get(i, 0) for i in x.catalogue.item_ids[1:]])
    items = to_export[w.items]
    keep = items != 0
    entity = pd.DataFrame({USER_KEY: x.user_ids[users].astype(str),
                           "event_timestamp": pd.Timestamp(now_us, unit="us", tz="UTC")})
    hist = get_store(s, "shop").get_historical_features(
        entity_df=entity, features=[f"user_daily:{f}" for f in MODEL_USER_FEATURES]).to_df()
    hist = hist.set_index(USER_KEY).loc[entity[USER_KEY]]
    feats = torch.tensor([user_feature_vector({f: (None if pd.isna(r[f]) else float(r[f]))
                                               for f in MODEL_USER_FEATURES})
                          for _, r in hist.iterrows()], dtype=torch.float32)
    with torch.no_grad():
        s_model = m.exp.model.scores(items, w.etypes * keep, w.gaps * keep, feats,
                                     window_times(x.ts, w.rows)).float()
    if m.ranker is None:
        return s_model
    n = len(users)
    z = np.zeros(n + 1, dtype=np.int64)
    es = EvalSet("parity", users, b[users + 1], z, z[:0], z, z[:0],
                 np.full(n, now_us, dtype=np.int64))
    st = repeat_stats(x, b, es, np.arange(n), m.exp.blend["repeat_max_items"])
    st.item = to_export.numpy()[st.item]  # the export's indices (the catalogue is the same)
    ranker = Ranker.from_tables(m.exp.blend["weights"]).eval()
    with torch.no_grad():
        return ranker(features(s_model, m.popularity.expand(n, -1), st))


def test_online_scores_equal_offline_scores(parity_run):
    s, result = parity_run
    m = LoadedModel(result.run_dir / "export", "parity", s.session_gap_minutes)
    assert m.ranker is not None and m.n_features, "the run must exercise every input"
    x = load_interactions(s, "shop")
    users = _whole_history_users(s, x, USERS)
    assert len(users) >= 10
    # "now": an hour after the last day's features became available (the shop lies in the
    # past, and the offline store's TTL would drop rows older than that before today)
    now_us = int((x.ts.max() // DAY_US + 1) * DAY_US + 3_600_000_000)
    offline = _offline(s, m, x, users, now_us)
    store = get_store(s, "shop")
    service = store.get_feature_service(m.feature_service)
    for j, u in enumerate(users):
        d = store.get_online_features(features=service,
                                      entity_rows=[{USER_KEY: x.user_ids[u]}]).to_dict()
        f = OnlineFeatures.from_feast(d, s.feast.sequence_length)
        assert not f.full and f.known
        online = m.score(f, now_us).scores
        ref = offline[j].clone()
        ref[0] = float("-inf")
        assert torch.allclose(online[1:], ref[1:], atol=1e-5), (
            f"user {x.user_ids[u]}: max |diff| {float((online[1:] - ref[1:]).abs().max())}")
        assert online.topk(20).indices.tolist() == ref.topk(20).indices.tolist()
